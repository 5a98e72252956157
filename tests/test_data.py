"""Tests for diffdet.data: PROPS / COCO loaders, validation, augmentation, sampler, archives."""
from __future__ import annotations

import itertools
import json
import logging
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from diffdet.config import PROPS_CLASSES, TINY
from diffdet.data import (
    DatasetError, DetectionDataset, InfiniteSampler, build_train_loader, collate_detection, load_coco, load_props,
)

IMAGE_HW = (48, 64)


def write_image(path: Path, boxes: list[list[float]], size_hw: tuple[int, int] = IMAGE_HW) -> None:
    """A black image with a white filled rectangle per box, so content can be checked against boxes."""
    image = np.zeros((*size_hw, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in boxes:
        image[int(y1):int(y2), int(x1):int(x2)] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


GOOD_ENTRIES = [
    ["PROPS-Detection/train/0000.jpg", [{"name": "mug", "xyxy": [4, 6, 20, 30], "extra": 1},
                                        {"name": "cracker_box", "xyxy": [30, 10, 60, 40]}]],
    ["PROPS-Detection/train/0001.jpg", [{"name": "large_marker", "xyxy": [10, 10, 40, 20]}]],
    ["PROPS-Detection/train/0002.jpg", []],
]


def make_props(root: Path, entries: list = GOOD_ENTRIES, split: str = "train") -> Path:
    """A tiny PROPS-Detection-Dataset folder: images (JPEG, or whatever the entry names) + {split}.json."""
    folder = root / "PROPS-Detection-Dataset"
    for rel_path, objects in entries:
        boxes = [o["xyxy"] for o in objects if isinstance(o, dict) and "xyxy" in o]
        write_image(folder / rel_path, [b for b in boxes if b[2] > b[0] and b[3] > b[1]])
    (folder / f"{split}.json").write_text(json.dumps(entries))
    return folder


def test_props_round_trip(tmp_path: Path) -> None:
    folder = make_props(tmp_path)
    split = load_props(folder, "train")
    assert split.class_names == PROPS_CLASSES and split.num_skipped == 0 and len(split) == 3
    first = split.samples[0]
    assert first.size_hw == IMAGE_HW and first.image_id == 0
    assert first.boxes_xyxy.dtype == np.float32 and first.labels.dtype == np.int64
    np.testing.assert_array_equal(first.boxes_xyxy, [[4, 6, 20, 30], [30, 10, 60, 40]])
    assert first.labels.tolist() == [PROPS_CLASSES.index("mug"), PROPS_CLASSES.index("cracker_box")]
    assert split.samples[2].boxes_xyxy.shape == (0, 4)
    # the folder that contains PROPS-Detection-Dataset works too
    assert len(load_props(tmp_path, "train")) == 3


def test_props_box_within_tolerance_is_clipped(tmp_path: Path) -> None:
    entries = [["a.png", [{"name": "mug", "xyxy": [-0.5, 0, 64.8, 48.9]}]]]
    split = load_props(make_props(tmp_path, entries), "train")
    np.testing.assert_allclose(split.samples[0].boxes_xyxy, [[0, 0, 64, 48]])


BAD_ENTRIES = {
    "missing image": (["nope.png", []], "image not found"),
    "unknown class": (["a.png", [{"name": "banana", "xyxy": [1, 1, 5, 5]}]], "unknown class 'banana'"),
    "x2 <= x1": (["a.png", [{"name": "mug", "xyxy": [10, 1, 10, 5]}]], "empty box"),
    "y2 <= y1": (["a.png", [{"name": "mug", "xyxy": [1, 9, 5, 3]}]], "empty box"),
    "outside": (["a.png", [{"name": "mug", "xyxy": [1, 1, 70, 5]}]], "outside the 64x48 image"),
    "malformed entry": (["a.png"], "expected [image_path"),
    "malformed object": (["a.png", [{"name": "mug", "xyxy": [1, 2, 3]}]], "object 0"),
    "unreadable": (["broken.png", []], "unreadable image"),
}


@pytest.mark.parametrize("kind", sorted(BAD_ENTRIES))
def test_props_bad_entry_raises_and_skips(tmp_path: Path, kind: str) -> None:
    bad, message = BAD_ENTRIES[kind]
    entries = [["a.png", [{"name": "mug", "xyxy": [1, 1, 20, 20]}]], bad]
    folder = make_props(tmp_path, [entries[0]])
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "train.json").write_text(json.dumps(entries))
    with pytest.raises(DatasetError, match="train.json, entry 1") as info:
        load_props(folder, "train")
    assert message in str(info.value)
    split = load_props(folder, "train", skip_bad=True)
    assert len(split) == 1 and split.num_skipped == 1 and message in split.skipped[0]


def test_props_malformed_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = make_props(tmp_path)
    (folder / "train.json").write_text("{not json")
    with pytest.raises(DatasetError, match="train.json is not valid JSON"):
        load_props(folder, "train", skip_bad=True)
    (folder / "train.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DatasetError, match="top level must be a JSON list"):
        load_props(folder, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        load_props(folder, "test")
    (folder / "train.json").write_text(json.dumps(GOOD_ENTRIES + [["nope.png", []]]))
    with caplog.at_level(logging.WARNING, logger="diffdet.data"):
        assert load_props(folder, "train", skip_bad=True).num_skipped == 1
    assert "skipped 1 bad entry" in caplog.text


def test_props_archive_md5(tmp_path: Path) -> None:
    folder = make_props(tmp_path / "src")
    archive = tmp_path / "PROPS-Detection-Dataset.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        handle.add(folder, arcname=folder.name)
    with pytest.raises(DatasetError, match="expected 225d557f4980bd3e999d93411c3bebe6.*got [0-9a-f]{32}"):
        load_props(archive, "train", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="cache_dir is required"):
        load_props(archive, "train", verify_md5=False)
    split = load_props(archive, "train", cache_dir=tmp_path / "cache", verify_md5=False)
    assert len(split) == 3 and str(tmp_path / "cache") in split.samples[0].image_path
    zipped = shutil.make_archive(str(tmp_path / "custom"), "zip", root_dir=folder.parent, base_dir=folder.name)
    assert len(load_props(zipped, "train", cache_dir=tmp_path / "cache", verify_md5=False)) == 3


def test_props_images_archive_next_to_json(tmp_path: Path) -> None:
    """The published layout: images still packed in PROPS-Detection.tar.gz beside the json."""
    folder = make_props(tmp_path / "src")
    packed = tmp_path / "PROPS-Detection-Dataset"
    packed.mkdir()
    (packed / "train.json").write_text((folder / "train.json").read_text())
    with tarfile.open(packed / "PROPS-Detection.tar.gz", "w:gz") as handle:
        handle.add(folder / "PROPS-Detection", arcname="PROPS-Detection")
    with pytest.raises(DatasetError, match="expected edb9252acb907894a478e8e1dc244da1"):
        load_props(packed, "train", cache_dir=tmp_path / "cache")
    split = load_props(packed, "train", cache_dir=tmp_path / "cache", verify_md5=False)
    assert len(split) == 3 and split.samples[0].size_hw == IMAGE_HW


def make_coco(root: Path) -> Path:
    write_image(root / "img" / "a.png", [[2, 3, 12, 23]])
    write_image(root / "img" / "b.png", [])
    data = {
        "images": [{"id": 7, "file_name": "a.png", "height": 48, "width": 64}, {"id": 9, "file_name": "b.png"}],
        "categories": [{"id": 20, "name": "zebra"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 20, "bbox": [2, 3, 10, 20], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [30, 5, 10, 10]},
            {"id": 3, "image_id": 7, "category_id": 3, "bbox": [0, 0, 64, 48], "iscrowd": 1},
        ],
    }
    path = root / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_round_trip(tmp_path: Path) -> None:
    split = load_coco(make_coco(tmp_path), tmp_path / "img")
    assert split.class_names == ("cat", "zebra")  # category-id order
    a, b = split.samples
    assert (a.image_id, b.image_id) == (7, 9) and a.size_hw == IMAGE_HW
    np.testing.assert_array_equal(a.boxes_xyxy, [[2, 3, 12, 23], [30, 5, 40, 15]])  # crowd dropped
    assert a.labels.tolist() == [1, 0] and b.boxes_xyxy.shape == (0, 4)


def test_coco_bad_entries(tmp_path: Path) -> None:
    path = make_coco(tmp_path)
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 4, "image_id": 9, "category_id": 99, "bbox": [1, 1, 2, 2]})
    data["images"][0]["width"] = 100
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="image entry 0: json says 100x48"):
        load_coco(path, tmp_path / "img")
    split = load_coco(path, tmp_path / "img", skip_bad=True)
    assert len(split) == 0 and split.num_skipped == 2
    assert "image entry 1, annotation 3: unknown category_id 99" in split.skipped[1]


