"""Everything the app reads from outside: uploaded images, ground-truth files, checkpoints and metrics files.

Each loader checks before it decodes and raises ``InputError`` (a ``ValueError``) whose message is written for
the person who uploaded the file: the UI shows it as is, so it never names a server path or a Python type.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffdet.images import MAX_PIXELS, ImageError, read_image_rgb

# Limits on what an upload may cost the server before it is rejected. The image rule itself (pixel limit, EXIF,
# alpha, bit depth, no aspect limit) is the core's ``diffdet.images``: the app and the CLI accept and decode the
# same files into the same pixels.
MAX_IMAGE_BYTES = 20 * 1024 * 1024        # 20 MB: phone photos fit, a bomb in a PNG wrapper does not
MAX_IMAGE_PIXELS = MAX_PIXELS             # checked from the header, before any pixel is decoded
MAX_ANNOTATION_BYTES = 10 * 1024 * 1024   # a COCO file for one image is a few kB; 10 MB covers whole splits
MAX_CHECKPOINT_BYTES = 600 * 1024 * 1024  # a ResNet-50 DiffusionDet is ~440 MB in float32
MAX_METRICS_BYTES = 20 * 1024 * 1024


class InputError(ValueError):
    """A problem with something the user gave; the message is shown in the UI verbatim."""


def _mb(num_bytes: float) -> str:
    return f"{num_bytes / 1024 / 1024:.1f} MB"


def _check_file(path: str | os.PathLike | None, what: str, max_bytes: int) -> Path:
    if path is None or str(path) == "":
        raise InputError(f"No {what} was given.")
    file = Path(path)
    if not file.is_file():
        raise InputError(f"The {what} could not be read (it is not a file). Please upload it again.")
    size = file.stat().st_size
    if size == 0:
        raise InputError(f"The {what} is empty (0 bytes).")
    if size > max_bytes:
        raise InputError(f"The {what} is {_mb(size)}; the limit is {_mb(max_bytes)}.")
    return file


# ---------------------------------------------------------------------------------------------------------------------
# images


def load_image(path: str | os.PathLike | None) -> np.ndarray:
    """Validate and decode an uploaded image with the core's one decoder (``diffdet.images.read_image_rgb``).

    Checks the file exists and is 1 byte to ``MAX_IMAGE_BYTES``; everything else (format, pixel limit from the
    header, EXIF orientation, alpha on white, 16-bit high byte, first frame of animations) is the core's rule.

    Returns:
        np.ndarray (H, W, 3) uint8 RGB, the same array ``python -m diffdet predict`` decodes from the file.
    Raises:
        InputError with a message for the user (never the server path).
    """
    file = _check_file(path, "image", MAX_IMAGE_BYTES)
    try:
        return read_image_rgb(file)
    except ImageError as exc:
        reason = exc.reason[:1].upper() + exc.reason[1:]
        raise InputError(f"{reason}.") from None


def log_user_error(logger: logging.Logger, where: str, exc: BaseException) -> None:
    """Log a user's mistake (a refused upload, a bad setting) as one WARNING line, without a traceback: tracebacks
    in the server log are kept for faults of the program. ``where`` names the handler or endpoint."""
    message = " ".join(str(exc).split())[:300]
    logger.warning("user error in %s: %s", where, message)


def file_digest(path: str | os.PathLike) -> str:
    """sha1 of a file's bytes: identifies an example image however it reached the app (gallery, upload, API)."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# ground truth


@dataclass
class GroundTruth:
    """Boxes of one image. boxes_xyxy (G, 4) float32 pixels, labels (G,) int64 class ids (the model's, matched by
    name); crowd_boxes_xyxy (C, 4) / crowd_labels (C,) the COCO ``iscrowd=1`` regions, which AP treats as ignore
    regions (``app.evaluation.image_ap``); ``notes`` lists what was skipped (unknown class names, empty boxes) so
    the UI can say so."""

    boxes_xyxy: np.ndarray
    labels: np.ndarray
    source: str = ""
    notes: list[str] = field(default_factory=list)
    crowd_boxes_xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    crowd_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @classmethod
    def empty(cls, source: str = "") -> "GroundTruth":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.int64), source)


