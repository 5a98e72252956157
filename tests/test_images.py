"""diffdet.images: the one decoder, and every entry point (CLI, datasets, app) giving the same pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffdet.images import ImageError, decode_image_rgb, read_image_rgb, read_image_size


def write_odd_files(folder: Path) -> dict[str, Path]:
    """An EXIF-orientation-6 JPEG, an RGBA PNG with transparent areas and a 16-bit grey PNG, made here."""
    rng = np.random.default_rng(0)
    files = {}
    stored = np.zeros((20, 40, 3), np.uint8)  # stored landscape; orientation 6 shows it portrait
    stored[:, :20] = (250, 20, 20)
    stored[:, 20:] = (20, 20, 250)
    photo = Image.fromarray(stored)
    exif = photo.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    files["exif6"] = folder / "exif6.jpg"
    photo.save(files["exif6"], quality=95, exif=exif)
    rgba = rng.integers(0, 256, (30, 50, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0  # fully transparent band
    rgba[10:20, :, 3] = 128  # half transparent band
    rgba[20:, :, 3] = 255
    files["rgba"] = folder / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(files["rgba"])
    grey16 = rng.integers(0, 65536, (24, 36), dtype=np.uint16)
    grey16[0, 0], grey16[0, 1], grey16[0, 2] = 0, 511, 65535
    files["grey16"] = folder / "grey16.png"
    Image.fromarray(grey16).save(files["grey16"])
    import cv2

    colour16 = rng.integers(0, 65536, (16, 24, 3), dtype=np.uint16)
    files["colour16"] = folder / "colour16.png"
    cv2.imwrite(str(files["colour16"]), colour16[:, :, ::-1])
    files["strip"] = folder / "strip_4000x60.png"
    Image.fromarray(rng.integers(0, 256, (60, 4000, 3), dtype=np.uint8)).save(files["strip"])
    return files


def test_the_rule_exif_alpha_and_bit_depth(tmp_path: Path) -> None:
    files = write_odd_files(tmp_path)
    upright = read_image_rgb(files["exif6"])
    assert upright.shape == (40, 20, 3) and read_image_size(files["exif6"]) == (40, 20)
    # Orientation 6 turns the stored left (red) half into the top half.
    assert upright[5, 10, 0] > 200 and upright[5, 10, 2] < 60 and upright[35, 10, 2] > 200
    assert read_image_rgb(files["exif6"], exif=False).shape == (20, 40, 3)
    assert read_image_size(files["exif6"], exif=False) == (20, 40)

    rgba = np.asarray(Image.open(files["rgba"]))
    decoded = read_image_rgb(files["rgba"])
    assert (decoded[:10] == 255).all()  # transparent -> white
    np.testing.assert_array_equal(decoded[20:], rgba[20:, :, :3])  # opaque pixels untouched
    half = rgba[10:20, :, :3].astype(float) * 128 / 255 + 255 * (1 - 128 / 255)
    assert np.abs(decoded[10:20].astype(float) - half).max() <= 1.0

    grey16 = np.asarray(Image.open(files["grey16"])).astype(np.int64)
    decoded = read_image_rgb(files["grey16"])
    np.testing.assert_array_equal(decoded[:, :, 0], grey16 // 256)  # the high byte
    assert decoded[0, :3, 0].tolist() == [0, 1, 255]
    import cv2

    colour16 = cv2.imread(str(files["colour16"]), cv2.IMREAD_UNCHANGED)[:, :, ::-1].astype(np.int64)
    np.testing.assert_array_equal(read_image_rgb(files["colour16"]), colour16 // 256)  # same rule in colour


def test_cli_dataset_and_app_decode_identical_arrays(tmp_path: Path) -> None:
    from app.inputs import load_image
    from diffdet.data import read_image_rgb as dataset_read

    for name, path in write_odd_files(tmp_path).items():
        cli = read_image_rgb(path)  # what `python -m diffdet predict` and `eval` decode
        app = load_image(path)
        dataset = dataset_read(str(path)).permute(1, 2, 0).numpy()
        from_bytes = decode_image_rgb(path.read_bytes(), name)
        for other in (app, dataset, from_bytes):
            assert other.dtype == np.uint8 and np.array_equal(cli, other), name


def test_errors_name_the_file_never_a_python_object(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is a text file\n" * 5)
    with pytest.raises(ImageError) as info:
        read_image_rgb(text)
    message = str(info.value)
    assert message.startswith(str(text)) and "not an image" in message
    assert "BytesIO" not in message and "object at 0x" not in message
    truncated = tmp_path / "truncated.jpg"
    buffer = write_odd_files(tmp_path)["exif6"].read_bytes()
    truncated.write_bytes(buffer[: len(buffer) // 2])
    with pytest.raises(ImageError, match="truncated.jpg: .*corrupt or truncated"):
        read_image_rgb(truncated)
    with pytest.raises(ImageError, match="uploaded.png: .*not an image"):
        decode_image_rgb(b"plain text", "uploaded.png")
    with pytest.raises(ImageError, match="missing.png: image not found"):
        read_image_rgb(tmp_path / "missing.png")