def boxed_dataset(tmp_path: Path, train: bool, **overrides) -> DetectionDataset:
    split = load_props(make_props(tmp_path), "train")
    # photometric augmentation off unless asked for: these tests read box contents by brightness
    return DetectionDataset(split.samples, split.class_names, train,
                            TINY.replace(**{"photometric_prob": 0.0, **overrides}))


def test_eval_dataset_is_untouched(tmp_path: Path) -> None:
    dataset = boxed_dataset(tmp_path, train=False)
    image, target = dataset[0]
    assert image.dtype == torch.uint8 and image.shape == (3, *IMAGE_HW)
    assert target["orig_size_hw"] == IMAGE_HW and target["image_size_hw"].tolist() == list(IMAGE_HW)
    torch.testing.assert_close(target["boxes_xyxy"], torch.tensor([[4, 6, 20, 30], [30, 10, 60, 40.0]]))
    assert target["labels"].dtype == torch.int64 and target["image_id"] == 0


def test_augmentation_boxes_follow_content(tmp_path: Path) -> None:
    """Boxes stay inside the image and still cover the white rectangles they were drawn from."""
    dataset = boxed_dataset(tmp_path, train=True, crop_prob=0.5, crop_resize=(48, 60), crop_size=(30, 50),
                            min_size_train=(40, 56), max_size_train=90)
    for key in itertools.islice(InfiniteSampler(len(dataset), seed=3), 24):
        image, target = dataset[key]
        height, width = image.shape[1:]
        boxes = target["boxes_xyxy"]
        assert target["image_size_hw"].tolist() == [height, width]
        assert min(height, width) in (40, 56) or max(height, width) == 90
        assert boxes.dtype == torch.float32 and len(boxes) == len(target["labels"])
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 3] <= height).all() and (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        gray = image.float().mean(0)
        for x1, y1, x2, y2 in boxes.round().int().tolist():
            inner = gray[y1 + 1:y2 - 1, x1 + 1:x2 - 1]
            if inner.numel():
                assert inner.mean() > 200, (key, boxes)


def test_augmentation_flip_matches_image(tmp_path: Path) -> None:
    dataset = boxed_dataset(tmp_path, train=True, crop_prob=0.0, min_size_train=(IMAGE_HW[0],), max_size_train=1000)
    original, target = boxed_dataset(tmp_path / "eval", train=False)[0]
    flips = 0
    for seed in range(12):
        image, aug = dataset[(0, seed)]
        if torch.equal(image, original):
            torch.testing.assert_close(aug["boxes_xyxy"], target["boxes_xyxy"])
        else:
            flips += 1
            assert torch.equal(image, original.flip(-1))
            expected = target["boxes_xyxy"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + \
                torch.tensor([IMAGE_HW[1], 0, IMAGE_HW[1], 0])
            torch.testing.assert_close(aug["boxes_xyxy"], expected)
    assert 0 < flips < 12


def test_photometric_augmentation_changes_pixels_not_boxes(tmp_path: Path) -> None:
    plain = boxed_dataset(tmp_path / "a", train=True, crop_prob=0.0, min_size_train=(IMAGE_HW[0],),
                          max_size_train=1000)
    photo = boxed_dataset(tmp_path / "b", train=True, crop_prob=0.0, min_size_train=(IMAGE_HW[0],),
                          max_size_train=1000, photometric_prob=1.0)
    for key in [(0, 1), (1, 2), (0, 3)]:
        (im_plain, t_plain), (im_photo, t_photo) = plain[key], photo[key]
        assert im_photo.dtype == torch.uint8 and im_photo.shape == im_plain.shape
        assert not torch.equal(im_photo, im_plain)
        torch.testing.assert_close(t_photo["boxes_xyxy"], t_plain["boxes_xyxy"])
        (again, _) = photo[key]
        assert torch.equal(again, im_photo)  # reproducible per key, as every augmentation


def test_each_photometric_degradation_keeps_boxes_and_size() -> None:
    from torchvision import tv_tensors

    from diffdet.data import PhotometricAugment

    rng = torch.Generator().manual_seed(0)
    image = tv_tensors.Image(torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8, generator=rng))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[5.0, 5, 30, 40]]), format="XYXY", canvas_size=(60, 80))
    augment = PhotometricAugment(1.0)
    detail = lambda im: im.float().diff(dim=-1).abs().mean()  # noqa: E731
    none = {"colour": None, "blur": None, "low_res": None, "jpeg": None}
    assert torch.equal(augment.transform(image, none), image)
    for key, value in (("colour", (1.3, 1.0, 1.0)), ("blur", 1.5), ("low_res", 0.4), ("jpeg", 30)):
        out = augment.transform(image, {**none, key: value})
        assert isinstance(out, tv_tensors.Image) and out.dtype == torch.uint8 and out.shape == image.shape
        if key == "colour":
            assert out.float().mean() > image.float().mean() + 5  # brighter
        else:
            assert detail(out) < 0.8 * detail(image)  # fine detail removed
    out_image, out_boxes = augment(image, boxes)
    assert torch.equal(out_boxes, boxes)
    with pytest.raises(ValueError, match="prob"):
        PhotometricAugment(1.5)


