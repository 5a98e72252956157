"""COCO-style box AP with pycocotools, built in memory from samples and detections.

AP values are in 0-100 (as detectron2 reports them). The numbers are pycocotools' own (``COCOeval``), on the
same inputs as a pycocotools run on the dataset's file: a detection matches a ground truth at IoU threshold t
when IoU >= t, for t in 0.50:0.05:0.95; at most 100 detections per image (highest scores first); crowd regions
(``iscrowd=1``) are ignore regions, so detections on them count neither way; areas for APs/m/l are the file's
``area`` values when it has them; AP is the 101-point interpolated precision averaged over thresholds. Classes
are the model's, matched to the dataset's by name when it was loaded (``diffdet.data``).
"""
from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

from diffdet.data import Sample

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the first six entries of COCOeval.stats


def _as_numpy(value: Any, dtype: type, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype).reshape(-1, *shape_tail)


def _gt_fields(item: Sample | Mapping[str, Any]) -> dict[str, Any]:
    """image_id, size_hw, boxes/labels/areas and crowd boxes/labels/areas of one image's ground truth."""
    if isinstance(item, Sample):
        return {"image_id": item.image_id, "size_hw": item.size_hw, "boxes": item.boxes_xyxy, "labels": item.labels,
                "areas": item.areas, "crowd_boxes": item.crowd_boxes_xyxy, "crowd_labels": item.crowd_labels,
                "crowd_areas": item.crowd_areas}
    size = item.get("size_hw", item.get("orig_size_hw"))
    if size is None:
        raise ValueError(f"ground truth of image {item.get('image_id')!r} needs 'size_hw' (H, W)")
    return {"image_id": int(item["image_id"]), "size_hw": tuple(int(v) for v in size), "boxes": item["boxes_xyxy"],
            "labels": item["labels"], "areas": item.get("areas"),
            "crowd_boxes": item.get("crowd_boxes_xyxy", np.zeros((0, 4))),
            "crowd_labels": item.get("crowd_labels", np.zeros((0,), np.int64)), "crowd_areas": item.get("crowd_areas")}


def _xyxy_to_xywh(boxes_xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([boxes_xyxy[:, :2], boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]], axis=1)  # (M, 4)


def build_coco_gt(ground_truth: Sequence[Sample | Mapping[str, Any]], class_names: Sequence[str]) -> COCO:
    """An in-memory pycocotools COCO object; category id = label + 1.

    Crowd regions (``Sample.crowd_boxes_xyxy``, or a dict's ``crowd_boxes_xyxy`` / ``crowd_labels``) become
    ``iscrowd=1`` annotations, which pycocotools ignores: a detection on them is neither a true nor a false
    positive. ``area`` is the file's value when the ground truth carries one (``areas``), else the box area;
    pycocotools uses it for APs/APm/APl.
    """
    images, annotations, seen = [], [], set()
    for item in ground_truth:
        gt = _gt_fields(item)
        image_id, (height, width) = gt["image_id"], gt["size_hw"]
        if image_id in seen:
            raise ValueError(f"duplicate image_id {image_id} in ground truth")
        seen.add(image_id)
        images.append({"id": image_id, "height": height, "width": width})
        for crowd, key in ((0, ""), (1, "crowd_")):
            boxes_xywh = _xyxy_to_xywh(_as_numpy(gt[key + "boxes"], np.float64, (4,)))
            labels = _as_numpy(gt[key + "labels"], np.int64).tolist()
            areas = gt[key + "areas"]
            areas = (boxes_xywh[:, 2] * boxes_xywh[:, 3] if areas is None else _as_numpy(areas, np.float64)).tolist()
            if not len(boxes_xywh) == len(labels) == len(areas):
                raise ValueError(f"image {image_id}: {len(boxes_xywh)} {key}boxes, {len(labels)} labels, "
                                 f"{len(areas)} areas")
            for box, label, area in zip(boxes_xywh.tolist(), labels, areas):
                if not 0 <= label < len(class_names):
                    raise ValueError(f"label {label} of image {image_id} is outside [0, {len(class_names)})")
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                    "bbox": box, "area": area, "iscrowd": crowd})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    return _coco_from_dict({"images": images, "annotations": annotations, "categories": categories})


