"""The record of one image's sampling run: every step's and stage's boxes, the heatmap, the detections.

Arrays are numpy on the CPU, in the pixels of the original image, so the app, the CLI and the benchmarks
can index them without touching the model. Letters: S sampling steps, L head stages, N proposals,
K classes, M final detections.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Detections:
    """Final detections of one image. boxes_xyxy (M, 4) pixels, scores (M,), labels (M,), step (M,) = the
    sampling step whose output produced each box (after ensembling)."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    step: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass
class Trajectory:
    """One image's sampling run.

    Attributes:
        image_size_hw: (H, W) of the original image.
        class_names: label id -> name.
        times: S pairs (t, t_next) of the DDIM schedule.
        detections: final output after ensembling, NMS and thresholds.
        heatmap: (K, Hh, Wh) predicted probabilities or None when the model has no heatmap head; cell (i, j)
            covers original-image pixels [j * heatmap_stride, (j + 1) * heatmap_stride) in x (same in y).
        heatmap_stride: original-image pixels per heatmap cell.
        boxes_in_xyxy: (S, N, 4) the boxes fed to each step (noisy, renewed or heatmap-drawn).
        boxes_xyxy: (S, L, N, 4) every stage's predicted boxes at every step.
        scores: (S, L, N) best class probability per box; labels (S, L, N) its class.
        renewed: (S, N) True where the slot's box was replaced by a fresh one after step s (never at the last).
        from_heatmap: (S, N) True where the box fed to step s was drawn from heatmap peaks.
        The per-step arrays are None when recording was off.
    """

    image_size_hw: tuple[int, int]
    class_names: tuple[str, ...]
    times: list[tuple[int, int]]
    detections: Detections
    heatmap: np.ndarray | None = None
    heatmap_stride: float = 0.0
    boxes_in_xyxy: np.ndarray | None = None
    boxes_xyxy: np.ndarray | None = None
    scores: np.ndarray | None = None
    labels: np.ndarray | None = None
    renewed: np.ndarray | None = None
    from_heatmap: np.ndarray | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def recorded(self) -> bool:
        return self.boxes_xyxy is not None

    @property
    def num_steps(self) -> int:
        return len(self.times)

    @property
    def num_stages(self) -> int:
        return 0 if self.boxes_xyxy is None else int(self.boxes_xyxy.shape[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested lists (boxes rounded to 0.01 px, scores to 1e-4)."""
        def arr(a: np.ndarray | None, decimals: int | None = None) -> Any:
            if a is None:
                return None
            return (np.round(a, decimals) if decimals is not None else a).tolist()

        return {
            "image_size_hw": list(self.image_size_hw),
            "class_names": list(self.class_names),
            "times": [list(p) for p in self.times],
            "settings": self.settings,
            "detections": {
                "boxes_xyxy": arr(self.detections.boxes_xyxy, 2),
                "scores": arr(self.detections.scores, 4),
                "labels": arr(self.detections.labels),
                "step": arr(self.detections.step),
            },
            "heatmap_stride": self.heatmap_stride,
            "heatmap": arr(self.heatmap, 4),
            "boxes_in_xyxy": arr(self.boxes_in_xyxy, 2),
            "boxes_xyxy": arr(self.boxes_xyxy, 2),
            "scores": arr(self.scores, 4),
            "labels": arr(self.labels),
            "renewed": arr(self.renewed),
            "from_heatmap": arr(self.from_heatmap),
        }

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict())
        if path is not None:
            Path(path).write_text(text)
        return text

    def save_npz(self, path: str | Path) -> None:
        """Compressed arrays plus a JSON header; ``load_npz`` restores an equal object."""
        arrays = {
            "det_boxes_xyxy": self.detections.boxes_xyxy, "det_scores": self.detections.scores,
            "det_labels": self.detections.labels, "det_step": self.detections.step,
        }
        for name in ("heatmap", "boxes_in_xyxy", "boxes_xyxy", "scores", "labels", "renewed", "from_heatmap"):
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        header = {
            "image_size_hw": list(self.image_size_hw), "class_names": list(self.class_names),
            "times": [list(p) for p in self.times], "heatmap_stride": self.heatmap_stride, "settings": self.settings,
        }
        np.savez_compressed(path, header=np.array(json.dumps(header)), **arrays)

    @classmethod
    def load_npz(cls, path: str | Path) -> "Trajectory":
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            get = lambda name: data[name] if name in data.files else None  # noqa: E731
            return cls(
                image_size_hw=tuple(header["image_size_hw"]),
                class_names=tuple(header["class_names"]),
                times=[tuple(p) for p in header["times"]],
                detections=Detections(data["det_boxes_xyxy"], data["det_scores"], data["det_labels"], data["det_step"]),
                heatmap=get("heatmap"), heatmap_stride=float(header["heatmap_stride"]),
                boxes_in_xyxy=get("boxes_in_xyxy"), boxes_xyxy=get("boxes_xyxy"), scores=get("scores"),
                labels=get("labels"), renewed=get("renewed"), from_heatmap=get("from_heatmap"),
                settings=header.get("settings", {}),
            )