def test_augmentation_is_reproducible_per_key(tmp_path: Path) -> None:
    dataset = boxed_dataset(tmp_path, train=True, crop_prob=0.5, crop_resize=(48,), crop_size=(30, 40))
    for key in [(0, 5), (1, 123456789), (0, 6)]:
        (im1, t1), (im2, t2) = dataset[key], dataset[key]
        assert torch.equal(im1, im2) and torch.equal(t1["boxes_xyxy"], t2["boxes_xyxy"])
    state = torch.get_rng_state()
    dataset[(0, 1)]
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is left alone


def test_sampler_deterministic_and_resumable() -> None:
    stream = list(itertools.islice(InfiniteSampler(7, seed=11), 30))
    assert stream == list(itertools.islice(InfiniteSampler(7, seed=11), 30))
    assert stream != list(itertools.islice(InfiniteSampler(7, seed=12), 30))
    indices = [i for i, _ in stream]
    for epoch in range(4):  # each epoch is a permutation of the dataset
        assert sorted(indices[epoch * 7:(epoch + 1) * 7]) == list(range(7))
    assert indices[:7] != indices[7:14]  # reshuffled per epoch
    assert len({seed for _, seed in stream}) == 30  # a fresh augmentation seed per draw
    assert list(itertools.islice(InfiniteSampler(7, seed=11, skip=13), 17)) == stream[13:]
    ranks = [list(itertools.islice(InfiniteSampler(7, seed=11, rank=r, world_size=2), 15)) for r in range(2)]
    assert ranks[0] == stream[0::2] and ranks[1] == stream[1::2]
    assert list(itertools.islice(InfiniteSampler(7, seed=11, rank=1, world_size=2, skip=4), 5)) == ranks[1][4:9]
    with pytest.raises(ValueError, match="rank"):
        InfiniteSampler(7, rank=2, world_size=2)