def _coco_from_dict(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def build_coco_dt(detections: Sequence[Mapping[str, Any]], coco_gt: COCO) -> COCO:
    """Detections -> a COCO results object (like ``COCO.loadRes``, but an empty list works too)."""
    annotations = []
    known = set(coco_gt.getImgIds())
    for det in detections:
        image_id = int(det["image_id"])
        if image_id not in known:
            raise ValueError(f"detections for image_id {image_id}, which has no ground-truth entry")
        boxes_xywh = _xyxy_to_xywh(_as_numpy(det["boxes_xyxy"], np.float64, (4,)))
        scores = _as_numpy(det["scores"], np.float64)
        labels = _as_numpy(det["labels"], np.int64)
        if not len(boxes_xywh) == len(scores) == len(labels):
            raise ValueError(f"image {image_id}: {len(boxes_xywh)} boxes, {len(scores)} scores, {len(labels)} labels")
        for box, score, label in zip(boxes_xywh.tolist(), scores.tolist(), labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                "bbox": box, "score": score, "area": box[2] * box[3], "iscrowd": 0})
    dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"],
               "annotations": annotations}
    return _coco_from_dict(dataset)


def _undefined_to_none(stat: float) -> float | None:
    """A COCOeval stat in [0, 1] -> 0-100; -1 (undefined) or NaN -> None."""
    return None if math.isnan(stat) or stat < 0 else 100.0 * float(stat)


def coco_evaluate(
    detections: Sequence[Mapping[str, Any]],
    ground_truth: Sequence[Sample | Mapping[str, Any]],
    class_names: Sequence[str],
    verbose: bool = False,
) -> dict[str, Any]:
    """Box AP of detections against ground truth.

    Args:
        detections: one dict per image (images without detections may be left out): ``image_id``,
            ``boxes_xyxy`` (Tensor/array[M, 4], pixels of the original image), ``scores`` [M], ``labels`` [M].
        ground_truth: ``Sample``s or dicts with ``image_id``, ``boxes_xyxy`` [G, 4], ``labels`` [G] and
            ``size_hw`` (or ``orig_size_hw``) (H, W); optionally ``crowd_boxes_xyxy`` [C, 4] and ``crowd_labels``
            [C] (ignore regions) and ``areas`` [G] / ``crowd_areas`` [C].
        class_names: names of labels 0..K-1.
        verbose: let pycocotools print its summary.
    Returns:
        {"AP", "AP50", "AP75", "APs", "APm", "APl": float in 0-100 or None where undefined (e.g. no small
        objects), "per_class": {name: AP in 0-100, or None for a class with no ground truth}}.
    """
    coco_gt = build_coco_gt(ground_truth, class_names)
    coco_dt = build_coco_dt(detections, coco_gt)
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # COCOeval.stats holds -1 where a value is undefined (e.g. no small objects).
    results: dict[str, Any] = {key: _undefined_to_none(evaluator.stats[i]) for i, key in enumerate(SUMMARY_KEYS)}
    # precision: (T iou thresholds, R recall points, K classes, A area ranges, M max-dets); area "all" = 0,
    # maxDets 100 = -1; -1 marks "no ground truth", the paper's Table I averages the rest.
    precision = evaluator.eval["precision"]
    per_class: dict[str, float | None] = {}
    for k, name in enumerate(class_names):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        per_class[name] = float(100.0 * valid.mean()) if valid.size else None
    results["per_class"] = per_class
    return results


