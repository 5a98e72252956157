"""Scoring one image's detections against its ground truth, for the views: IoUs, TP/FP/FN at IoU 0.5, AP.

IoU comes from ``torchvision.ops.box_iou`` and AP from the core's pycocotools wrapper
(``diffdet.evaluate.coco_evaluate``); nothing here re-implements either.
"""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from diffdet.evaluate import coco_evaluate, iou_matrix
from diffdet.inference import coco_results, default_categories
from diffdet.trajectory import Trajectory

def best_iou(boxes_xyxy: np.ndarray, gt_boxes_xyxy: np.ndarray) -> np.ndarray | None:
    """Each box's IoU with its best-overlapping ground-truth box of any class (M,); None without ground truth."""
    if gt_boxes_xyxy is None or len(gt_boxes_xyxy) == 0:
        return None
    if len(boxes_xyxy) == 0:
        return np.zeros(0, np.float32)
    return iou_matrix(boxes_xyxy, gt_boxes_xyxy).max(axis=1)


def image_ap(traj: Trajectory, gt_boxes_xyxy: np.ndarray, gt_labels: np.ndarray,
             crowd_boxes_xyxy: np.ndarray | None = None, crowd_labels: np.ndarray | None = None) -> dict[str, Any]:
    """COCO AP (0-100) of all of the image's detections against its ground truth, per class too, by pycocotools.

    ``crowd_boxes_xyxy`` (C, 4) / ``crowd_labels`` (C,): the file's ``iscrowd=1`` regions (``GroundTruth.crowd_*``),
    passed to pycocotools as the ignore regions they are: detections on them count neither way.
    """
    detections = [{"image_id": 0, "boxes_xyxy": traj.detections.boxes_xyxy, "scores": traj.detections.scores,
                   "labels": traj.detections.labels}]
    ground_truth = [{"image_id": 0, "boxes_xyxy": gt_boxes_xyxy, "labels": gt_labels,
                     "size_hw": traj.image_size_hw}]
    if crowd_boxes_xyxy is not None and len(crowd_boxes_xyxy):
        ground_truth[0].update(crowd_boxes_xyxy=crowd_boxes_xyxy, crowd_labels=crowd_labels)
    return coco_evaluate(detections, ground_truth, traj.class_names)


def stage_ious(traj: Trajectory, gt_boxes_xyxy: np.ndarray | None, stage: int = -1) -> dict[str, np.ndarray] | None:
    """Best IoU with the ground truth for every step's boxes at ``stage`` ("out{s}") and for the detections
    ("final"), as the denoising view's hover shows them."""
    if gt_boxes_xyxy is None or len(gt_boxes_xyxy) == 0:
        return None
    out: dict[str, np.ndarray] = {"final": best_iou(traj.detections.boxes_xyxy, gt_boxes_xyxy)}
    if traj.recorded:
        stage = stage % traj.num_stages
        for s in range(traj.num_steps):
            out[f"out{s}"] = best_iou(traj.boxes_xyxy[s, stage], gt_boxes_xyxy)
    return out


def coco_json(traj: Trajectory, image_name: str) -> str:
    """The detections as a COCO file: images, categories and the results list under "annotations" with scores;
    bbox is [x, y, w, h] in the image's pixels. Category ids are the documented 1-based ones of the core's CLI
    (``category_id = label + 1``, the model's class order; ``diffdet.inference.default_categories``), named in
    the ``categories`` list, so a reader maps them by name."""
    height, width = traj.image_size_hw
    return json.dumps({
        "images": [{"id": 0, "file_name": image_name, "height": int(height), "width": int(width)}],
        "categories": default_categories(traj.class_names),
        "annotations": [{"id": k + 1, **r, "area": round(r["bbox"][2] * r["bbox"][3], 2), "iscrowd": 0}
                        for k, r in enumerate(coco_results(traj, 0))],
        "info": {"description": "DiffusionDet Explorer detections", "settings": traj.settings},
    }, indent=1)
