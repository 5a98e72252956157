"""Pieces every view's handlers share: bounds on requests, reading a control's value, the display options, a small
LRU map, and the guard that turns failures into messages for the user (never a traceback in the UI)."""
from __future__ import annotations

import functools
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np

from diffdet.config import DiffDetConfig

from app.inputs import InputError, log_user_error
from app.plotting import ViewOptions

log = logging.getLogger("diffdet.app")

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = "diffdet_tiny_props.safetensors"
MAX_CLASSES_OPTION = "max over classes"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# Server-side bounds on what one request may ask for (the sliders stay inside them; API calls are checked).
MAX_STEPS = 50
# NMS over all classes at once (overlapping boxes of different classes compete). Measured on the shipped model,
# 4 steps, score 0.3: on 5 real photos precision 24.1% -> 26.5% with no class confusion either way, at the same AP
# (79.3); on 150 held-out renders precision 76.4% -> 78.8%, confusions 87 -> 46, AP 74.5 -> 73.8 (checkpoints/README.md,
# docs/sim2real.md).
APP_AGNOSTIC_NMS = True
MAX_PROPOSALS = 1000
MAX_UPLOADED_TEST_SIZE = 1333  # the COCO reference's long side
# The target view's rho and min_radius sliders: range and step. The target figure can carry one precomputed frame per
# position, so a move is drawn in the page (``app.views.target.slider_frames``).
RHO_RANGE, RHO_STEP = (0.0, 1.5), 0.05
MIN_RADIUS_RANGE, MIN_RADIUS_STEP = (0.5, 16.0), 0.5


def _positions(low: float, high: float, step: float) -> list[float]:
    return [round(low + k * step, 6) for k in range(int(round((high - low) / step)) + 1)]


def rho_values() -> list[float]:
    """Every position of the rho slider, low to high."""
    return _positions(*RHO_RANGE, RHO_STEP)


def min_radius_values() -> list[float]:
    """Every position of the min_radius slider (heatmap cells), low to high."""
    return _positions(*MIN_RADIUS_RANGE, MIN_RADIUS_STEP)


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
        self.put(key, value)
        return value

    def put(self, key: Any, value: Any) -> None:
        """Store ``value`` under ``key`` (the most recently used), dropping the least recently used beyond capacity."""
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)

    def peek(self, key: Any, default: Any = None) -> Any:
        """The value under ``key`` without loading or reordering; ``default`` when absent."""
        with self._lock:
            return self._data.get(key, default)


def file_key(path: str | os.PathLike) -> tuple:
    stat = Path(path).stat()
    return (str(path), stat.st_size, stat.st_mtime_ns)


def _user_error(exc: Exception) -> gr.Error:
    # print_exception=False: Gradio would otherwise print a traceback for every user mistake; guard logs one line.
    return gr.Error(str(exc), title="Cannot run", print_exception=False)


def guard(fn: Callable) -> Callable:
    """Turn InputError into gr.Error and any other failure into a short generic message (logged with its traceback
    on the server), so the UI never shows a stack trace and the server keeps serving."""
    @functools.wraps(fn)  # keeps the signature: Gradio names the API's parameters after it
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
    return wrapper


def number(value: Any, default: float, low: float, high: float, name: str, integer: bool = False) -> float:
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
            score_threshold=number(score_threshold, 0.3, 0.0, 1.0, "Score threshold"),
            classes=None if classes is None else tuple(str(c) for c in classes),
            show_labels=bool(show_labels) if show_labels is not None else True,
            show_scores=bool(show_scores) if show_scores is not None else True,
            line_width=number(line_width, 2.0, 0.5, 8.0, "Line width"),
            stage=number(stage, 0, 0, 64, "Stage", integer=True),
            show_gt=bool(show_gt) if show_gt is not None else True,
            show_tracks=bool(show_tracks) if show_tracks is not None else True,
        )

    def view(self, class_names: Sequence[str], num_stages: int) -> ViewOptions:
        shown = None
        if self.classes is not None:
            shown = frozenset(i for i, n in enumerate(class_names) if n in set(self.classes))
        stage = -1 if self.stage <= 0 or num_stages == 0 else min(self.stage, num_stages) - 1
        return ViewOptions(score_threshold=self.score_threshold, classes_shown=shown, stage=stage,
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