def format_table(results: Mapping[str, Any], precision: int = 2) -> str:
    """Summary and per-class AP as an aligned text table (``-`` for undefined values)."""
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.{precision}f}"

    lines = ["  ".join(f"{k:>6}" for k in SUMMARY_KEYS), "  ".join(f"{fmt(results.get(k)):>6}" for k in SUMMARY_KEYS)]
    per_class = results.get("per_class") or {}
    if per_class:
        width = max(len("class"), *(len(n) for n in per_class))
        lines += ["", f"{'class':<{width}}  {'AP':>6}", "-" * (width + 8)]
        lines += [f"{name:<{width}}  {fmt(ap):>6}" for name, ap in per_class.items()]
        defined = [ap for ap in per_class.values() if ap is not None]
        if defined:
            lines += ["-" * (width + 8), f"{'mean':<{width}}  {fmt(sum(defined) / len(defined)):>6}"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- operating point

MATCH_IOU = 0.5  # the PASCAL / COCO AP50 criterion: TP/FP/FN at one operating point


def iou_matrix(boxes_xyxy: np.ndarray, gt_boxes_xyxy: np.ndarray) -> np.ndarray:
    """(M, 4), (G, 4) pixel boxes -> (M, G) IoU."""
    a = torch.as_tensor(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(gt_boxes_xyxy, np.float32).reshape(-1, 4))
    return box_iou(a, b).numpy()


@dataclass
class Matching:
    """Greedy, score-ordered, same-class matching at ``MATCH_IOU`` (as pycocotools does at one threshold).

    status (M,) "TP" / "FP"; matched_gt (M,) index of the ground-truth box or -1; gt_matched (G,) bool.
    """

    status: np.ndarray
    matched_gt: np.ndarray
    gt_matched: np.ndarray

    @property
    def tp(self) -> int:
        return int((self.status == "TP").sum())

    @property
    def fp(self) -> int:
        return int((self.status == "FP").sum())

    @property
    def fn(self) -> int:
        return int((~self.gt_matched).sum())

    @property
    def ignored(self) -> int:
        return int((self.status == "ignored").sum())


def match_detections(
    boxes_xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray, gt_boxes_xyxy: np.ndarray,
    gt_labels: np.ndarray, iou_threshold: float = MATCH_IOU, crowd_boxes_xyxy: np.ndarray | None = None,
    crowd_labels: np.ndarray | None = None,
) -> Matching:
    """Greedy same-class matching by score at ``iou_threshold``; a detection left unmatched that lies on a crowd
    region of its class (intersection over the detection's area >= ``iou_threshold``, pycocotools' rule for
    ``iscrowd=1``) is "ignored", neither TP nor FP, as pycocotools counts it. Boxes in pixels, xyxy."""
    count, gt_count = len(scores), len(gt_labels)
    status = np.full(count, "FP", dtype=object)
    matched_gt = np.full(count, -1, np.int64)
    gt_matched = np.zeros(gt_count, bool)
    if count and gt_count:
        ious = iou_matrix(boxes_xyxy, gt_boxes_xyxy)  # (M, G)
        same_class = np.asarray(labels)[:, None] == np.asarray(gt_labels)[None, :]
        ious = np.where(same_class, ious, -1.0)
        for i in np.argsort(-np.asarray(scores), kind="stable"):
            candidates = np.where(gt_matched, -1.0, ious[i])
            j = int(candidates.argmax())
            if candidates[j] >= iou_threshold:
                status[i], matched_gt[i], gt_matched[j] = "TP", j, True
    if count and crowd_boxes_xyxy is not None and len(crowd_boxes_xyxy):
        det = torch.as_tensor(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4))
        crowd = torch.as_tensor(np.asarray(crowd_boxes_xyxy, np.float32).reshape(-1, 4))
        lt, rb = torch.max(det[:, None, :2], crowd[None, :, :2]), torch.min(det[:, None, 2:], crowd[None, :, 2:])
        inter = (rb - lt).clamp(min=0).prod(-1)  # (M, C)
        ioa = (inter / ((det[:, 2:] - det[:, :2]).clamp(min=0).prod(-1)[:, None] + 1e-9)).numpy()
        same = np.asarray(labels)[:, None] == np.asarray(crowd_labels)[None, :]
        on_crowd = (np.where(same, ioa, 0.0) >= iou_threshold).any(axis=1)
        status[(status == "FP") & on_crowd] = "ignored"
    return Matching(status, matched_gt, gt_matched)


def operating_point(detections: Sequence[Mapping[str, Any]], ground_truth: Sequence[Sample | Mapping[str, Any]],
                    score_threshold: float = 0.3, iou_threshold: float = MATCH_IOU) -> dict[str, Any]:
    """What a user sees at one score threshold, over a data set: the detections scoring >= ``score_threshold``
    matched to the ground truth by ``match_detections`` (same class, IoU >= ``iou_threshold``, greedy by score).

    detections: per image {"image_id", "boxes_xyxy" (M, 4), "scores" (M,), "labels" (M,)}; ground_truth: Samples or
    mappings with "image_id", "boxes_xyxy", "labels" (crowd regions are not counted here).
    Returns {"recall": class-aware share of ground-truth boxes found, "recall_any_class": share hit by a kept box of
    any class, "precision": share of kept boxes that are TP, "confusions": kept boxes that are FP by class but hit
    an object of another class, "background": kept boxes that hit no object, "detections": kept boxes, "objects":
    ground-truth boxes, "per_class_recall": {class index: recall}}, shares in percent (None when undefined).
    Detections on crowd regions are ignored (``match_detections``), as in pycocotools.
    """
    by_id = {int(d["image_id"]): d for d in detections}
    tp = kept = objects = hit_any = confusions = background = 0
    found: dict[int, list[int]] = {}
    for item in ground_truth:
        gt = _gt_fields(item)
        image_id = gt["image_id"]
        gt_boxes = np.asarray(gt["boxes"], np.float64).reshape(-1, 4)
        gt_labels = np.asarray(gt["labels"], np.int64).reshape(-1)
        det = by_id.get(int(image_id), {"boxes_xyxy": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)})
        scores = np.asarray(det["scores"], np.float64).reshape(-1)
        keep = scores >= score_threshold
        boxes = np.asarray(det["boxes_xyxy"], np.float64).reshape(-1, 4)[keep]
        labels = np.asarray(det["labels"]).reshape(-1)[keep]
        matching = match_detections(boxes, scores[keep], labels, gt_boxes, gt_labels, iou_threshold,
                                    gt.get("crowd_boxes"), gt.get("crowd_labels"))
        ious = iou_matrix(boxes, gt_boxes) if len(boxes) and len(gt_boxes) else np.zeros((len(boxes), len(gt_boxes)))
        tp, kept, objects = tp + matching.tp, kept + len(boxes) - matching.ignored, objects + len(gt_boxes)
        hit_any += int((ious >= iou_threshold).any(axis=0).sum())
        on_object = (ious >= iou_threshold).any(axis=1)
        confusions += int(((matching.status == "FP") & on_object).sum())
        background += int((~on_object & (matching.status != "ignored")).sum())
        for label, was_found in zip(np.asarray(gt_labels).tolist(), matching.gt_matched.tolist()):
            found.setdefault(int(label), []).append(int(was_found))
    share = lambda a, b: round(100.0 * a / b, 2) if b else None  # noqa: E731
    return {"recall": share(tp, objects), "recall_any_class": share(hit_any, objects), "precision": share(tp, kept),
            "confusions": confusions, "background": background, "detections": kept, "objects": objects,
            "per_class_recall": {c: share(sum(v), len(v)) for c, v in sorted(found.items())}}


