"""Helpers shared by the app tests (hand-made trajectories, tiny images and checkpoints), plus their own checks.

Imported by the other ``test_app_*`` files as ``import test_app_support``; pytest puts this folder on sys.path.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from diffdet.trajectory import Detections, Trajectory

CLASSES = ("master_chef_can", "cracker_box", "mug")


def make_trajectory(
    steps: int = 3, stages: int = 2, proposals: int = 12, classes: tuple[str, ...] = CLASSES,
    size_hw: tuple[int, int] = (96, 128), heatmap: bool = True, stride: float = 8.0, seed: int = 0,
) -> Trajectory:
    """A recorded trajectory whose boxes drift from random towards two objects, as a real run's would."""
    rng = np.random.default_rng(seed)
    height, width = size_hw
    targets = np.array([[20, 16, 60, 56], [70, 30, 118, 86]], np.float32)
    target_labels = np.array([0, len(classes) - 1])
    start = np.sort(rng.uniform(0, 1, (proposals, 2, 2)) * [width, height], axis=1).reshape(proposals, 4)
    start[:, 2:] = np.maximum(start[:, 2:], start[:, :2] + 4)
    goal = targets[np.arange(proposals) % 2]
    boxes_in = np.zeros((steps, proposals, 4), np.float32)
    boxes = np.zeros((steps, stages, proposals, 4), np.float32)
    scores = np.zeros((steps, stages, proposals), np.float32)
    labels = np.zeros((steps, stages, proposals), np.int64)
    renewed = np.zeros((steps, proposals), bool)
    current = start.astype(np.float32)
    for s in range(steps):
        boxes_in[s] = current
        for l in range(stages):
            mix = (s * stages + l + 1) / (steps * stages)
            boxes[s, l] = (1 - mix) * current + mix * goal + rng.normal(0, 1, (proposals, 4))
            boxes[s, l, :, 2:] = np.maximum(boxes[s, l, :, 2:], boxes[s, l, :, :2] + 2)
            scores[s, l] = np.clip(mix * np.linspace(1.0, 0.1, proposals) + rng.uniform(0, 0.05, proposals), 0, 1)
            labels[s, l] = np.where(np.arange(proposals) % 2 == 0, target_labels[0], target_labels[1])
        if s < steps - 1:
            renewed[s] = scores[s, -1] < 0.3
            current = boxes[s, -1].copy()
            fresh = np.sort(rng.uniform(0, 1, (int(renewed[s].sum()), 2, 2)) * [width, height], axis=1)
            current[renewed[s]] = fresh.reshape(-1, 4)
            current[:, 2:] = np.maximum(current[:, 2:], current[:, :2] + 4)
    from_heatmap = np.zeros((steps, proposals), bool)
    from_heatmap[0, :2] = True
    keep = scores[-1, -1] >= 0.2
    det = Detections(boxes[-1, -1][keep], scores[-1, -1][keep], labels[-1, -1][keep],
                     np.full(int(keep.sum()), steps - 1, np.int64))
    heat = None
    if heatmap:
        gh, gw = int(np.ceil(height / stride)), int(np.ceil(width / stride))
        heat = rng.uniform(0, 0.2, (len(classes), gh, gw)).astype(np.float32)
    times = [(int(999 - s * 1000 / steps), int(999 - (s + 1) * 1000 / steps) if s < steps - 1 else -1)
             for s in range(steps)]
    return Trajectory(
        image_size_hw=size_hw, class_names=tuple(classes), times=times, detections=det, heatmap=heat,
        heatmap_stride=stride if heatmap else 0.0, boxes_in_xyxy=boxes_in, boxes_xyxy=boxes, scores=scores,
        labels=labels, renewed=renewed, from_heatmap=from_heatmap, settings={"steps": steps, "seed": seed},
    )


def make_image(size_hw: tuple[int, int] = (96, 128), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (*size_hw, 3), dtype=np.uint8)
    image[16:56, 20:60] = (200, 40, 40)
    image[30:86, 70:118] = (40, 40, 200)
    return image


def write_image(path: Path, array: np.ndarray | None = None, fmt: str = "PNG", **save: object) -> Path:
    Image.fromarray(make_image() if array is None else array).save(path, format=fmt, **save)
    return path


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_make_trajectory_is_consistent() -> None:
    traj = make_trajectory()
    assert traj.recorded and traj.num_steps == 3 and traj.num_stages == 2
    assert traj.boxes_xyxy.shape == (3, 2, 12, 4)
    assert (traj.boxes_xyxy[..., 2:] >= traj.boxes_xyxy[..., :2]).all()
    assert len(traj.detections) > 0
