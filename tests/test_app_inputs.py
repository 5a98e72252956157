"""app.inputs: what the app accepts and refuses, and the messages it gives."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import test_app_support as support
from app.inputs import (
    InputError, check_checkpoint_upload, list_checkpoints, load_image, load_metrics, parse_annotations,
    resolve_checkpoint,
)

CLASSES = support.CLASSES


@pytest.mark.parametrize("name", ["zero_byte", "not_image", "corrupt", "bomb", "oversized"])
def test_bad_images_are_refused_with_a_clear_message(tmp_path: Path, name: str) -> None:
    path, message = support.bad_uploads(tmp_path)[name]
    with pytest.raises(InputError) as info:
        load_image(path)
    assert message in str(info.value)
    assert str(tmp_path) not in str(info.value)  # never a server path


def test_missing_file_and_none_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No image"):
        load_image(None)
    with pytest.raises(InputError, match="could not be read"):
        load_image(tmp_path / "nope.png")


def test_odd_images_become_rgb_uint8(tmp_path: Path) -> None:
    files = support.odd_but_valid_uploads(tmp_path)
    for name, path in files.items():
        image = load_image(path)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8, name
        assert image.flags.writeable
    sixteen = load_image(files["sixteen_bit"])
    assert sixteen[0, 0, 0] == 0 and sixteen[0, -1, 0] == 255  # rescaled from 16 bits, not clipped
    assert len(np.unique(sixteen[0, :, 0])) > 32
    rgba = load_image(files["rgba"])
    assert tuple(rgba[0, 0]) == (255, 255, 255)  # transparent -> white background
    assert tuple(rgba[20, 20]) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.fromarray(support.make_image((20, 40)))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_image(tmp_path / "rotated.jpg").shape[:2] == (40, 20)


def test_props_annotations(tmp_path: Path) -> None:
    data = [["images/a.jpg", [{"name": "mug", "xyxy": [1, 2, 30, 40]}, {"name": "banana", "xyxy": [0, 0, 5, 5]}]],
            ["images/b.jpg", [{"name": "cracker_box", "xyxy": [5, 5, 20, 20]}]]]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    gt = parse_annotations(path, CLASSES, image_name="a.jpg", image_size_hw=(96, 128))
    assert gt.boxes_xyxy.tolist() == [[1, 2, 30, 40]] and gt.labels.tolist() == [2]
    assert any("banana" in note for note in gt.notes)
    gt_b = parse_annotations(path, CLASSES, image_name="/tmp/upload/b.jpg")
    assert gt_b.labels.tolist() == [1]
    with pytest.raises(InputError, match="describes 2 images"):
        parse_annotations(path, CLASSES, image_name="c.jpg")


def test_props_boxes_are_clipped_and_empty_ones_dropped(tmp_path: Path) -> None:
    path = tmp_path / "gt.json"
    path.write_text(json.dumps([["x.jpg", [{"name": "mug", "xyxy": [-10, -5, 500, 50]},
                                           {"name": "mug", "xyxy": [200, 200, 300, 300]}]]]))
    gt = parse_annotations(path, CLASSES, image_size_hw=(96, 128))
    assert gt.boxes_xyxy.tolist() == [[0, 0, 128, 50]]
    assert any("out-of-image" in n for n in gt.notes)


def test_coco_annotations(tmp_path: Path) -> None:
    data = {"images": [{"id": 7, "file_name": "scene.png", "height": 96, "width": 128}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 20, 30, 40]}],
            "categories": [{"id": 3, "name": "mug"}]}
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    gt = parse_annotations(path, CLASSES, image_name="whatever.png")
    assert gt.boxes_xyxy.tolist() == [[10, 20, 40, 60]] and gt.labels.tolist() == [2]


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('{"images": 3}', "needs"),
    ('[["a.jpg", [{"name": "mug"}]]]', "xyxy"),
    ("[1, 2, 3]", "JSON list of"),
    ("", "empty"),
])
def test_bad_annotation_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        parse_annotations(path, CLASSES)


def test_checkpoints_are_chosen_by_name_only(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    outside = tmp_path.parent / "outside.safetensors"
    outside.write_bytes(b"x")
    assert list_checkpoints(tmp_path) == ["a.safetensors"]
    assert resolve_checkpoint("a.safetensors", tmp_path) == tmp_path / "a.safetensors"
    for name in ("../outside.safetensors", str(outside), "notes.txt", None, "b.safetensors"):
        with pytest.raises(InputError, match="Unknown checkpoint"):
            resolve_checkpoint(name, tmp_path)
    with pytest.raises(InputError, match="No checkpoint"):
        resolve_checkpoint("a.safetensors", tmp_path / "empty")
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"x")
    with pytest.raises(InputError, match="safetensors"):
        check_checkpoint_upload(pth)


def test_metrics_file(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iter": 0, "loss": 1}\nnot json\n\n{"iter": 10, "eval": {"AP": 0.5}}\n{"no_iter": 1}\n')
    rows = load_metrics(path)
    assert [r["iter"] for r in rows] == [0, 10]
    path.write_text("nothing useful\n")
    with pytest.raises(InputError, match="iter"):
        load_metrics(path)