def detect_split(model: Any, split: Any, options: Any = None, seed: int = 0, batch_size: int = 4,
                 progress: bool = False) -> list[dict[str, Any]]:
    """Detections of a model on every image of a DatasetSplit, from the project's one inference API
    (``diffdet.inference``): per image {"image_id", "boxes_xyxy" (M, 4) pixels, "scores" (M,), "labels" (M,)}.

    Images are read at their own size by the project's one image reader (the sampler resizes them) and run in
    batches of ``batch_size``, each image with its own noise seeded by ``seed``.
    """
    from tqdm import tqdm

    from diffdet.data import read_image_rgb
    from diffdet.inference import sample

    detections = []
    samples = split.samples
    for first in tqdm(range(0, len(samples), batch_size), desc="eval", unit="batch", disable=not progress):
        chunk = samples[first: first + batch_size]
        images = [read_image_rgb(s.image_path, exif=s.exif) for s in chunk]
        trajectories = sample(model, images, options, seed=seed)
        for s, traj in zip(chunk, trajectories):
            det = traj.detections
            detections.append({"image_id": s.image_id, "boxes_xyxy": det.boxes_xyxy, "scores": det.scores,
                               "labels": det.labels})
    return detections


def evaluate_model(model: Any, split: Any, options: Any = None, seed: int = 0, batch_size: int = 4,
                   progress: bool = False) -> dict[str, Any]:
    """pycocotools AP of a model on a DatasetSplit: ``coco_evaluate`` of ``detect_split``'s detections."""
    return coco_evaluate(detect_split(model, split, options, seed, batch_size, progress), split.samples,
                         split.class_names)


def cli(argv: list[str]) -> int:
    import json
    from pathlib import Path

    from diffdet.config import ArgumentParser, int_range, nonnegative_int, positive_int, unit_float
    from diffdet.data import load_split
    from diffdet.inference import DEFAULT_CHECKPOINT, SamplerOptions, add_sampler_flags, sampler_flag_overrides
    from diffdet.weights import load_checkpoint

    parser = ArgumentParser(prog="python -m diffdet eval", description="Score a checkpoint with pycocotools.",
                            epilog="Dataset classes are matched to the checkpoint's by name (COCO category ids and "
                                   "order do not matter); crowd annotations are pycocotools ignore regions.")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--data", required=True, help="PROPS-Detection-Dataset folder/archive, or COCO JSON:IMAGE_DIR")
    parser.add_argument("--data-format", choices=("props", "coco"), default="props")
    parser.add_argument("--split", default="val")
    parser.add_argument("--steps", type=int_range(1, 1000), default=None)
    parser.add_argument("--proposals", type=int_range(1, 5000), default=None)
    parser.add_argument("--heatmap-init", type=unit_float, default=0.0)
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--limit", type=nonnegative_int, default=0, help="first N images only (0 = all)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default=None, help="write the results JSON here")
    add_sampler_flags(parser)
    args = parser.parse_args(argv)
    try:
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = load_checkpoint(args.checkpoint, device=device)
        split = load_split(args.data, args.data_format, args.split, model.cfg.class_names)
        if args.limit:
            split.samples = split.samples[: args.limit]
        overrides = {"num_proposals": args.proposals, "heatmap_init": args.heatmap_init, "record": False,
                     **sampler_flag_overrides(args)}
        if args.steps is not None:
            overrides["steps"] = args.steps
        options = SamplerOptions.from_config(model.cfg, **overrides)
        results = evaluate_model(model, split, options, seed=args.seed, batch_size=args.batch_size, progress=True)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    results["settings"] = {"checkpoint": str(args.checkpoint), "images": len(split.samples),
                           "steps": options.steps, "proposals": options.num_proposals or model.cfg.num_proposals,
                           "heatmap_init": options.heatmap_init, "seed": args.seed}
    print(format_table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0
