"""``Explorer``: the state every session shares (caches of models, runs, images; the examples and checkpoints
folders) and the handlers of every view, which ``app.ui`` wires to components and the tests call directly.

The handlers take and return plain values (paths, numbers, figures, ``gr.update``s). Each view's handlers live next
to its figure code in ``app.views.<view>``; this module holds what they share: finding and reading checkpoints,
examples and ground truth, running the detector, and the Detect handler that builds every view at once.

Errors a user can cause (a bad upload, a checkpoint that does not fit) raise ``gr.Error`` with a message written for
them; problems that do not stop a run (an annotation file for another image) become ``gr.Warning``s and a line in the
status. Nothing here ever shows a traceback or a server path.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import numpy as np
import torch

from gradio.context import LocalContext

from diffdet.config import DiffDetConfig
from diffdet.inference import SamplerOptions
from diffdet.trajectory import Trajectory

from app.controls import (
    APP_AGNOSTIC_NMS, DEFAULT_CHECKPOINT, IMAGE_SUFFIXES, LRU, MAX_CLASSES_OPTION, MAX_PROPOSALS, MAX_STEPS, MAX_UPLOADED_TEST_SIZE,
    ROOT, Display, file_key, guard, log, number,
)
from app.evaluation import coco_json
from app.inputs import (
    GroundTruth, InputError, check_checkpoint_upload, file_digest, list_checkpoints, load_image, parse_annotations,
    parse_props, resolve_checkpoint,
)
from app.plotting import ImageSource, message_figure
from app.runner import MODELS, RunCache, read_config
from app.views.compare import CompareHandlers
from app.views.convergence import PAPER, TEACHING, Preset
from app.views.denoising import DenoisingHandlers
from app.views.heatmap import HeatmapHandlers
from app.views.results import ResultsHandlers
from app.views.target import TargetHandlers
from app.views.training import TrainingHandlers


REPEAT_S = 1.0  # a page run repeating the same session's previous one this soon after its end is dropped


def step_reporter(progress: Any) -> Any:
    """An ``on_step(done, steps)`` for ``RunCache.run`` that moves ``progress`` (a ``gr.Progress``) one DDIM step at
    a time, with the time left estimated from the time per step measured after the first one (the first also
    carries the backbone, so no estimate is given until the second step is done)."""
    marks: list[float] = []

    def on_step(done: int, steps: int) -> None:
        now = time.perf_counter()
        marks.append(now)
        text = f"DDIM step {done}/{steps}"
        if done == steps:
            text += " · drawing the views"
        elif done >= 2:
            text += f" · about {(now - marks[0]) / (done - 1) * (steps - done):.1f} s left"
        progress((done, steps), desc=text, unit="steps")

    return on_step


class Explorer(DenoisingHandlers, HeatmapHandlers, TargetHandlers, ResultsHandlers, CompareHandlers,
               TrainingHandlers):
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
        self._last_page_run = LRU(1024)  # per browser session: (its inputs, when it ended), see ``detect_or_explain``
        self._target_requests = LRU(1024)  # per browser session: (newest request number, frames key), see target.py
        self._target_lock = threading.Lock()
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
        return self._digests.get(file_key(path), lambda: file_digest(path))

    def example_name(self, image_path: str | None) -> str | None:
        """The example's file name when ``image_path`` holds the bytes of one of the examples."""
        if not image_path or not self._example_by_digest or not Path(image_path).is_file():
            return None
        return self._example_by_digest.get(self._digest(image_path))

    def _default_stages(self) -> int:
        """The default checkpoint's head stage count (the Head stage slider's maximum); 1 when it cannot be read."""
        try:
            return self.config(self.default_checkpoint(), None).num_stages
        except (InputError, ValueError, OSError):
            return 1

    def url_example(self, image_path: str | None) -> str:
        """``example_name`` for the page's address: "" for an image that is not one of the examples."""
        return self.example_name(image_path) or ""

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
        cfg = self._configs.get(file_key(path), lambda: read_config(path, shown))
        if upload and max(cfg.min_size_test, cfg.max_size_test) > MAX_UPLOADED_TEST_SIZE:
            # An uploaded file's config sets the inference resolution; bound what a stranger can make us compute.
            raise InputError(f"The uploaded checkpoint asks for {cfg.max_size_test}-pixel inputs; this app runs at "
                             f"most {MAX_UPLOADED_TEST_SIZE} pixels.")
        return cfg

    def image_source(self, image_path: str, light: bool = False) -> ImageSource:
        """The display copy of an image (decoded and validated once per file). ``light``: a smaller JPEG for the
        live target view, whose every slider move sends the image again (24 kB instead of 52 kB at 640x480)."""
        def build() -> ImageSource:
            rgb = load_image(image_path)
            return ImageSource.from_array(rgb, max_side=960, quality=65) if light else ImageSource.from_array(rgb)
        return self._image_sources.get(file_key(image_path) + (light,), build)

    def trajectory(self, traj_file: str | None) -> Trajectory | None:
        if not traj_file or not Path(traj_file).is_file():
            return None
        try:
            return self._trajectories.get(file_key(traj_file), lambda: Trajectory.load_npz(traj_file))
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
        heat = number(heatmap_init, 0.0, 0.0, 1.0, "Heatmap-guided proposal ratio")
        if heat > 0 and not cfg.use_heatmap:
            heat = 0.0  # the control is disabled for such checkpoints; an API call gets the same behaviour
        options = SamplerOptions(
            steps=number(steps, 4, 1, MAX_STEPS, "DDIM steps", integer=True),
            eta=number(eta, 1.0, 0.0, 1.0, "eta"),
            box_renewal=bool(renewal) if renewal is not None else True,
            renewal_threshold=number(renewal_threshold, 0.5, 0.0, 1.0, "Renewal threshold"),
            ensemble=bool(ensemble) if ensemble is not None else True,
            nms=bool(nms) if nms is not None else True, agnostic_nms=APP_AGNOSTIC_NMS,
            nms_iou=number(nms_iou, 0.5, 0.05, 1.0, "NMS IoU"),
            score_threshold=0.0,  # keep every detection for AP; the display threshold filters what is shown
            num_proposals=number(proposals, cfg.num_proposals, 1, MAX_PROPOSALS, "Proposals", integer=True),
            heatmap_init=heat, max_detections=100, record=True,
        )
        try:
            options.validate(cfg)
        except ValueError as exc:
            raise InputError(f"Invalid sampler setting: {exc}") from None
        return options

    def _run(self, image_path: str | None, checkpoint: str | None, upload: str | None, options_args: tuple,
             seed: Any, progress: Any = None) -> tuple[np.ndarray, Trajectory, DiffDetConfig, str, float, bool]:
        if not image_path:
            raise InputError("Upload an image, take one with the webcam or pick an example first.")
        image = load_image(image_path)
        path, shown = self.checkpoint(checkpoint, upload)
        cfg = self.config(checkpoint, upload)
        options = self.sampler_options(cfg, *options_args)
        seed_value = number(seed, 0, 0, 2**31 - 1, "Seed", integer=True)
        start = time.perf_counter()
        on_step = step_reporter(progress) if progress is not None else None
        traj, cached = self.runs.run(path, shown, image, options, seed_value, on_step=on_step)
        traj.settings.setdefault("seed", seed_value)
        return image, traj, cfg, shown, time.perf_counter() - start, cached

    def detect(self, image_path: str | None, gt_file: str | None, use_example_gt: bool, checkpoint: str | None,
               upload: str | None, proposals: Any, steps: Any, eta: Any, seed: Any, renewal: Any,
               renewal_threshold: Any, ensemble: Any, nms: Any, nms_iou: Any, heatmap_init: Any,
               score_threshold: Any, classes: Any, show_labels: Any, show_scores: Any, line_width: Any, stage: Any,
               show_gt: Any, show_tracks: Any, min_radius: Any, rho: Any, heat_class: Any, heat_mode: Any,
               target_class: Any, position: Any = None, progress: Any = None) -> tuple:
        """Run the detector and build every view; the denoising slider opens at ``position`` (None: the final
        detections); ``progress`` (a ``gr.Progress``) is told each DDIM step with the time left. Returns, in order: status Markdown, denoising figure, step
        statistics, heatmap figure, target figure, results figure, detections table, metrics Markdown, download
        files, stored run (npz path), profile-box dropdown update, convergence figure."""
        if not image_path:
            return self.empty_outputs("Upload an image, take one with the webcam or pick an example, then press "
                                      "**Detect**.")
        image, traj, cfg, shown, seconds, cached = self._run(
            image_path, checkpoint, upload,
            (proposals, steps, eta, renewal, renewal_threshold, ensemble, nms, nms_iou, heatmap_init), seed, progress)
        display = Display.from_controls(score_threshold, classes, show_labels, show_scores, line_width, stage,
                                        show_gt, show_tracks)
        gt, notes = self.ground_truth(image_path, traj.image_size_hw, gt_file, use_example_gt, traj.class_names)
        for note in notes:
            gr.Warning(note)
        folder = self._new_output_folder()
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(image_path).stem)[:60] or "image"
        # what a file holds comes first in its name: a phone's file list cuts long names in the middle
        # ("scene_01… .json" twice)
        npz_path = folder / f"trajectory_{stem}.npz"
        traj.save_npz(npz_path)
        json_path = folder / f"trajectory_{stem}.json"
        traj.to_json(json_path)
        coco_path = folder / f"detections_coco_{stem}.json"
        coco_path.write_text(coco_json(traj, Path(image_path).name))
        source = self._image_sources.get(file_key(image_path) + (False,), lambda: ImageSource.from_array(image))
        light = self._image_sources.get(file_key(image_path) + (True,),
                                        lambda: ImageSource.from_array(image, max_side=960, quality=65))
        start = None if position in (None, "") else number(position, 0, 0, 10_000, "Position", integer=True)
        views = self._views(traj, source, gt, display, start)
        heat = self._heatmap(traj, source, gt, display, heat_class, heat_mode, min_radius, rho)
        target, profile_update = self._target(light, traj.image_size_hw, traj.class_names, gt, traj, cfg,
                                              display.score_threshold, min_radius, rho, target_class, None)
        device = "GPU" if torch.cuda.is_available() else "CPU"
        status = (views["status"] + f" · checkpoint `{shown}` · "
                  f"{'cached result' if cached else f'{seconds:.2f} s on {device}'}")
        if notes:
            status += "\n\n" + "\n".join(f"- {n}" for n in notes)
        return (status, views["denoise"], views["stats"], heat, target, views["results"], views["table"],
                views["metrics"], [str(coco_path), str(json_path), str(npz_path)], str(npz_path), profile_update,
                views["convergence"])

    def detect_or_explain(self, *args: Any) -> tuple:
        """``detect`` for the page's own events (Detect, a new image, a preset), with every control and the slider
        position, then Gradio's progress tracker (its signature is ``detect``'s plus ``progress``, set below, so
        Gradio passes one). A problem (a corrupt upload, a checkpoint that does not fit...) becomes a warning toast
        and a message in the status line, and every view keeps the previous run instead of showing error badges."""
        progress = args[-1] if args and isinstance(args[-1], gr.Progress) else None
        if progress is not None:
            args = args[:-1]
        # Gradio's Image reports one upload as two changes (its uploader sets the value, then reports the change
        # again): the same run was made twice and a bad upload warned twice. A run asking exactly what the same
        # browser session's previous run asked, and starting within REPEAT_S of its end, changes nothing.
        session = getattr(LocalContext.request.get(None), "session_hash", None)
        key = (session, repr(args))
        last = self._last_page_run.peek(session) if session else None
        if last is not None and last[0] == key and time.monotonic() - last[1] < REPEAT_S:
            return (gr.skip(),) * 12
        try:
            return self.detect(*args, progress=progress)  # guarded: every failure arrives as a gr.Error
        except gr.Error as exc:
            gr.Warning(exc.message)
            kept = " The views still show the previous run." if args and args[0] else ""
            return (f"⚠️ **Cannot run:** {exc.message}{kept}",) + (gr.skip(),) * 11
        finally:
            if session:
                self._last_page_run.put(session, (key, time.monotonic()))

    def empty_outputs(self, message: str) -> tuple:
        empty = message_figure(re.sub(r"[*`]", "", message))
        return (message, empty, None, None, None, None, None, "", None, None, gr.update(choices=[], value=None), None)

    # --- checkpoint info, API ----------------------------------------------------------------------------------------

    def checkpoint_info(self, checkpoint: str | None, upload: str | None) -> tuple:
        """A new checkpoint: its description and the controls that depend on it (classes, stages, proposals,
        heatmap options, target defaults)."""
        try:
            cfg = self.config(checkpoint, upload)
        except InputError as exc:
            message = f"⚠️ {exc}"
            return (message,) + (gr.skip(),) * 10
        classes = list(cfg.class_names)
        info = (f"**{cfg.backbone}** backbone · {cfg.num_classes} classes · {cfg.num_stages} head stages · "
                f"{cfg.num_proposals} proposals by default · heatmap head: "
                f"{'yes (stride ' + str(2 ** cfg.heatmap_level) + ')' if cfg.use_heatmap else 'no'} · "
                f"test size {cfg.min_size_test}-{cfg.max_size_test} px")
        class_choices = [MAX_CLASSES_OPTION] + classes
        # Controls with nothing to choose hide: one head stage, one class, no heatmap head. A slider needs
        # minimum < maximum, so a one-stage model keeps maximum 2 on the hidden slider.
        return (
            info,
            gr.update(choices=classes, value=classes),
            gr.update(maximum=max(cfg.num_stages, 2), value=cfg.num_stages, visible=cfg.num_stages > 1),
            gr.update(),  # the number of proposals is the preset's (the paper preset takes the checkpoint's)
            gr.update(value=0.0, visible=cfg.use_heatmap),
            gr.update(choices=class_choices, value=MAX_CLASSES_OPTION),
            gr.update(choices=class_choices, value=MAX_CLASSES_OPTION),
            gr.update(value=cfg.min_radius),
            gr.update(value=cfg.rho),
            gr.update(visible=len(classes) > 1, label=f"Classes shown ({len(classes)})"),
            gr.update(value=0.0, visible=cfg.use_heatmap),
        )

    def _preset(self, preset: Preset, checkpoint: str | None, upload: str | None) -> tuple:
        try:
            proposals = preset.proposals or self.config(checkpoint, upload).num_proposals
        except InputError:
            proposals = preset.proposals or 100
        return (gr.update(value=preset.steps), gr.update(value=preset.eta), gr.update(value=preset.renewal),
                gr.update(value=min(proposals, MAX_PROPOSALS)))

    def teaching_preset(self, checkpoint: str | None, upload: str | None) -> tuple:
        """The teaching setting's steps, eta, renewal and proposals (``app.views.convergence.TEACHING``)."""
        return self._preset(TEACHING, checkpoint, upload)

    def paper_preset(self, checkpoint: str | None, upload: str | None) -> tuple:
        """The paper's setting: eta 1, renewal, 4 steps, the checkpoint's number of proposals."""
        return self._preset(PAPER, checkpoint, upload)

    # --- the first view ----------------------------------------------------------------------------------------------

    def first_view_options(self, cfg: DiffDetConfig) -> SamplerOptions:
        """The sampler options the page's default controls give (the teaching preset)."""
        return self.sampler_options(cfg, TEACHING.proposals, TEACHING.steps, TEACHING.eta, TEACHING.renewal, 0.5,
                                    True, True, 0.5, 0.0)

    def warm_first_view(self) -> float | None:
        """Run the first example with the default controls now, so the page's first view is a cache hit. Returns
        the seconds it took, or None when there is no example or checkpoint (only logged: the UI explains)."""
        name, examples = self.default_checkpoint(), self.example_paths()
        if name is None or not examples:
            return None
        start = time.perf_counter()
        try:
            cfg = self.config(name, None)
            self.runs.run(self.checkpoint_dir / name, name, load_image(examples[0]), self.first_view_options(cfg), 0)
        except InputError as exc:
            log.warning("first view not prepared: %s", exc)
            return None
        return time.perf_counter() - start

    def first_image(self) -> str | None:
        """The image the page opens with: the first example (None without examples)."""
        examples = self.example_paths()
        return str(examples[0]) if examples else None

    def from_url(self, request: gr.Request | None = None) -> tuple:
        """The view a shared link asks for (``?example=scene_03.jpg&steps=10&eta=0&renewal=0&proposals=50&seed=0
        &threshold=0.3&pos=4&lw=2&labels=1&scores=1&gt=1&tracks=1&stage=4``): the image (an example, by name; a
        name that is none of them shows the first example, with a warning), the sampler and display controls (head
        stage up to the default checkpoint's stage count), then the slider position (``hide=`` names hidden layers;
        the page applies it). Parameters that are missing, unknown or out of range are left at the page's defaults:
        a link never fails."""
        query = dict(request.query_params) if request is not None and request.query_params else {}
        examples = {p.name: p for p in self.example_paths()}
        image = str(examples[query["example"]]) if query.get("example") in examples else self.first_image()
        if query.get("example") and query["example"] not in examples:
            gr.Warning(f"This link names the image {query['example']!r}, which is not one of the examples: the first "
                       "example is shown instead (a link carries examples only, not an uploaded image).")

        def read(key: str, low: float, high: float, integer: bool = False) -> Any:
            try:
                return gr.update(value=number(query[key], 0, low, high, key, integer)) if key in query else gr.update()
            except InputError:
                return gr.update()

        def flag(key: str) -> Any:
            return gr.update(value=query[key] == "1") if query.get(key) in ("0", "1") else gr.update()

        return (image, read("steps", 1, 20, True), read("eta", 0, 1), flag("renewal"), read("proposals", 1, 500, True),
                read("seed", 0, 2**31 - 1, True), read("threshold", 0, 1), read("pos", 0, 10_000, True),
                read("lw", 0.5, 6), flag("labels"), flag("scores"), flag("gt"), flag("tracks"),
                read("stage", 1, self._default_stages(), True))

    def predict_api(self, image_path: str | None, checkpoint: str | None, steps: Any, seed: Any, proposals: Any,
                    eta: Any, heatmap_init: Any, score_threshold: Any) -> tuple[dict, str]:
        """For API clients: detections as JSON (boxes in the image's pixels) and the full trajectory JSON file."""
        _, traj, cfg, shown, seconds, cached = self._run(
            image_path, checkpoint, None, (proposals, steps, eta, True, 0.5, True, True, 0.5, heatmap_init), seed)
        threshold = number(score_threshold, 0.3, 0.0, 1.0, "Score threshold")
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


for _name in ("detect", "render", "render_heatmap", "render_target", "render_target_rho", "render_target_min_radius",
              "render_target_opened", "target_boxes_update", "compare", "training", "predict_api"):
    setattr(Explorer, _name, guard(getattr(Explorer, _name)))

# Gradio passes its progress tracker to a handler whose signature has a parameter defaulting to ``gr.Progress()``
# (inserted at that parameter's place among the inputs): the page's detect events send every control and the slider
# position, so ``progress`` comes right after ``position``.
_detect_parameters = list(inspect.signature(Explorer.detect).parameters.values())
Explorer.detect_or_explain.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [p for p in _detect_parameters if p.name != "progress"]
    + [inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress())])
