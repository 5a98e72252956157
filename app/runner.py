"""Loading checkpoints and running the detector for the app: a small cache of loaded models, a cache of recent
runs, and the one function that touches the accelerator (wrapped in ``@spaces.GPU`` on Hugging Face ZeroGPU).
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from diffdet.config import DiffDetConfig
from diffdet.inference import Detector, SamplerOptions
from diffdet.trajectory import Trajectory
from diffdet.weights import read_metadata

from app.inputs import InputError

try:  # Hugging Face Spaces (ZeroGPU): the decorator asks for a GPU for the duration of the call.
    import spaces  # type: ignore[import-not-found]

    gpu: Callable = spaces.GPU
except ImportError:  # everywhere else it does nothing
    def gpu(fn: Callable | None = None, **_: Any) -> Callable:
        return fn if fn is not None else (lambda f: f)


def _clean(message: str, path: Path, name: str) -> str:
    """The core's messages name the file by path; the UI names it as the user knows it."""
    return message.replace(str(path), name).replace(str(path.resolve()), name)


def read_config(path: Path, name: str) -> DiffDetConfig:
    """The config stored in a checkpoint's metadata, without loading its tensors."""
    try:
        meta = read_metadata(path)
        if "config" not in meta:
            raise ValueError(f"{name} is not a diffdet checkpoint (it has no config in its metadata)")
        return DiffDetConfig.from_json(meta["config"])
    except ValueError as exc:
        raise InputError(_clean(str(exc), path, name)) from None


class ModelStore:
    """Detectors by checkpoint file (path, size, mtime); keeps the ``capacity`` most recently used."""

    def __init__(self, capacity: int = 2, device: str | None = None) -> None:
        self.capacity = capacity
        self.device = device
        self._models: OrderedDict[tuple, Detector] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, name: str) -> Detector:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            try:
                # bfloat16 where the device runs it natively (AP within 0.5 of float32 on held-out renders; an
                # emulated bfloat16 CPU stays in float32: docs/heatmap_inference.md, bench/RESULTS.md).
                detector = Detector.from_checkpoint(path, device=self.device, dtype="auto")
            except (ValueError, RuntimeError, OSError) as exc:
                raise InputError(f"The checkpoint could not be loaded: {_clean(str(exc), path, name)}") from None
            self._models[key] = detector
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return detector


MODELS = ModelStore()


@gpu
def _predict(path: str, name: str, image: np.ndarray, options: SamplerOptions, seed: int) -> Trajectory:
    """The accelerator part. Only plain values cross this boundary (ZeroGPU may run it in another process); the
    model comes from the module-level store, loaded before the call when possible."""
    return MODELS.get(Path(path), name).predict([image], options, seed=seed)[0]


class RunCache:
    """Recent trajectories by (checkpoint, image bytes, options, seed): re-rendering, A/B and repeated API calls
    with the same inputs do not sample again. Sampling is seeded, so a cached result equals a fresh one."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._runs: OrderedDict[tuple, Trajectory] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(path: Path, image: np.ndarray, options: SamplerOptions, seed: int) -> tuple:
        stat = path.stat()
        digest = hashlib.sha1(np.ascontiguousarray(image).data).hexdigest()
        return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, digest, image.shape, options, int(seed))

    def run(self, path: Path, name: str, image: np.ndarray, options: SamplerOptions,
            seed: int, on_step: Callable[[int, int], None] | None = None) -> tuple[Trajectory, bool]:
        """(trajectory, came from the cache). Loads the checkpoint on first use (InputError if it does not load).

        ``on_step(done, steps)`` is called after each DDIM step's network pass (a forward hook on the model: the
        sampler calls the model once per step), from this thread only. Where the model runs in another process
        (ZeroGPU) the hook never fires and nothing is reported."""
        key = self.key(path, image, options, seed)
        with self._lock:
            if key in self._runs:
                self._runs.move_to_end(key)
                return self._runs[key], True
        detector = MODELS.get(path, name)  # load (and report a bad file) outside the GPU call
        handle = None
        if on_step is not None:
            owner, done = threading.get_ident(), [0]

            def hook(*_: Any) -> None:
                if threading.get_ident() == owner:
                    done[0] += 1
                    on_step(done[0], options.steps)

            handle = detector.model.register_forward_hook(hook)
        try:
            traj = _predict(str(path), name, image, options, seed)
        finally:
            if handle is not None:
                handle.remove()
        with self._lock:
            self._runs[key] = traj
            while len(self._runs) > self.capacity:
                self._runs.popitem(last=False)
        return traj, False
