"""The project's scripts keep their logic in functions; the parts that transform data are tested here."""
import importlib.util
from pathlib import Path

import numpy as np


def load_script(name):
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_photo_shift_zoom_moves_boxes_with_the_pixels():
    shift = load_script("photo_shift").zoom(2.0)
    image = np.zeros((100, 200, 3), np.uint8)
    image[40:60, 90:110] = 255  # a bright square at the centre
    boxes = np.array([[90.0, 40.0, 110.0, 60.0], [0.0, 0.0, 30.0, 20.0]])  # centre; a corner box cropped away
    zoomed, moved = shift(image, boxes, np.random.default_rng(0))
    assert zoomed.shape == image.shape
    np.testing.assert_allclose(moved[0], [80.0, 30.0, 120.0, 70.0])  # twice as large around the centre
    ys, xs = np.nonzero(zoomed[:, :, 0] > 127)
    assert abs(xs.min() - 80) <= 1 and abs(xs.max() - 119) <= 1 and abs(ys.min() - 30) <= 1
    assert moved[1, 2] - moved[1, 0] == 0  # outside the crop: zero width, dropped by the caller


def test_photo_shift_pixel_shifts_keep_shape_and_type():
    shifts = load_script("photo_shift").SHIFTS
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    boxes = np.array([[1.0, 2.0, 30.0, 40.0]])
    for name, shift in shifts.items():
        if shift is None:
            continue
        out, out_boxes = shift(image, boxes, np.random.default_rng(0))
        assert out.shape == image.shape and out.dtype == np.uint8, name
        assert not np.array_equal(out, image), name  # every shift changes the pixels