def test_train_loader_resumes(tmp_path: Path) -> None:
    dataset = boxed_dataset(tmp_path, train=True)
    full = list(itertools.islice(build_train_loader(dataset, batch_size=2, seed=5), 3))
    resumed = list(itertools.islice(build_train_loader(dataset, batch_size=2, seed=5, start_iter=2), 1))
    images, targets = resumed[0]
    assert isinstance(images, list) and len(images) == 2 and len(targets) == 2
    for a, b in zip(images, full[2][0]):
        assert torch.equal(a, b)
    assert [t["image_id"] for t in targets] == [t["image_id"] for t in full[2][1]]
    images, targets = collate_detection([dataset[(0, 1)], dataset[(2, 1)]])
    assert len(images) == 2 and targets[1]["boxes_xyxy"].shape == (0, 4)


def test_dataset_images_go_through_the_one_image_reader(tmp_path):
    import cv2

    from diffdet.data import DatasetError, read_image_rgb

    grey16 = (np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 250)
    cv2.imwrite(str(tmp_path / "grey16.png"), grey16)
    image = read_image_rgb(str(tmp_path / "grey16.png"))
    assert image.shape == (3, 12, 20) and image.dtype == torch.uint8
    assert int(image[0, -1, -1]) == int(grey16[-1, -1]) // 256  # the documented rule: the high byte
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(DatasetError, match="text.jpg"):
        read_image_rgb(str(tmp_path / "text.jpg"))


# ---------------------------------------------------------------------------------------------- issue 12

def props_as_coco(entries: list, class_names: list[str], first_id: int = 1) -> dict:
    """The same boxes as a COCO file whose categories are ``class_names`` in that order, ids from ``first_id``."""
    cat_of = {name: first_id + i for i, name in enumerate(class_names)}
    images, annotations = [], []
    for k, (rel_path, objects) in enumerate(entries):
        images.append({"id": 100 + k, "file_name": rel_path})
        for obj in objects:
            x1, y1, x2, y2 = obj["xyxy"]
            annotations.append({"id": len(annotations) + 1, "image_id": 100 + k, "category_id": cat_of[obj["name"]],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n} for n, i in cat_of.items()]}