def _finite_box(values: object) -> list[float] | None:
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        return None
    try:
        box = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return box if all(math.isfinite(v) for v in box) else None


def _build_gt(
    items: list[tuple[str, list[float]]], class_names: tuple[str, ...], image_size_hw: tuple[int, int] | None,
    source: str, crowd: list[bool] | None = None,
) -> GroundTruth:
    """(class name, xyxy) pairs -> GroundTruth, clipping to the image and dropping what cannot be used; the items
    flagged in ``crowd`` become crowd (ignore) regions. Classes are matched to ``class_names`` by name."""
    index = {name: i for i, name in enumerate(class_names)}
    crowd = crowd or [False] * len(items)
    boxes, labels, crowd_boxes, crowd_labels, unknown, degenerate = [], [], [], [], set(), 0
    for (name, box), is_crowd in zip(items, crowd):
        if name not in index:
            unknown.add(str(name))
            continue
        x1, y1, x2, y2 = box
        if image_size_hw is not None:
            height, width = image_size_hw
            x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
            y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        if x2 - x1 < 1.0 or y2 - y1 < 1.0:
            degenerate += 1
            continue
        (crowd_boxes if is_crowd else boxes).append([x1, y1, x2, y2])
        (crowd_labels if is_crowd else labels).append(index[name])
    notes = []
    if unknown:
        notes.append(f"skipped boxes of classes this model does not know: {', '.join(sorted(unknown))}")
    if degenerate:
        notes.append(f"skipped {degenerate} empty or out-of-image box(es)")
    return GroundTruth(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64), source, notes,
        np.asarray(crowd_boxes, np.float32).reshape(-1, 4), np.asarray(crowd_labels, np.int64),
    )


def _pick_entry(names: list[str], image_name: str | None, what: str) -> int:
    """Which entry of a multi-image file belongs to this image: the one file, or the one with the same file name."""
    if len(names) == 1:
        return 0
    if image_name:
        base = Path(image_name).name
        stem = Path(image_name).stem
        for i, name in enumerate(names):
            if Path(name).name == base:
                return i
        for i, name in enumerate(names):
            if Path(name).stem == stem:
                return i
    raise InputError(
        f"The {what} file describes {len(names)} images and none is named like this image "
        f"({Path(image_name).name if image_name else 'unnamed'}). Upload a file for this image only, or name the "
        "image as in the file."
    )


def parse_props(
    data: object, class_names: tuple[str, ...], image_name: str | None = None,
    image_size_hw: tuple[int, int] | None = None, source: str = "PROPS file",
) -> GroundTruth:
    """PROPS format: a JSON list of ``[relative_image_path, [{"name": class, "xyxy": [x1, y1, x2, y2]}, ...]]``.
    A single ``[path, [...]]`` pair is accepted too."""
    if (isinstance(data, list) and len(data) == 2 and isinstance(data[0], str) and isinstance(data[1], list)):
        data = [data]
    if not isinstance(data, list) or not data or not all(
        isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], list) for e in data
    ):
        raise InputError("The PROPS annotation file must be a JSON list of [image_path, [objects]] pairs.")
    entry = data[_pick_entry([e[0] for e in data], image_name, "PROPS annotation")]
    items = []
    for obj in entry[1]:
        box = _finite_box(obj.get("xyxy")) if isinstance(obj, dict) else None
        if box is None or not isinstance(obj.get("name"), str):
            raise InputError('Each PROPS object must look like {"name": "mug", "xyxy": [x1, y1, x2, y2]}.')
        items.append((obj["name"], box))
    return _build_gt(items, class_names, image_size_hw, source)


