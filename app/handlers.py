"""The app's event handlers, as methods of ``Explorer`` that take and return plain values (paths, numbers, figures,
``gr.update``s). ``app.ui`` wires them to components; the tests call them directly.

Errors a user can cause (a bad upload, a checkpoint that does not fit) raise ``gr.Error`` with a message written for
them; problems that do not stop a run (an annotation file for another image) become ``gr.Warning``s and a line in the
status. Nothing here ever shows a traceback or a server path.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from diffdet.config import DiffDetConfig
from diffdet.heatmap import gaussian_radius, synthesize_heatmap
from diffdet.inference import SamplerOptions
from diffdet.trajectory import Trajectory

from app import figures as F
from app.evaluation import Matching, best_iou, coco_json, image_ap, match_detections, stage_ious
from app.inputs import (
    GroundTruth, InputError, check_checkpoint_upload, file_digest, list_checkpoints, load_image, load_metrics,
    log_user_error, parse_annotations, parse_props, resolve_checkpoint,
)
from app.runner import MODELS, RunCache, read_config

log = logging.getLogger("diffdet.app")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = "diffdet_tiny_props.safetensors"
MAX_CLASSES_OPTION = "max over classes"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Server-side bounds on what one request may ask for (the sliders stay inside them; API calls are checked).
MAX_STEPS = 50
MAX_PROPOSALS = 1000
MAX_UPLOADED_TEST_SIZE = 1333  # the COCO reference's long side


# ---------------------------------------------------------------------------------------------------------------------
# small utilities


class LRU:
    """A thread-safe least-recently-used map with a loader."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = load()
        with self._lock:
            self._data[key] = value
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
        return value


def _file_key(path: str | os.PathLike) -> tuple:
    stat = Path(path).stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _user_error(exc: Exception) -> gr.Error:
    # print_exception=False: Gradio would otherwise print a traceback for every user mistake; _guard logs one line.
    return gr.Error(str(exc), title="Cannot run", print_exception=False)


def _guard(fn: Callable) -> Callable:
    """Turn InputError into gr.Error and any other failure into a short generic message (logged with its traceback
    on the server), so the UI never shows a stack trace and the server keeps serving."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except InputError as exc:
            log_user_error(log, fn.__name__, exc)  # one line, no traceback: the user's mistake, not a fault
            raise _user_error(exc) from None
        except Exception:
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error("Something went wrong while processing this request; it has been logged. Please try "
                           "other settings or another image.", title="Internal error",
                           print_exception=False) from None  # its traceback is logged once, just above
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _num(value: Any, default: float, low: float, high: float, name: str, integer: bool = False) -> float:
    """A control's value as a number in [low, high]; None (an API call that left it out) means the default."""
    if value is None or value == "":
        value = default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {str(value)[:40]!r}.") from None
    if not np.isfinite(number) or not low <= number <= high:
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {number:g}.")
    return int(round(number)) if integer else number


@dataclass(frozen=True)
class Display:
    """The display controls (they change the figures, never the run)."""

    score_threshold: float = 0.3
    classes: tuple[str, ...] | None = None
    show_labels: bool = True
    show_scores: bool = True
    line_width: float = 2.0
    stage: int = 0          # 1-based head stage; 0 = the last
    show_gt: bool = True
    show_tracks: bool = True

    @classmethod
    def from_controls(cls, score_threshold: Any, classes: Any, show_labels: Any, show_scores: Any, line_width: Any,
                      stage: Any, show_gt: Any, show_tracks: Any) -> "Display":
        return cls(
            score_threshold=_num(score_threshold, 0.3, 0.0, 1.0, "Score threshold"),
            classes=None if classes is None else tuple(str(c) for c in classes),
            show_labels=bool(show_labels) if show_labels is not None else True,
            show_scores=bool(show_scores) if show_scores is not None else True,
            line_width=_num(line_width, 2.0, 0.5, 8.0, "Line width"),
            stage=_num(stage, 0, 0, 64, "Stage", integer=True),
            show_gt=bool(show_gt) if show_gt is not None else True,
            show_tracks=bool(show_tracks) if show_tracks is not None else True,
        )

    def view(self, class_names: Sequence[str], num_stages: int) -> F.ViewOptions:
        shown = None
        if self.classes is not None:
            shown = frozenset(i for i, n in enumerate(class_names) if n in set(self.classes))
        stage = -1 if self.stage <= 0 or num_stages == 0 else min(self.stage, num_stages) - 1
        return F.ViewOptions(score_threshold=self.score_threshold, classes_shown=shown, stage=stage,
                             show_labels=self.show_labels, show_scores=self.show_scores, line_width=self.line_width,
                             show_gt=self.show_gt, show_tracks=self.show_tracks)