def test_coco_categories_are_matched_to_the_model_by_name(tmp_path: Path) -> None:
    folder = make_props(tmp_path)
    props = load_props(folder, "train")
    # Categories listed alphabetically with ids 1..10: by position, "cracker_box" (id 1) would be label 0.
    coco_path = tmp_path / "alphabetical.json"
    coco_path.write_text(json.dumps(props_as_coco(GOOD_ENTRIES, sorted(PROPS_CLASSES))))
    coco = load_coco(coco_path, folder, class_names=PROPS_CLASSES)
    assert coco.class_names == PROPS_CLASSES
    for a, b in zip(props.samples, coco.samples):
        np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
        assert a.labels.tolist() == b.labels.tolist()
    assert coco.samples[0].labels.tolist() == [PROPS_CLASSES.index("mug"), PROPS_CLASSES.index("cracker_box")]
    # A dataset using only some of the model's classes is fine; a name the model lacks is refused, listing both.
    data = props_as_coco(GOOD_ENTRIES, sorted(PROPS_CLASSES))
    data["categories"][0]["name"] = "cracker box"  # a space instead of the underscore
    coco_path.write_text(json.dumps(data))
    with pytest.raises(DatasetError) as info:
        load_coco(coco_path, folder, class_names=PROPS_CLASSES)
    message = str(info.value)
    assert "['cracker box']" in message and "model classes: ['master_chef_can'" in message
    assert "Dataset classes: ['cracker box', 'gelatin_box'" in message


def test_coco_crowd_regions_and_areas_are_kept_apart(tmp_path: Path) -> None:
    split = load_coco(make_coco(tmp_path), tmp_path / "img")
    a = split.samples[0]
    np.testing.assert_array_equal(a.boxes_xyxy, [[2, 3, 12, 23], [30, 5, 40, 15]])
    np.testing.assert_array_equal(a.crowd_boxes_xyxy, [[0, 0, 64, 48]])
    assert a.crowd_labels.tolist() == [0] and a.areas.tolist() == [200.0, 100.0]
    dataset = DetectionDataset(split.samples, split.class_names, False, TINY)
    assert dataset[0][1]["boxes_xyxy"].shape == (2, 4)  # crowd regions are never training targets


@pytest.mark.parametrize("entry", ["../outside.jpg", "../../../../etc/passwd", "/etc/passwd",
                                   "PROPS-Detection/../../outside.jpg"])
def test_props_paths_leaving_the_dataset_folder_are_refused(tmp_path: Path, entry: str) -> None:
    folder = make_props(tmp_path)
    write_image(tmp_path / "outside.jpg", [])  # exists, readable, outside the dataset folder
    (folder / "train.json").write_text(json.dumps(GOOD_ENTRIES + [[entry, []]]))
    with pytest.raises(DatasetError, match=r"entry 3: image path .* resolves outside the dataset folder") as info:
        load_props(folder, "train")
    assert repr(entry) in str(info.value)
    assert len(load_props(folder, "train", skip_bad=True)) == 3


def test_coco_paths_leaving_the_image_folder_are_refused(tmp_path: Path) -> None:
    path = make_coco(tmp_path)
    write_image(tmp_path / "outside.png", [])
    data = json.loads(path.read_text())
    data["images"][1]["file_name"] = "../outside.png"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"image entry 1: image path '../outside.png' resolves outside"):
        load_coco(path, tmp_path / "img")
    # Subfolders inside the image folder stay fine.
    write_image(tmp_path / "img" / "sub" / "c.png", [])
    data["images"][1]["file_name"] = "sub/../sub/c.png"
    path.write_text(json.dumps(data))
    assert len(load_coco(path, tmp_path / "img")) == 2


def test_exif_orientation_in_datasets_follows_the_flag(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "PROPS-Detection-Dataset"
    (folder / "images").mkdir(parents=True)
    photo = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = photo.getexif()
    exif[0x0112] = 6
    photo.save(folder / "images" / "p.jpg", exif=exif)
    (folder / "train.json").write_text(json.dumps([["images/p.jpg", [{"name": "mug", "xyxy": [1, 1, 10, 30]}]]]))
    upright = load_props(folder, "train")
    assert upright.samples[0].size_hw == (40, 20)
    assert DetectionDataset(upright.samples, upright.class_names, False, TINY)[0][0].shape == (3, 40, 20)
    with pytest.raises(DatasetError, match="outside the 40x20 image"):
        load_props(folder, "train", exif=False)  # the box only fits the upright frame
