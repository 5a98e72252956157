"""Datasets: PROPS Detection and COCO-format loaders, validation, augmentation and a resumable sampler.

Both loaders produce the same record, ``Sample``: an image path, its size read from the file header, and
boxes in pixel xyxy with contiguous class ids. Every entry is validated up front so that a bad annotation
fails here, with the file and entry index in the message, never deep inside training; ``skip_bad=True``
drops such entries instead and counts them.

Conventions shared by both loaders:

- classes are matched by name, never by position or id: a label is the index of the entry's class name in the
  ``class_names`` asked for (the model's), and a name outside them is an error that lists both sets;
- image paths in an annotation file must stay inside the dataset folder: absolute paths and ``..`` that leave
  it are refused, naming the entry;
- pixels and sizes follow ``diffdet.images`` (the project's one decoder), EXIF orientation included unless the
  loader is given ``exif=False``;
- COCO crowd annotations (``iscrowd=1``) are kept apart from the boxes (``crowd_boxes_xyxy``): training never
  sees them, evaluation hands them to pycocotools as the ignore regions they are.

``DetectionDataset`` turns samples into ``(image uint8 Tensor[3, H, W] RGB, target dict)`` with the
DiffusionDet training augmentation (torchvision.transforms.v2 on ``tv_tensors.BoundingBoxes``).
``InfiniteSampler`` yields ``(index, draw_seed)`` keys: the dataset seeds the augmentation of each draw
from its key, so a resumed run sees exactly the same images in the same order with the same augmentations,
whatever the number of loader workers.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from diffdet import images
from diffdet.config import PROPS_CLASSES, DiffDetConfig
from diffdet.images import ImageError, image_to_tensor

logger = logging.getLogger(__name__)

# Official md5 sums of the PROPS Detection release (REFERENCE.md section 5).
PROPS_MD5: dict[str, str] = {
    "archive": "225d557f4980bd3e999d93411c3bebe6",
    "PROPS-Detection.tar.gz": "edb9252acb907894a478e8e1dc244da1",
    "train.json": "b4a5d081817e84ec9d47b30310172969",
    "val.json": "9ddab8ec4c2df411a982e00cf5430857",
}
PROPS_SPLITS = ("train", "val")
PROPS_IMAGES_ARCHIVE = "PROPS-Detection.tar.gz"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")

# Boxes may stick out of the image by this many pixels (annotation rounding); they are clipped back.
BOX_TOLERANCE_PX = 1.0


class DatasetError(ValueError):
    """A malformed or inconsistent dataset file or entry; the message names the file and entry index."""


@dataclass
class Sample:
    """One annotated image.

    Attributes:
        image_path: absolute path of the image file.
        boxes_xyxy (np.ndarray[G, 4] float32): pixels, 0 <= x1 < x2 <= W, 0 <= y1 < y2 <= H.
        labels (np.ndarray[G] int64): contiguous class ids in [0, K).
        image_id: unique id within the split (PROPS: entry index in the json; COCO: the file's image id).
        size_hw: (H, W) read from the image file (after EXIF orientation when ``exif``).
        crowd_boxes_xyxy (np.ndarray[C, 4] float32), crowd_labels (np.ndarray[C] int64): COCO ``iscrowd=1``
            regions, ignored by pycocotools' matching; never training targets.
        areas (np.ndarray[G] | None), crowd_areas (np.ndarray[C] | None): the file's ``area`` values, which
            pycocotools uses for its small/medium/large ranges; None means box areas.
        exif: whether the pixels are read with the EXIF orientation applied (``diffdet.images``).
    """

    image_path: str
    boxes_xyxy: np.ndarray
    labels: np.ndarray
    image_id: int
    size_hw: tuple[int, int]
    crowd_boxes_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    crowd_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    areas: np.ndarray | None = None
    crowd_areas: np.ndarray | None = None
    exif: bool = True


@dataclass
class DatasetSplit:
    """The result of a loader: valid samples, class names (index = label) and what was skipped."""

    samples: list[Sample]
    class_names: tuple[str, ...]
    skipped: list[str] = field(default_factory=list)  # one message per skipped entry

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.samples)


# ---------------------------------------------------------------------------------------------- validation

def read_image_size(path: Path, where: str = "", exif: bool = True) -> tuple[int, int]:
    """(H, W) from the image header, after EXIF orientation when ``exif`` (``diffdet.images.read_image_size``).

    Raises:
        DatasetError if unreadable; ``where`` ("file, entry i") prefixes the message.
    """
    try:
        return images.read_image_size(path, exif=exif)
    except ImageError as exc:
        prefix = f"{where}: " if where else ""
        raise DatasetError(f"{prefix}unreadable image {path}: {exc.reason}") from None


def resolve_inside(root: Path, entry: str, where: str) -> Path:
    """``root / entry`` for a relative path that stays inside ``root`` once normalised; DatasetError otherwise.

    The check is on the path as written (absolute paths and ``..`` components that climb out of ``root``), so a
    dataset folder may still hold symbolic links of its own.
    """
    candidate = Path(entry)
    normalised = os.path.normpath(entry)
    if candidate.is_absolute() or entry.startswith(("/", "\\")) or normalised == ".." \
            or normalised.startswith(".." + os.sep) or ":" in candidate.drive:
        raise DatasetError(f"{where}: image path {entry!r} resolves outside the dataset folder {root}; "
                           "paths must be relative to it and stay inside it")
    return root / normalised


def match_class_names(dataset_names: Sequence[str], model_names: Sequence[str], source: str) -> dict[str, int]:
    """Map a dataset's class names onto the model's labels by name: ``{name: index in model_names}``.

    Every dataset name must be one of the model's (the model may know more classes than the dataset uses).

    Raises:
        DatasetError listing the names the model lacks, and both lists.
    """
    index = {name: i for i, name in enumerate(model_names)}
    missing = [name for name in dataset_names if name not in index]
    if missing:
        raise DatasetError(
            f"{source}: class name(s) {missing} are not among the model's classes. Dataset classes: "
            f"{list(dataset_names)}; model classes: {list(model_names)}. Classes are matched by name, never by "
            "position or id: rename the categories or use a model trained on these classes.")
    return {name: index[name] for name in dataset_names}


def validate_boxes(
    boxes_xyxy: np.ndarray, size_hw: tuple[int, int], where: str, tolerance: float = BOX_TOLERANCE_PX,
) -> np.ndarray:
    """Check pixel xyxy boxes against an image of size ``size_hw`` and clip those within ``tolerance``.

    Args:
        boxes_xyxy (np.ndarray[G, 4]): pixels.
        where: "file, entry i" prefix for error messages.
    Returns:
        np.ndarray[G, 4] float32, clipped to [0, W] x [0, H].
    Raises:
        DatasetError: non-finite coordinates, x2 <= x1 or y2 <= y1, or a box more than ``tolerance`` outside.
    """
    height, width = size_hw
    for j, (x1, y1, x2, y2) in enumerate(boxes_xyxy.tolist()):
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise DatasetError(f"{where}, box {j}: non-finite coordinates {[x1, y1, x2, y2]}")
        if x2 <= x1 or y2 <= y1:
            raise DatasetError(f"{where}, box {j}: empty box {[x1, y1, x2, y2]} (needs x2 > x1 and y2 > y1)")
        if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
            raise DatasetError(
                f"{where}, box {j}: {[x1, y1, x2, y2]} lies outside the {width}x{height} image "
                f"(tolerance {tolerance} px)"
            )
    clipped = boxes_xyxy.astype(np.float32).copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, height)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    if empty.any():
        raise DatasetError(f"{where}, box {int(np.argmax(empty))}: empty after clipping to the image")
    return clipped


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc


def _finish(samples: list[Sample], class_names: Sequence[str], skipped: list[str], source: Path) -> DatasetSplit:
    if skipped:
        logger.warning("%s: skipped %d bad entr%s; first: %s", source, len(skipped),
                       "y" if len(skipped) == 1 else "ies", skipped[0])
    return DatasetSplit(samples, tuple(class_names), skipped)


# ---------------------------------------------------------------------------------------------- PROPS

def file_md5(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def check_md5(path: Path, expected: str) -> None:
    """Raise DatasetError naming both sums unless ``path`` has md5 ``expected``."""
    actual = file_md5(path)
    if actual != expected:
        raise DatasetError(
            f"md5 mismatch for {path}: expected {expected} (official PROPS release), got {actual}. "
            "For a custom archive pass verify_md5=False (--no-md5)."
        )


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(archive: Path, cache_dir: Path, expected_md5: str | None) -> Path:
    """Extract a .tar(.gz)/.zip into ``cache_dir / <archive name>``, once; returns that folder.

    The md5 (when given) is checked before the first extraction; a marker file makes later calls free.
    """
    target = Path(cache_dir) / archive.name.replace(".", "_")
    marker = target / ".extracted"
    if marker.is_file():
        return target
    if expected_md5 is not None:
        check_md5(archive, expected_md5)
    target.mkdir(parents=True, exist_ok=True)
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(target)  # zipfile strips absolute paths and ".." itself
    else:
        with tarfile.open(archive) as handle:
            handle.extractall(target, filter="data")  # refuses links and paths leaving the target
    marker.write_text(archive.name)
    return target


def _find_props_root(folder: Path, split: str) -> Path | None:
    """The folder holding ``{split}.json``: ``folder`` itself or a descendant up to two levels down."""
    if (folder / f"{split}.json").is_file():
        return folder
    for pattern in (f"*/{split}.json", f"*/*/{split}.json"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[0].parent
    return None


def load_props(
    root: str | Path,
    split: str,
    cache_dir: str | Path | None = None,
    class_names: Sequence[str] = PROPS_CLASSES,
    verify_md5: bool = True,
    skip_bad: bool = False,
    exif: bool = True,
) -> DatasetSplit:
    """Load a PROPS Detection split in the published format.

    ``{split}.json`` is a list of ``[image_path, [{"name": class_name, "xyxy": [x1, y1, x2, y2]}, ...]]``,
    boxes in pixels, image paths relative to the dataset folder; extra keys in the objects are ignored.

    Args:
        root: the ``PROPS-Detection-Dataset`` folder (or a folder containing it), or an archive
            (.tar.gz/.tgz/.tar/.zip) of it. If the images are still packed in ``PROPS-Detection.tar.gz`` next
            to the json, that archive is extracted too.
        split: "train" or "val".
        cache_dir: where archives are extracted; required when something must be extracted.
        class_names: label order; ``name`` values outside it are errors.
        verify_md5: check archives against the official md5 sums; False for custom archives.
        skip_bad: skip (and count) bad entries instead of raising.
        exif: read sizes and pixels with the EXIF orientation applied (``diffdet.images``); False for boxes drawn
            on the stored pixels.
    Returns:
        DatasetSplit with one Sample per valid entry, ``image_id`` = entry index in the json.
    Raises:
        DatasetError (a ValueError): missing files, md5 mismatch, malformed JSON, or (without skip_bad)
        a bad entry (unknown class name, image path leaving the dataset folder, bad box), with the file and
        entry index in the message.
    """
    if split not in PROPS_SPLITS:
        raise ValueError(f"split must be one of {PROPS_SPLITS}, got {split!r}")
    root = Path(root)
    if _is_archive(root):
        if cache_dir is None:
            raise ValueError(f"cache_dir is required to extract {root}")
        extracted = extract_archive(root, Path(cache_dir), PROPS_MD5["archive"] if verify_md5 else None)
        folder = _find_props_root(extracted, split)
        if folder is None:
            raise DatasetError(f"archive {root} contains no {split}.json")
    elif root.is_dir():
        folder = _find_props_root(root, split)
        if folder is None:
            raise DatasetError(f"no {split}.json in {root} or its subfolders")
    else:
        raise DatasetError(f"PROPS root not found (expected a folder or an archive): {root}")

    json_path = folder / f"{split}.json"
    entries = _load_json(json_path)
    if not isinstance(entries, list):
        raise DatasetError(f"{json_path}: top level must be a JSON list, got {type(entries).__name__}")

    bases = [folder]
    images_archive = folder / PROPS_IMAGES_ARCHIVE
    if entries and images_archive.is_file() and not _first_image_exists(entries, folder):
        if cache_dir is None:
            raise ValueError(f"cache_dir is required to extract {images_archive}")
        expected = PROPS_MD5[PROPS_IMAGES_ARCHIVE] if verify_md5 else None
        bases.append(extract_archive(images_archive, Path(cache_dir), expected))

    class_index = {name: i for i, name in enumerate(class_names)}
    samples, skipped = _parse_entries(
        entries, lambda entry, index, where: _parse_props_entry(entry, index, bases, class_index, where, exif),
        f"{json_path}, entry", skip_bad)
    return _finish(samples, class_names, skipped, json_path)


def _parse_entries(items: list[Any], parse: Callable[[Any, int, str], Sample], where: str,
                   skip_bad: bool) -> tuple[list[Sample], list[str]]:
    """``parse(item, index, "<where> <index>")`` for every item. A bad one raises its DatasetError, or with
    ``skip_bad`` is left out and its message kept (the caller logs the count)."""
    samples: list[Sample] = []
    skipped: list[str] = []
    for index, item in enumerate(items):
        try:
            samples.append(parse(item, index, f"{where} {index}"))
        except DatasetError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
    return samples, skipped


def _first_image_exists(entries: list[Any], folder: Path) -> bool:
    first = entries[0]
    if not (isinstance(first, list) and len(first) == 2 and isinstance(first[0], str)):
        return False
    try:
        return resolve_inside(folder, first[0], "first entry").is_file()
    except DatasetError:
        return False


def _parse_props_entry(
    entry: Any, index: int, bases: list[Path], class_index: dict[str, int], where: str, exif: bool = True,
) -> Sample:
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)
            and isinstance(entry[1], list)):
        raise DatasetError(f"{where}: expected [image_path, [objects...]], got {str(entry)[:120]}")
    rel_path, objects = entry
    candidates = [resolve_inside(base, rel_path, where) for base in bases]
    image_path = next((path for path in candidates if path.is_file()), None)
    if image_path is None:
        raise DatasetError(f"{where}: image not found: {rel_path} (looked in {[str(b) for b in bases]})")
    boxes, labels = [], []
    for j, obj in enumerate(objects):
        if not (isinstance(obj, dict) and isinstance(obj.get("name"), str) and isinstance(obj.get("xyxy"), list)
                and len(obj["xyxy"]) == 4 and all(isinstance(v, (int, float)) for v in obj["xyxy"])):
            raise DatasetError(f"{where}, object {j}: expected {{'name': str, 'xyxy': [4 numbers]}}, got {obj!r}")
        if obj["name"] not in class_index:
            raise DatasetError(f"{where}, object {j}: unknown class {obj['name']!r}, not among the model's "
                               f"classes {list(class_index)} (classes are matched by name)")
        boxes.append([float(v) for v in obj["xyxy"]])
        labels.append(class_index[obj["name"]])
    size_hw = read_image_size(image_path, where, exif)
    boxes_xyxy = validate_boxes(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), size_hw, where)
    return Sample(str(image_path.resolve()), boxes_xyxy, np.asarray(labels, dtype=np.int64), index, size_hw,
                  exif=exif)


# ---------------------------------------------------------------------------------------------- COCO

def load_coco(json_path: str | Path, image_dir: str | Path, class_names: Sequence[str] | None = None,
              skip_bad: bool = False, exif: bool = True) -> DatasetSplit:
    """Load a COCO-format detection json (any dataset).

    Categories are matched to ``class_names`` (the model's) by name, whatever their ids and order in the file;
    without ``class_names`` the file's own names, in ascending category-id order, become the classes. Boxes
    ``[x, y, w, h]`` become pixel xyxy. Crowd annotations (``iscrowd=1``) go to ``crowd_boxes_xyxy`` (ignore
    regions for pycocotools, never training targets); the annotations' ``area`` values are kept for
    pycocotools' area ranges. Images without annotations are kept (G = 0). ``file_name`` must stay inside
    ``image_dir``.

    Args:
        json_path: the annotation file; image_dir: folder the images' ``file_name`` are relative to.
        class_names: the model's classes, or None to take the file's.
        skip_bad: skip (and count) bad images instead of raising.
        exif: read sizes and pixels with the EXIF orientation applied (``diffdet.images``).
    Returns:
        DatasetSplit, one Sample per valid image in file order, ``image_id`` = the file's image id, class names
        = ``class_names`` when given.
    Raises:
        DatasetError: malformed file, a category name the model lacks (both lists in the message), duplicate
        category names, a path leaving ``image_dir``, or (without skip_bad) a bad image entry.
    """
    json_path, image_dir = Path(json_path), Path(image_dir)
    data = _load_json(json_path)
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)
            and isinstance(data.get("categories"), list) and isinstance(data.get("annotations", []), list)):
        raise DatasetError(f"{json_path}: expected an object with 'images', 'annotations' and 'categories' lists")
    try:
        categories = sorted(data["categories"], key=lambda c: c["id"])
        file_names = [str(c["name"]) for c in categories]
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"{json_path}: every category needs 'id' and 'name' ({exc})") from exc
    duplicates = sorted({n for n in file_names if file_names.count(n) > 1})
    if duplicates:
        raise DatasetError(f"{json_path}: category name(s) {duplicates} appear more than once")
    class_names = tuple(file_names) if class_names is None else tuple(class_names)
    by_name = match_class_names(file_names, class_names, str(json_path))
    label_of = {c["id"]: by_name[str(c["name"])] for c in categories}
    annotations: dict[Any, list[tuple[int, dict]]] = {}
    for k, ann in enumerate(data.get("annotations", [])):
        annotations.setdefault(ann.get("image_id") if isinstance(ann, dict) else None, []).append((k, ann))

    samples, skipped = _parse_entries(
        data["images"],
        lambda image, index, where: _parse_coco_image(image, annotations, label_of, image_dir, where, exif),
        f"{json_path}, image entry", skip_bad)
    orphans = set(annotations) - {im.get("id") for im in data["images"] if isinstance(im, dict)}
    if orphans:
        first = annotations[next(iter(orphans))][0][0]
        message = f"{json_path}, annotation {first}: image_id not among the images"
        if not skip_bad:
            raise DatasetError(message)
        skipped.append(message)
    return _finish(samples, class_names, skipped, json_path)


def _parse_coco_image(
    image: Any, annotations: dict[Any, list[tuple[int, dict]]], label_of: dict[Any, int], image_dir: Path, where: str,
    exif: bool = True,
) -> Sample:
    if not (isinstance(image, dict) and isinstance(image.get("id"), int) and isinstance(image.get("file_name"), str)):
        raise DatasetError(f"{where}: expected {{'id': int, 'file_name': str, ...}}, got {str(image)[:120]}")
    image_path = resolve_inside(image_dir, image["file_name"], where)
    if not image_path.is_file():
        raise DatasetError(f"{where}: image not found: {image_path}")
    size_hw = read_image_size(image_path, where, exif)
    declared = (image.get("height"), image.get("width"))
    if None not in declared and tuple(declared) != size_hw:
        raise DatasetError(
            f"{where}: json says {declared[1]}x{declared[0]} but {image_path} is {size_hw[1]}x{size_hw[0]}"
            + (" after its EXIF orientation (load with exif=False if the boxes are on the stored pixels)"
               if exif and tuple(declared) == size_hw[::-1] else "")
        )
    parts: dict[bool, tuple[list, list, list]] = {False: ([], [], []), True: ([], [], [])}
    for k, ann in annotations.get(image["id"], []):
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise DatasetError(f"{where}, annotation {k}: bbox must be [x, y, w, h], got {bbox!r}")
        if ann.get("category_id") not in label_of:
            raise DatasetError(f"{where}, annotation {k}: unknown category_id {ann.get('category_id')!r}")
        x, y, w, h = (float(v) for v in bbox)
        area = ann.get("area")
        boxes, labels, areas = parts[bool(ann.get("iscrowd", 0))]
        boxes.append([x, y, x + w, y + h])
        labels.append(label_of[ann["category_id"]])
        areas.append(float(area) if isinstance(area, (int, float)) and math.isfinite(area) else w * h)
    (boxes, labels, areas), (crowd, crowd_labels, crowd_areas) = parts[False], parts[True]
    boxes_xyxy = validate_boxes(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), size_hw, where)
    crowd_xyxy = validate_boxes(np.asarray(crowd, dtype=np.float64).reshape(-1, 4), size_hw, f"{where} (crowd)")
    return Sample(str(image_path.resolve()), boxes_xyxy, np.asarray(labels, dtype=np.int64), image["id"], size_hw,
                  crowd_boxes_xyxy=crowd_xyxy, crowd_labels=np.asarray(crowd_labels, dtype=np.int64),
                  areas=np.asarray(areas, dtype=np.float64), crowd_areas=np.asarray(crowd_areas, dtype=np.float64),
                  exif=exif)


# ---------------------------------------------------------------------------------------------- augmentation

class RandomSizeCrop(v2.Transform):
    """Crop a random (h, w) window, each side uniform in [min_size, max_size] clipped to the image.

    The detectron2 ``RandomCrop("absolute_range", (min, max))`` of the DiffusionDet recipe; boxes are cropped
    (and clamped) with the image, ``SanitizeBoundingBoxes`` afterwards drops those left empty.
    """

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        if not 0 < min_size <= max_size:
            raise ValueError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
        self.min_size, self.max_size = min_size, max_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        crop_h = int(torch.randint(min(height, self.min_size), min(height, self.max_size) + 1, ()))
        crop_w = int(torch.randint(min(width, self.min_size), min(width, self.max_size) + 1, ()))
        top = int(torch.randint(0, height - crop_h + 1, ()))
        left = int(torch.randint(0, width - crop_w + 1, ()))
        return {"top": top, "left": left, "height": crop_h, "width": crop_w}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(TF.crop, inpt, **params)


class PhotometricAugment(v2.Transform):
    """Photo-like degradations of a uint8 image, each applied with probability ``prob``: exposure, contrast and
    saturation changes (factors in [0.65, 1.35], [0.65, 1.35], [0.6, 1.4]), gaussian blur (sigma 0.3-2 px: soft
    focus), low resolution (down by 0.35-0.9 and back up), JPEG compression (quality 30-95). Boxes are unchanged.

    Closes part of the gap between renders and webcam photos. Written on OpenCV because torchvision's ColorJitter
    and GaussianBlur took 0.4-0.7 s per 512x384 image here, more than a training step's share; parameters come
    from torch's RNG, so an augmentation is reproducible per draw like the others.
    """

    _transformed_types = (tv_tensors.Image,)

    def __init__(self, prob: float) -> None:
        super().__init__()
        if not 0 <= prob <= 1:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        self.prob = prob

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        draws = torch.rand(12).tolist()
        on = [d < self.prob for d in draws[:4]]
        return {"colour": (0.65 + 0.7 * draws[4], 0.65 + 0.7 * draws[5], 0.6 + 0.8 * draws[6]) if on[0] else None,
                "blur": 0.3 + 1.7 * draws[7] if on[1] else None,
                "low_res": 0.35 + 0.55 * draws[8] if on[2] else None,
                "jpeg": int(30 + 65 * draws[9]) if on[3] else None}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(v is not None for v in params.values()):
            return inpt
        image = inpt.permute(1, 2, 0).numpy()  # (H, W, 3) uint8 RGB
        height, width = image.shape[:2]
        if params["colour"] is not None:
            brightness, contrast, saturation = params["colour"]
            img = image.astype(np.float32) * brightness
            gray = img @ np.array([0.299, 0.587, 0.114], np.float32)  # (H, W)
            img = gray[..., None] + saturation * (img - gray[..., None])
            img = float(gray.mean()) + contrast * (img - float(gray.mean()))
            image = np.clip(img, 0, 255).astype(np.uint8)
        if params["blur"] is not None:
            image = cv2.GaussianBlur(image, (0, 0), params["blur"])
        if params["low_res"] is not None:
            small = cv2.resize(image, (max(8, round(width * params["low_res"])), max(8, round(height * params["low_res"]))),
                               interpolation=cv2.INTER_AREA)
            image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        if params["jpeg"] is not None:
            ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, params["jpeg"]])
            image = cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
        return tv_tensors.wrap(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous(), like=inpt)


def build_train_transform(cfg: DiffDetConfig) -> v2.Transform:
    """The DiffusionDet training augmentation on (image, {"boxes": BoundingBoxes, "labels": Tensor}).

    1. horizontal flip with p = 0.5;
    2. with p = cfg.crop_prob: short side to a choice of cfg.crop_resize, then a random crop with sides in
       cfg.crop_size;
    3. short side to a random choice of cfg.min_size_train, long side at most cfg.max_size_train;
    4. clamp boxes to the image and drop the empty ones;
    5. with cfg.photometric_prob > 0, ``PhotometricAugment`` (colour, blur, low resolution, JPEG).
    """
    crop = v2.Compose([v2.RandomShortestSize(list(cfg.crop_resize)), RandomSizeCrop(*cfg.crop_size)])
    steps = [
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomApply([crop], p=cfg.crop_prob),
        v2.RandomShortestSize(list(cfg.min_size_train), max_size=cfg.max_size_train),
        v2.ClampBoundingBoxes(),
        v2.SanitizeBoundingBoxes(min_size=1.0),
    ]
    if cfg.photometric_prob > 0:
        steps.append(PhotometricAugment(cfg.photometric_prob))
    return v2.Compose(steps)


def read_image_rgb(path: str, exif: bool = True) -> Tensor:
    """uint8 Tensor[3, H, W] RGB through the project's one image decoder (``diffdet.images.read_image_rgb``: EXIF
    orientation when ``exif``, alpha on white, 16-bit high byte, oversized images refused)."""
    try:
        return image_to_tensor(images.read_image_rgb(path, exif=exif)).contiguous()  # (3, H, W)
    except ImageError as exc:
        raise DatasetError(f"unreadable image {path}: {exc.reason}") from None


class DetectionDataset(Dataset):
    """Samples -> (image, target) pairs for training (augmented) or evaluation (untouched).

    Item keys are an index or ``(index, draw_seed)`` (what ``InfiniteSampler`` yields): the seed fixes the
    augmentation of that draw. A plain index in training mode augments from the global torch RNG.

    Returns:
        image (uint8 Tensor[3, H, W]) RGB, and a target dict:
        ``boxes_xyxy`` (float32 Tensor[G, 4]) pixels of the returned image, 0 <= x1 < x2 <= W;
        ``labels`` (int64 Tensor[G]); ``image_id`` (int); ``orig_size_hw`` ((H, W) of the file);
        ``image_size_hw`` (int64 Tensor[2], size of the returned image, what the criterion normalises by).
        Eval mode (train=False) returns the file's pixels at their original size: inference resizes itself.
    """

    def __init__(self, samples: Sequence[Sample], class_names: Sequence[str], train: bool, cfg: DiffDetConfig) -> None:
        self.samples = list(samples)
        self.class_names = tuple(class_names)
        self.train = train
        self.cfg = cfg
        self.transform = build_train_transform(cfg) if train else None
        for sample in self.samples:
            if sample.labels.size and sample.labels.max() >= len(self.class_names):
                raise ValueError(f"label {int(sample.labels.max())} of {sample.image_path} is outside "
                                 f"the {len(self.class_names)} class names")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, dict[str, Any]]:
        index, draw_seed = key if isinstance(key, tuple) else (key, None)
        sample = self.samples[index]
        image = read_image_rgb(sample.image_path, exif=sample.exif)
        if tuple(image.shape[1:]) != sample.size_hw:
            raise DatasetError(f"{sample.image_path}: decoded size {tuple(image.shape[1:])} != header {sample.size_hw}")
        boxes = torch.from_numpy(sample.boxes_xyxy).float()  # (G, 4)
        labels = torch.from_numpy(sample.labels).long()  # (G,)
        if self.transform is not None:
            image, boxes, labels = self._augment(image, boxes, labels, draw_seed)
        target = {
            "boxes_xyxy": boxes,
            "labels": labels,
            "image_id": sample.image_id,
            "orig_size_hw": sample.size_hw,
            "image_size_hw": torch.tensor(image.shape[1:], dtype=torch.int64),
        }
        return image, target

    def _augment(
        self, image: Tensor, boxes: Tensor, labels: Tensor, draw_seed: int | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        inputs = (
            tv_tensors.Image(image),
            {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image.shape[1:])),
             "labels": labels},
        )
        if draw_seed is None:
            out_image, out_target = self.transform(*inputs)
        else:
            # v2 transforms draw from the global torch RNG: seed it for this draw only, leave the caller's state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(draw_seed)
                out_image, out_target = self.transform(*inputs)
        return (out_image.as_subclass(Tensor), out_target["boxes"].as_subclass(Tensor).float(),
                out_target["labels"])


# ---------------------------------------------------------------------------------------------- sampling

def _mix64(*values: int) -> int:
    """SplitMix64 hash of integers -> 63-bit seed; decorrelates seeds of neighbouring draws."""
    mask = (1 << 64) - 1
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & mask)) & mask
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        state = z ^ (z >> 31)
    return state >> 1


class InfiniteSampler(Sampler):
    """An endless, deterministic stream of ``(index, draw_seed)`` keys, resumable at any position.

    The global stream concatenates one permutation of range(n) per epoch (epoch e shuffled by ``seed`` and e;
    unshuffled if ``shuffle=False``); rank r takes global positions r, r + world_size, ... Each key's
    ``draw_seed`` depends only on (seed, global position), so the augmentation of a draw is fixed too.

    Args:
        n: dataset size; seed: base seed; rank / world_size: this process's share.
        skip: number of keys of this rank's stream already consumed (e.g. iteration * per-rank batch size);
            iteration starts right after them without replaying the stream.
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1, skip: int = 0,
                 shuffle: bool = True) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world_size {world_size}")
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size, self.skip = rank, world_size, skip

    def _permutation(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        generator = torch.Generator().manual_seed(_mix64(self.seed, epoch))
        return torch.randperm(self.n, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.skip * self.world_size + self.rank  # global position of the next key
        epoch, perm = -1, []
        while True:
            if position // self.n != epoch:
                epoch = position // self.n
                perm = self._permutation(epoch)
            yield perm[position % self.n], _mix64(self.seed, position, 1)
            position += self.world_size


def collate_detection(batch: list[tuple[Tensor, dict[str, Any]]]) -> tuple[list[Tensor], list[dict[str, Any]]]:
    """Images differ in size: keep lists (the model pads them itself)."""
    images, targets = zip(*batch)
    return list(images), list(targets)


def build_train_loader(
    dataset: DetectionDataset, batch_size: int, seed: int, start_iter: int = 0, num_workers: int = 0,
    rank: int = 0, world_size: int = 1,
) -> DataLoader:
    """An endless loader of (list of images, list of targets) batches for this rank, resumed at ``start_iter``.

    ``batch_size`` is per rank; iteration i of a run sees the same batch whether or not the run was resumed.
    """
    sampler = InfiniteSampler(len(dataset), seed, rank, world_size, skip=start_iter * batch_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      collate_fn=collate_detection, persistent_workers=num_workers > 0)


def load_split(path: str, fmt: str, split: str, class_names: Sequence[str], cache_dir: str | Path | None = None,
               verify_md5: bool = True, skip_bad: bool = False) -> DatasetSplit:
    """One split from the command line's data argument: a PROPS folder/archive (``fmt="props"``) or, for
    ``fmt="coco"``, ``JSON_PATH:IMAGE_DIR`` (the split name is then ignored). Classes are matched to
    ``class_names`` by name in both formats."""
    if fmt == "props":
        return load_props(path, split, cache_dir=cache_dir, class_names=class_names, verify_md5=verify_md5,
                          skip_bad=skip_bad)
    if fmt != "coco":
        raise ValueError(f"data format must be 'props' or 'coco', got {fmt!r}")
    json_path, _, image_dir = path.partition(":")
    if not image_dir:
        raise ValueError(f"COCO data must be given as JSON_PATH:IMAGE_DIR, got {path!r}")
    return load_coco(json_path, image_dir, class_names=class_names, skip_bad=skip_bad)