def parse_coco(
    data: dict, class_names: tuple[str, ...], image_name: str | None = None,
    image_size_hw: tuple[int, int] | None = None, source: str = "COCO file",
) -> GroundTruth:
    """COCO format: ``{"images": [...], "annotations": [{"image_id", "category_id", "bbox": [x, y, w, h]}],
    "categories": [{"id", "name"}]}``; categories are matched to the model's classes by name (ids and order do
    not matter); ``iscrowd=1`` annotations become crowd (ignore) regions."""
    images, annotations, categories = data.get("images"), data.get("annotations"), data.get("categories")
    if not isinstance(images, list) or not isinstance(annotations, list) or not isinstance(categories, list):
        raise InputError('A COCO annotation file needs "images", "annotations" and "categories" lists.')
    if not images:
        raise InputError("The COCO annotation file lists no images.")
    try:
        category_names = {c["id"]: str(c["name"]) for c in categories}
        file_names = [str(im.get("file_name", "")) for im in images]
        image_id = images[_pick_entry(file_names, image_name, "COCO annotation")]["id"]
    except (KeyError, TypeError, AttributeError):
        raise InputError("The COCO file's images need an id and a file_name, its categories an id and a name.") \
            from None
    items, crowd = [], []
    for ann in annotations:
        if not isinstance(ann, dict) or ann.get("image_id") != image_id:
            continue
        box = _finite_box(ann.get("bbox"))
        if box is None or ann.get("category_id") not in category_names:
            raise InputError("Each COCO annotation needs a bbox [x, y, w, h] and a category_id from categories.")
        x, y, w, h = box
        items.append((category_names[ann["category_id"]], [x, y, x + w, y + h]))
        crowd.append(bool(ann.get("iscrowd", 0)))
    return _build_gt(items, class_names, image_size_hw, source, crowd)


def parse_annotations(
    path: str | os.PathLike | None, class_names: tuple[str, ...], image_name: str | None = None,
    image_size_hw: tuple[int, int] | None = None,
) -> GroundTruth:
    """Read a PROPS-format or COCO-format JSON file (detected from its shape) for one image."""
    file = _check_file(path, "annotation file", MAX_ANNOTATION_BYTES)
    try:
        data = json.loads(file.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"The annotation file is not valid JSON{line}.") from None
    if isinstance(data, dict):
        return parse_coco(data, class_names, image_name, image_size_hw)
    return parse_props(data, class_names, image_name, image_size_hw)


# ---------------------------------------------------------------------------------------------------------------------
# checkpoints


def list_checkpoints(directory: str | os.PathLike) -> list[str]:
    """File names of the ``*.safetensors`` directly inside ``directory`` (sorted); never a path."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.glob("*.safetensors") if p.is_file())


def resolve_checkpoint(name: str | None, directory: str | os.PathLike) -> Path:
    """The path of a checkpoint chosen by name; only names that ``list_checkpoints`` returns are accepted, so the
    dropdown (and the API behind it) cannot reach any other file."""
    choices = list_checkpoints(directory)
    if not choices:
        raise InputError("No checkpoint is available: put a .safetensors file in checkpoints/ or upload one.")
    if name not in choices:
        raise InputError(f"Unknown checkpoint {str(name)[:80]!r}; choose one of: {', '.join(choices)}.")
    return Path(directory) / name


def check_checkpoint_upload(path: str | os.PathLike) -> Path:
    file = _check_file(path, "checkpoint", MAX_CHECKPOINT_BYTES)
    if file.suffix.lower() != ".safetensors":
        raise InputError("Checkpoints must be .safetensors files (pickled .pth files are not loaded, for safety).")
    return file


# ---------------------------------------------------------------------------------------------------------------------
# training metrics


def load_metrics(path: str | os.PathLike) -> list[dict]:
    """A run's metrics file: JSON lines of training rows ``{"iter", "loss_*", "lr"}`` and evaluation rows
    ``{"iter", "eval": {"AP", "AP50", "per_class": {...}}}``. Blank and malformed lines are skipped; a file with no
    usable row raises InputError."""
    file = _check_file(path, "metrics file", MAX_METRICS_BYTES)
    rows = []
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("iter"), (int, float)):
            rows.append(row)
    if not rows:
        raise InputError('The metrics file has no JSON lines with an "iter" field.')
    return rows