def heatmap_grid(cfg: DiffDetConfig, image_hw: tuple[int, int]) -> tuple[tuple[int, int], float]:
    """The heatmap grid (Hh, Wh) and its stride in original-image pixels for an image the model has not seen yet:
    the core resizes the short side to ``min_size_test`` (long side at most ``max_size_test``) and the head reads
    the FPN level ``heatmap_level``."""
    height, width = image_hw
    scale = min(cfg.min_size_test / min(height, width), cfg.max_size_test / max(height, width))
    model_stride = 2 ** cfg.heatmap_level
    grid = (-(-round(height * scale) // model_stride), -(-round(width * scale) // model_stride))
    return grid, model_stride / scale


# ---------------------------------------------------------------------------------------------------------------------
# the handlers


class Explorer:
    """State shared by all sessions (caches, folders) and every handler of the app."""

    def __init__(self, checkpoint_dir: str | os.PathLike = ROOT / "checkpoints",
                 examples_dir: str | os.PathLike = ROOT / "examples", output_dir: str | os.PathLike | None = None,
                 keep_outputs_s: float = 3600.0) -> None:
        self.checkpoint_dir = Path(checkpoint_dir)
        self.examples_dir = Path(examples_dir)
        self.output_dir = Path(output_dir) if output_dir else Path(tempfile.mkdtemp(prefix="diffdet-app-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.keep_outputs_s = keep_outputs_s
        self.runs = RunCache()
        self._image_sources = LRU(16)
        self._trajectories = LRU(16)
        self._configs = LRU(8)
        self._digests = LRU(256)
        self._example_by_digest = {self._digest(p): p.name for p in self.example_paths()}
        self._example_annotations = self._read_example_annotations()

    # --- examples, checkpoints, files -----------------------------------------------------------------------------

    def example_paths(self) -> list[Path]:
        if not self.examples_dir.is_dir():
            return []
        return sorted(p for p in self.examples_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())

    def _read_example_annotations(self) -> list | None:
        path = self.examples_dir / "props.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            log.warning("examples/props.json is not valid JSON; examples have no ground truth")
            return None
        return data if isinstance(data, list) else None

    def _digest(self, path: str | os.PathLike) -> str:
        return self._digests.get(_file_key(path), lambda: file_digest(path))

    def example_name(self, image_path: str | None) -> str | None:
        """The example's file name when ``image_path`` holds the bytes of one of the examples."""
        if not image_path or not self._example_by_digest or not Path(image_path).is_file():
            return None
        return self._example_by_digest.get(self._digest(image_path))

    def checkpoint_choices(self) -> list[str]:
        return list_checkpoints(self.checkpoint_dir)

    def checkpoint_dropdown(self, current: str | None) -> dict[str, Any]:
        """The checkpoint dropdown read again from the folder (on each page load), so files added since the
        server started appear; the current choice is kept while it still exists."""
        choices = self.checkpoint_choices()
        return gr.update(choices=choices, value=current if current in choices else self.default_checkpoint())

    def default_checkpoint(self) -> str | None:
        choices = self.checkpoint_choices()
        if DEFAULT_CHECKPOINT in choices:
            return DEFAULT_CHECKPOINT
        return choices[0] if choices else None

    def preload(self) -> None:
        """Load the default checkpoint now, so the first detection does not wait for it (and, on ZeroGPU, so the
        model exists before the GPU worker starts). A missing or bad file is only logged: the UI explains it."""
        name = self.default_checkpoint()
        if name is None:
            log.warning("no checkpoint in %s; the app will ask for an upload", self.checkpoint_dir)
            return
        try:
            MODELS.get(self.checkpoint_dir / name, name)
        except InputError as exc:
            log.warning("default checkpoint not loaded: %s", exc)

    def checkpoint(self, name: str | None, upload: str | None) -> tuple[Path, str]:
        """(path, name to show): an uploaded file wins over the dropdown."""
        if upload:
            return check_checkpoint_upload(upload), f"{Path(upload).name} (uploaded)"
        return resolve_checkpoint(name, self.checkpoint_dir), str(name)

    def config(self, name: str | None, upload: str | None) -> DiffDetConfig:
        path, shown = self.checkpoint(name, upload)
        cfg = self._configs.get(_file_key(path), lambda: read_config(path, shown))
        if upload and max(cfg.min_size_test, cfg.max_size_test) > MAX_UPLOADED_TEST_SIZE:
            # An uploaded file's config sets the inference resolution; bound what a stranger can make us compute.
            raise InputError(f"The uploaded checkpoint asks for {cfg.max_size_test}-pixel inputs; this app runs at "
                             f"most {MAX_UPLOADED_TEST_SIZE} pixels.")
        return cfg

    def image_source(self, image_path: str, light: bool = False) -> F.ImageSource:
        """The display copy of an image (decoded and validated once per file). ``light``: a smaller JPEG for the
        live target view, whose every slider move sends the image again (24 kB instead of 52 kB at 640x480)."""
        def build() -> F.ImageSource:
            rgb = load_image(image_path)
            return F.ImageSource.from_array(rgb, max_side=960, quality=65) if light else F.ImageSource.from_array(rgb)
        return self._image_sources.get(_file_key(image_path) + (light,), build)

    def trajectory(self, traj_file: str | None) -> Trajectory | None:
        if not traj_file or not Path(traj_file).is_file():
            return None
        try:
            return self._trajectories.get(_file_key(traj_file), lambda: Trajectory.load_npz(traj_file))
        except (OSError, ValueError, KeyError):
            raise InputError("The stored run could not be read; please run the detector again.") from None

    def _new_output_folder(self) -> Path:
        """A fresh folder for one run's downloads; folders older than ``keep_outputs_s`` are removed (Gradio has
        copied what it serves into its own cache by then)."""
        now = time.time()
        for old in self.output_dir.iterdir():
            try:
                if old.is_dir() and now - old.stat().st_mtime > self.keep_outputs_s:
                    shutil.rmtree(old, ignore_errors=True)
            except OSError:
                pass
        folder = self.output_dir / uuid.uuid4().hex[:12]
        folder.mkdir()
        return folder

    # --- ground truth ------------------------------------------------------------------------------------------------

    def ground_truth(self, image_path: str | None, image_hw: tuple[int, int], gt_file: str | None,
                     use_example_gt: bool, class_names: Sequence[str]) -> tuple[GroundTruth | None, list[str]]:
        """The uploaded annotation file if any, else the example's own annotations (when enabled), else None; and
        notes for the status line."""
        names = tuple(class_names)
        image_name = Path(image_path).name if image_path else None
        if gt_file:
            try:
                gt = parse_annotations(gt_file, names, image_name=image_name, image_size_hw=image_hw)
            except InputError as exc:
                return None, [f"Ground truth not used: {exc}"]
            gt.source = f"{Path(gt_file).name}"
            return gt, [f"Ground truth ({Path(gt_file).name}): {note}" for note in gt.notes]
        if use_example_gt:
            example = self.example_name(image_path)
            if example and self._example_annotations is not None:
                entries = [e for e in self._example_annotations
                           if isinstance(e, (list, tuple)) and len(e) == 2 and Path(str(e[0])).name == example]
                if entries:
                    try:
                        gt = parse_props(entries[:1], names, image_name=example, image_size_hw=image_hw,
                                         source=f"example {example}")
                    except InputError as exc:
                        return None, [f"The example's annotations could not be read: {exc}"]
                    return gt, gt.notes
        return None, []

    # --- detection --------------------------------------------------------------------------------------------------

    def sampler_options(self, cfg: DiffDetConfig, proposals: Any, steps: Any, eta: Any, renewal: Any,
                        renewal_threshold: Any, ensemble: Any, nms: Any, nms_iou: Any,
                        heatmap_init: Any) -> SamplerOptions:
        heat = _num(heatmap_init, 0.0, 0.0, 1.0, "Heatmap-guided proposal ratio")
        if heat > 0 and not cfg.use_heatmap:
            heat = 0.0  # the control is disabled for such checkpoints; an API call gets the same behaviour
        options = SamplerOptions(
            steps=_num(steps, 4, 1, MAX_STEPS, "DDIM steps", integer=True),
            eta=_num(eta, 1.0, 0.0, 1.0, "eta"),
            box_renewal=bool(renewal) if renewal is not None else True,
            renewal_threshold=_num(renewal_threshold, 0.5, 0.0, 1.0, "Renewal threshold"),
            ensemble=bool(ensemble) if ensemble is not None else True,
            nms=bool(nms) if nms is not None else True,
            nms_iou=_num(nms_iou, 0.5, 0.05, 1.0, "NMS IoU"),
            score_threshold=0.0,  # keep every detection for AP; the display threshold filters what is shown
            num_proposals=_num(proposals, cfg.num_proposals, 1, MAX_PROPOSALS, "Proposals", integer=True),
            heatmap_init=heat, max_detections=100, record=True,
        )
        try:
            options.validate(cfg)
        except ValueError as exc:
            raise InputError(f"Invalid sampler setting: {exc}") from None
        return options

    def _run(self, image_path: str | None, checkpoint: str | None, upload: str | None, options_args: tuple,
             seed: Any) -> tuple[np.ndarray, Trajectory, DiffDetConfig, str, float, bool]:
        if not image_path:
            raise InputError("Upload an image, take one with the webcam or pick an example first.")
        image = load_image(image_path)
        path, shown = self.checkpoint(checkpoint, upload)
        cfg = self.config(checkpoint, upload)
        options = self.sampler_options(cfg, *options_args)
        seed_value = _num(seed, 0, 0, 2**31 - 1, "Seed", integer=True)
        start = time.perf_counter()
        traj, cached = self.runs.run(path, shown, image, options, seed_value)
        traj.settings.setdefault("seed", seed_value)
        return image, traj, cfg, shown, time.perf_counter() - start, cached

    def detect(self, image_path: str | None, gt_file: str | None, use_example_gt: bool, checkpoint: str | None,
               upload: str | None, proposals: Any, steps: Any, eta: Any, seed: Any, renewal: Any,
               renewal_threshold: Any, ensemble: Any, nms: Any, nms_iou: Any, heatmap_init: Any,
               score_threshold: Any, classes: Any, show_labels: Any, show_scores: Any, line_width: Any, stage: Any,
               show_gt: Any, show_tracks: Any, min_radius: Any, rho: Any, heat_class: Any, heat_mode: Any,
               target_class: Any) -> tuple:
        """Run the detector and build every view. Returns, in order: status Markdown, denoising figure, step
        statistics, heatmap figure, target figure, results figure, detections table, metrics Markdown, download
        files, stored run (npz path), profile-box dropdown update."""
        if not image_path:
            return self.empty_outputs("Upload an image, take one with the webcam or pick an example, then press "
                                      "**Detect**.")
        image, traj, cfg, shown, seconds, cached = self._run(
            image_path, checkpoint, upload,
            (proposals, steps, eta, renewal, renewal_threshold, ensemble, nms, nms_iou, heatmap_init), seed)
        display = Display.from_controls(score_threshold, classes, show_labels, show_scores, line_width, stage,
                                        show_gt, show_tracks)
        gt, notes = self.ground_truth(image_path, traj.image_size_hw, gt_file, use_example_gt, traj.class_names)
        for note in notes:
            gr.Warning(note)
        folder = self._new_output_folder()
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(image_path).stem)[:60] or "image"
        npz_path = folder / f"{stem}_trajectory.npz"
        traj.save_npz(npz_path)
        json_path = folder / f"{stem}_trajectory.json"
        traj.to_json(json_path)
        coco_path = folder / f"{stem}_detections_coco.json"
        coco_path.write_text(coco_json(traj, Path(image_path).name))
        source = self._image_sources.get(_file_key(image_path) + (False,), lambda: F.ImageSource.from_array(image))
        light = self._image_sources.get(_file_key(image_path) + (True,),
                                        lambda: F.ImageSource.from_array(image, max_side=960, quality=65))
        views = self._views(traj, source, gt, display)
        heat = self._heatmap(traj, source, gt, display, heat_class, heat_mode, min_radius, rho)
        target, profile_update = self._target(light, traj.image_size_hw, traj.class_names, gt, traj, cfg,
                                              display.score_threshold, min_radius, rho, target_class, None)
        device = "GPU" if torch.cuda.is_available() else "CPU"
        status = (f"**{views['shown']} detection(s)** with score ≥ {display.score_threshold:.2f} "
                  f"(of {len(traj.detections)} kept) · {traj.num_steps} DDIM step(s), "
                  f"{traj.boxes_in_xyxy.shape[1]} proposals, seed {traj.settings.get('seed', seed)} · "
                  f"{'cached result' if cached else f'{seconds:.2f} s on {device}'} · checkpoint `{shown}` · "
                  f"image {traj.image_size_hw[1]} x {traj.image_size_hw[0]}")
        if gt is not None:
            status += f" · ground truth: {gt.source} ({len(gt)} boxes)"
        if notes:
            status += "\n\n" + "\n".join(f"- {n}" for n in notes)
        return (status, views["denoise"], views["stats"], heat, target, views["results"], views["table"],
                views["metrics"], [str(coco_path), str(json_path), str(npz_path)], str(npz_path), profile_update)

    def detect_or_explain(self, *args: Any) -> tuple:
        """``detect`` for the image-change event: a problem (a corrupt upload...) becomes a warning toast, the
        status line and a message in the plot instead of error badges on every output."""
        try:
            return self.detect(*args)
        except gr.Error as exc:
            gr.Warning(exc.message)
            return self.empty_outputs(f"**Cannot run:** {exc.message}")

    def empty_outputs(self, message: str) -> tuple:
        empty = F.message_figure(re.sub(r"[*`]", "", message))
        return (message, empty, None, None, None, None, None, "", None, None, gr.update(choices=[], value=None))

    def _views(self, traj: Trajectory, source: F.ImageSource, gt: GroundTruth | None, display: Display) -> dict:
        """Denoising view, step statistics, results figure, table and metrics for one run."""
        view = display.view(traj.class_names, traj.num_stages)
        gt_boxes = gt.boxes_xyxy if gt is not None and len(gt) else None
        det = traj.detections
        keep = det.scores >= display.score_threshold
        if view.classes_shown is not None:
            keep &= np.isin(det.labels, list(view.classes_shown))
        matching: Matching | None = None
        det_match = None
        metrics = "No ground truth: give a PROPS or COCO annotation file (or pick an example) to score this run."
        if gt is not None:
            matching = match_detections(det.boxes_xyxy[keep], det.scores[keep], det.labels[keep],
                                        gt.boxes_xyxy, gt.labels)
            det_match = np.full(len(det), "below threshold", dtype=object)
            det_match[keep] = matching.status
            ap = image_ap(traj, gt.boxes_xyxy, gt.labels, gt.crowd_boxes_xyxy, gt.crowd_labels) if len(gt) else None
            metrics = self._metrics_markdown(ap, matching, display.score_threshold, traj.class_names, gt)
        ious = stage_ious(traj, gt_boxes, view.stage)
        denoise = F.denoise_figure(traj, source, view, gt_boxes, ious, det_match)
        stats = F.step_stats_figure(traj, display.score_threshold, view.stage)
        kept_ious = best_iou(det.boxes_xyxy[keep], gt_boxes) if gt_boxes is not None else None
        results = F.results_figure(
            source, det.boxes_xyxy[keep], det.scores[keep], det.labels[keep], traj.class_names,
            status=matching.status if matching else None, best_iou=kept_ious,
            gt_boxes=gt.boxes_xyxy if gt is not None else None, gt_labels=gt.labels if gt is not None else None,
            gt_matched=matching.gt_matched if matching else None, view=view)
        table = self._table(traj, keep, matching, kept_ious)
        return {"denoise": denoise, "stats": stats, "results": results, "table": table, "metrics": metrics,
                "shown": int(keep.sum())}

    @staticmethod
    def _metrics_markdown(ap: dict | None, matching: Matching, threshold: float, class_names: Sequence[str],
                          gt: GroundTruth) -> str:
        lines = [f"**At IoU 0.5, score ≥ {threshold:.2f}:** {matching.tp} true positive(s), {matching.fp} false "
                 f"positive(s), {matching.fn} missed of {len(gt)} ground-truth box(es)."]
        if ap is not None:
            fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
            lines.append(f"**COCO AP of this image** (all {''}detections, pycocotools): AP {fmt(ap['AP'])} · "
                         f"AP50 {fmt(ap['AP50'])} · AP75 {fmt(ap['AP75'])}")
            per_class = {k: v for k, v in ap["per_class"].items() if v is not None}
            if per_class:
                lines.append("Per class: " + " · ".join(f"{k} {v:.1f}" for k, v in per_class.items()))
        return "\n\n".join(lines)

    @staticmethod
    def _table(traj: Trajectory, keep: np.ndarray, matching: Matching | None, ious: np.ndarray | None) -> Any:
        det = traj.detections
        index = np.flatnonzero(keep)
        frame = pd.DataFrame({
            "#": index,
            "class": [traj.class_names[int(k)] for k in det.labels[keep]],
            "score": np.round(det.scores[keep].astype(float), 3),
            "x1": np.round(det.boxes_xyxy[keep, 0].astype(float), 1),
            "y1": np.round(det.boxes_xyxy[keep, 1].astype(float), 1),
            "x2": np.round(det.boxes_xyxy[keep, 2].astype(float), 1),
            "y2": np.round(det.boxes_xyxy[keep, 3].astype(float), 1),
            "from step": det.step[keep].astype(int) + 1,
        })
        if matching is not None:
            frame["match @0.5"] = list(matching.status)
            frame["best IoU"] = np.round(ious.astype(float), 3) if ious is not None else np.nan
            colours = {"TP": "background-color: #d9f2d9", "FP": "background-color: #f9d6d5"}
            return frame.style.map(lambda v: colours.get(v, ""), subset=["match @0.5"]).format(
                {"score": "{:.3f}", "x1": "{:.1f}", "y1": "{:.1f}", "x2": "{:.1f}", "y2": "{:.1f}", "best IoU": "{:.3f}"})
        return frame

    def render(self, traj_file: str | None, image_path: str | None, gt_file: str | None, use_example_gt: bool,
               score_threshold: Any, classes: Any, show_labels: Any, show_scores: Any, line_width: Any, stage: Any,
               show_gt: Any, show_tracks: Any) -> tuple:
        """Redraw the denoising view, statistics, results, table and metrics from the stored run (no sampling)."""
        traj = self.trajectory(traj_file)
        if traj is None or not image_path:
            return (gr.skip(),) * 5
        source = self.image_source(image_path)
        if (source.height, source.width) != tuple(traj.image_size_hw):
            return (gr.skip(),) * 5  # a new image is in; its run will redraw everything
        display = Display.from_controls(score_threshold, classes, show_labels, show_scores, line_width, stage,
                                        show_gt, show_tracks)
        gt, _ = self.ground_truth(image_path, traj.image_size_hw, gt_file, use_example_gt, traj.class_names)
        views = self._views(traj, source, gt, display)
        return views["denoise"], views["stats"], views["results"], views["table"], views["metrics"]

    # --- heatmap and target views ---------------------------------------------------------------------------------

    @staticmethod
    def _class_index(value: Any, class_names: Sequence[str]) -> int | None:
        if value in (None, "", MAX_CLASSES_OPTION) or value not in class_names:
            return None
        return list(class_names).index(value)

    @staticmethod
    def _target_boxes(gt: GroundTruth | None, traj: Trajectory | None,
                      score_threshold: float) -> tuple[np.ndarray, np.ndarray, str]:
        if gt is not None and len(gt):
            return gt.boxes_xyxy, gt.labels, "ground truth"
        if traj is not None:
            keep = traj.detections.scores >= score_threshold
            return traj.detections.boxes_xyxy[keep], traj.detections.labels[keep], \
                f"detections ≥ {score_threshold:.2f}"
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), "no boxes"

    @staticmethod
    def _synthesize(boxes: np.ndarray, labels: np.ndarray, class_index: int | None, grid: tuple[int, int],
                    stride: float, min_radius: float, rho: float) -> np.ndarray:
        """The target channel shown: one class, or the maximum over classes. Objects merge by element-wise max, so
        the maximum over classes equals the core's target with every box in one class; either way one channel
        is synthesised instead of K (10x less work for the live sliders)."""
        pick = np.ones(len(labels), bool) if class_index is None else np.asarray(labels) == class_index
        boxes_t = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)[pick])
        one_class = torch.zeros(len(boxes_t), dtype=torch.int64)
        return synthesize_heatmap(boxes_t, one_class, 1, grid, stride, min_radius, rho)[0].numpy()  # (Hh, Wh)

    def _heatmap(self, traj: Trajectory, source: F.ImageSource, gt: GroundTruth | None, display: Display,
                 heat_class: Any, heat_mode: Any, min_radius: Any, rho: Any) -> go.Figure:
        min_r = _num(min_radius, 4.0, 0.1, 64.0, "min_radius")
        rho_v = _num(rho, 0.5, 0.0, 4.0, "rho")
        boxes, labels, source_name = self._target_boxes(gt, traj, display.score_threshold)
        if traj.heatmap is not None:
            grid, stride = tuple(traj.heatmap.shape[1:]), traj.heatmap_stride
        else:
            grid, stride = (max(1, source.height // 8), max(1, source.width // 8)), 8.0
        class_index = self._class_index(heat_class, traj.class_names)
        target = self._synthesize(boxes, labels, class_index, grid, stride, min_r, rho_v)
        predicted = F.select_channel(traj.heatmap, class_index) if traj.heatmap is not None else None
        mode = "overlay" if heat_mode == "overlay on image" else "side"
        return F.heatmap_figure(predicted, target, stride, source, traj.class_names, class_index, source_name, mode,
                                boxes)

    def render_heatmap(self, traj_file: str | None, image_path: str | None, gt_file: str | None,
                       use_example_gt: bool, heat_class: Any, heat_mode: Any, min_radius: Any, rho: Any,
                       score_threshold: Any) -> Any:
        traj = self.trajectory(traj_file)
        if traj is None or not image_path:
            return gr.skip()
        source = self.image_source(image_path)
        if (source.height, source.width) != tuple(traj.image_size_hw):
            return gr.skip()
        display = Display(score_threshold=_num(score_threshold, 0.3, 0, 1, "Score threshold"))
        gt, _ = self.ground_truth(image_path, traj.image_size_hw, gt_file, use_example_gt, traj.class_names)
        return self._heatmap(traj, source, gt, display, heat_class, heat_mode, min_radius, rho)

    def _target(self, source: F.ImageSource, image_hw: tuple[int, int], class_names: Sequence[str],
                gt: GroundTruth | None, traj: Trajectory | None, cfg: DiffDetConfig | None, score_threshold: float,
                min_radius: Any, rho: Any, target_class: Any, profile_box: Any) -> tuple[go.Figure, Any]:
        min_r = _num(min_radius, 4.0, 0.1, 64.0, "min_radius")
        rho_v = _num(rho, 0.5, 0.0, 4.0, "rho")
        boxes, labels, source_name = self._target_boxes(gt, traj, score_threshold)
        if traj is not None and traj.heatmap is not None:
            grid, stride = tuple(traj.heatmap.shape[1:]), traj.heatmap_stride
        elif cfg is not None:
            grid, stride = heatmap_grid(cfg, image_hw)
        else:
            grid, stride = (max(1, image_hw[0] // 8), max(1, image_hw[1] // 8)), 8.0
        class_index = self._class_index(target_class, class_names)
        target = self._synthesize(boxes, labels, class_index, grid, stride, min_r, rho_v)
        radii = gaussian_radius(torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)), stride, min_r,
                                rho_v).numpy()
        choices = [(f"#{i} {class_names[int(k)]} ({b[2] - b[0]:.0f} x {b[3] - b[1]:.0f} px)", i)
                   for i, (b, k) in enumerate(zip(boxes, labels))]
        box = None
        if choices:
            box = int(profile_box) if isinstance(profile_box, (int, float)) and 0 <= profile_box < len(choices) \
                else 0
        if len(boxes) == 0:
            figure = F.message_figure("No boxes to build a target from: give ground truth (or pick an example) or "
                                      "run the detector.", height=F.IMAGE_PLOT_HEIGHT)
        else:
            profile_map = None
            if box is not None:
                box_class = int(labels[box])
                profile_map = target if class_index == box_class else \
                    self._synthesize(boxes, labels, box_class, grid, stride, min_r, rho_v)
            figure = F.target_figure(source, boxes, labels, class_names, target, stride, radii, class_index, box,
                                     source_name, min_r, rho_v, profile_map=profile_map)
        return figure, gr.update(choices=choices, value=box)

    def render_target(self, image_path: str | None, gt_file: str | None, use_example_gt: bool,
                      traj_file: str | None, checkpoint: str | None, upload: str | None, min_radius: Any, rho: Any,
                      target_class: Any, profile_box: Any, score_threshold: Any) -> Any:
        """Re-synthesise the target for new min_radius / rho / class / profile box (the live sliders)."""
        if not image_path:
            return F.message_figure("Pick an image (and ground truth) to see its heatmap target.")
        source, image_hw, class_names, gt, traj, cfg = self._target_inputs(image_path, gt_file, use_example_gt,
                                                                           traj_file, checkpoint, upload)
        figure, _ = self._target(source, image_hw, class_names, gt, traj, cfg,
                                 _num(score_threshold, 0.3, 0, 1, "Score threshold"), min_radius, rho, target_class,
                                 profile_box)
        return figure

    def _target_inputs(self, image_path: str, gt_file: str | None, use_example_gt: bool, traj_file: str | None,
                       checkpoint: str | None, upload: str | None) -> tuple:
        """What the target view draws from: the image, its size, class names, ground truth, and the run's trajectory
        (when it belongs to this image) or else the chosen checkpoint's config."""
        source = self.image_source(image_path, light=True)
        image_hw = (source.height, source.width)
        traj = self.trajectory(traj_file)
        if traj is not None and tuple(traj.image_size_hw) != image_hw:
            traj = None
        cfg = self.config(checkpoint, upload) if traj is None else None
        class_names = traj.class_names if traj is not None else cfg.class_names
        gt, _ = self.ground_truth(image_path, image_hw, gt_file, use_example_gt, class_names)
        return source, image_hw, class_names, gt, traj, cfg

    def target_boxes_update(self, image_path: str | None, gt_file: str | None, use_example_gt: bool,
                            traj_file: str | None, checkpoint: str | None, upload: str | None, min_radius: Any,
                            rho: Any, target_class: Any, score_threshold: Any) -> tuple:
        """New image or ground truth: the target figure and the profile-box choices."""
        if not image_path:
            return F.message_figure("Pick an image (and ground truth) to see its heatmap target."), \
                gr.update(choices=[], value=None)
        source, image_hw, class_names, gt, traj, cfg = self._target_inputs(image_path, gt_file, use_example_gt,
                                                                           traj_file, checkpoint, upload)
        return self._target(source, image_hw, class_names, gt, traj, cfg,
                            _num(score_threshold, 0.3, 0, 1, "Score threshold"), min_radius, rho, target_class, 0)

    # --- A/B ----------------------------------------------------------------------------------------------------------

    def compare(self, image_path: str | None, gt_file: str | None, use_example_gt: bool, checkpoint: str | None,
                upload: str | None, proposals: Any, steps: Any, eta: Any, seed: Any, renewal: Any,
                renewal_threshold: Any, ensemble: Any, nms: Any, nms_iou: Any, heatmap_init: Any,
                score_threshold: Any, classes: Any, show_labels: Any, show_scores: Any, line_width: Any, stage: Any,
                show_gt: Any, show_tracks: Any, seed_b: Any, steps_b: Any, eta_b: Any, heatmap_b: Any,
                renewal_b: Any) -> tuple[go.Figure, str]:
        """Run A (the main settings) and B (the same with B's seed, steps, eta, heatmap ratio and renewal) and show
        them side by side with one slider."""
        common = (proposals, steps, eta, renewal, renewal_threshold, ensemble, nms, nms_iou, heatmap_init)
        image, traj_a, cfg, shown, sec_a, _ = self._run(image_path, checkpoint, upload, common, seed)
        options_b = (proposals, steps_b, eta_b, renewal_b, renewal_threshold, ensemble, nms, nms_iou, heatmap_b)
        _, traj_b, _, _, sec_b, _ = self._run(image_path, checkpoint, upload, options_b, seed_b)
        display = Display.from_controls(score_threshold, classes, show_labels, show_scores, line_width, stage,
                                        show_gt, show_tracks)
        view = display.view(traj_a.class_names, traj_a.num_stages)
        gt, notes = self.ground_truth(image_path, traj_a.image_size_hw, gt_file, use_example_gt, traj_a.class_names)
        for note in notes:
            gr.Warning(note)
        gt_boxes = gt.boxes_xyxy if gt is not None and len(gt) else None
        source = self._image_sources.get(_file_key(image_path) + (False,), lambda: F.ImageSource.from_array(image))

        def describe(traj: Trajectory) -> str:
            s = traj.settings
            return (f"seed {s.get('seed', '?')}, {traj.num_steps} step(s), eta {s['eta']:g}, "
                    f"heatmap {s['heatmap_init']:g}, renewal {'on' if s['box_renewal'] else 'off'}")

        titles = ["A", "B"]
        figure = F.compare_figure([traj_a, traj_b], titles, source, view, gt_boxes,
                                  [stage_ious(traj_a, gt_boxes, view.stage), stage_ious(traj_b, gt_boxes, view.stage)])
        rows = ["| | settings | detections ≥ threshold | AP | AP50 |", "|---|---|---|---|---|"]
        for title, traj in zip(titles, (traj_a, traj_b)):
            count = int((traj.detections.scores >= display.score_threshold).sum())
            ap = (image_ap(traj, gt.boxes_xyxy, gt.labels, gt.crowd_boxes_xyxy, gt.crowd_labels)
                  if gt_boxes is not None else None)
            fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
            rows.append(f"| **{title}** | {describe(traj)} | {count} | {fmt(ap and ap['AP'])} | "
                        f"{fmt(ap and ap['AP50'])} |")
        return figure, "\n".join(rows)

    # --- checkpoint info, training curves, API -------------------------------------------------------------------

    def checkpoint_info(self, checkpoint: str | None, upload: str | None) -> tuple:
        """A new checkpoint: its description and the controls that depend on it (classes, stages, proposals,
        heatmap options, target defaults)."""
        try:
            cfg = self.config(checkpoint, upload)
        except InputError as exc:
            message = f"⚠️ {exc}"
            return (message,) + (gr.skip(),) * 8
        classes = list(cfg.class_names)
        info = (f"**{cfg.backbone}** backbone · {cfg.num_classes} classes · {cfg.num_stages} head stages · "
                f"{cfg.num_proposals} proposals by default · heatmap head: "
                f"{'yes (stride ' + str(2 ** cfg.heatmap_level) + ')' if cfg.use_heatmap else 'no'} · "
                f"test size {cfg.min_size_test}-{cfg.max_size_test} px")
        class_choices = [MAX_CLASSES_OPTION] + classes
        return (
            info,
            gr.update(choices=classes, value=classes),
            gr.update(maximum=cfg.num_stages, value=cfg.num_stages),
            gr.update(value=cfg.num_proposals),
            gr.update(interactive=cfg.use_heatmap, value=0.0,
                      info=None if cfg.use_heatmap else "this checkpoint has no heatmap head"),
            gr.update(choices=class_choices, value=MAX_CLASSES_OPTION),
            gr.update(choices=class_choices, value=MAX_CLASSES_OPTION),
            gr.update(value=cfg.min_radius),
            gr.update(value=cfg.rho),
        )

    def metrics_file(self, checkpoint: str | None) -> Path | None:
        """The shipped run's metrics: checkpoints/*metrics*.jsonl, preferring one named after the checkpoint."""
        files = sorted(self.checkpoint_dir.glob("*metrics*.jsonl")) if self.checkpoint_dir.is_dir() else []
        if not files:
            return None
        stem = Path(checkpoint).stem if checkpoint else ""
        for file in files:
            if stem and file.name.startswith(stem):
                return file
        return files[0]

    def training(self, metrics_upload: str | None, checkpoint: str | None) -> tuple[go.Figure, str]:
        """AP-vs-iteration and per-class AP from an uploaded metrics file or the shipped checkpoint's own."""
        path = Path(metrics_upload) if metrics_upload else self.metrics_file(checkpoint)
        if path is None:
            message = ("No metrics: no `*metrics*.jsonl` file ships next to the checkpoints. Upload a run's "
                       "metrics file (JSON lines with `iter`, `loss_*`, `lr` and `eval` rows) to plot it.")
            return F.message_figure("No metrics file to plot"), message
        rows = load_metrics(path)
        evals = [r for r in rows if isinstance(r.get("eval"), dict)]
        name = path.name
        summary = f"**{name}**: {len(rows) - len(evals)} training row(s), {len(evals)} evaluation row(s)"
        if evals:
            best = max(evals, key=lambda r: float(r["eval"].get("AP") or -1))
            ap = float(best["eval"].get("AP") or 0) * F.ap_scale(rows)
            summary += f"; best AP {ap:.1f} at iteration {best['iter']}"
        return F.training_figure(rows, title=name), summary

    def predict_api(self, image_path: str | None, checkpoint: str | None, steps: Any, seed: Any, proposals: Any,
                    eta: Any, heatmap_init: Any, score_threshold: Any) -> tuple[dict, str]:
        """For API clients: detections as JSON (boxes in the image's pixels) and the full trajectory JSON file."""
        _, traj, cfg, shown, seconds, cached = self._run(
            image_path, checkpoint, None, (proposals, steps, eta, True, 0.5, True, True, 0.5, heatmap_init), seed)
        threshold = _num(score_threshold, 0.3, 0.0, 1.0, "Score threshold")
        det = traj.detections
        keep = det.scores >= threshold
        folder = self._new_output_folder()
        json_path = folder / "trajectory.json"
        traj.to_json(json_path)
        result = {
            "checkpoint": shown, "image_size_hw": list(traj.image_size_hw), "class_names": list(traj.class_names),
            "seconds": round(seconds, 4), "cached": cached, "settings": traj.settings,
            "detections": [
                {"class": traj.class_names[int(k)], "label": int(k), "score": round(float(s), 4),
                 "box_xyxy": [round(float(v), 2) for v in b], "step": int(st) + 1}
                for b, s, k, st in zip(det.boxes_xyxy[keep], det.scores[keep], det.labels[keep], det.step[keep])
            ],
        }
        return result, str(json_path)


for _name in ("detect", "render", "render_heatmap", "render_target", "target_boxes_update", "compare", "training",
              "predict_api"):
    setattr(Explorer, _name, _guard(getattr(Explorer, _name)))
