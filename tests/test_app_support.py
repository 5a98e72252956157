"""Helpers shared by the app tests (hand-made trajectories, tiny images and checkpoints), plus their own checks.

Imported by the other ``test_app_*`` files as ``import test_app_support``; pytest puts this folder on sys.path.
"""
from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as app.py does: no spinning threads on a shared CPU
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so `import app` and `import diffdet` work however pytest is started
    sys.path.insert(0, str(ROOT))

from diffdet.trajectory import Detections, Trajectory  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OUTPUT_DIR = ROOT / "tests" / "_output"
CHECKPOINT_NAME = "diffdet_tiny_props.safetensors"

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


def _decoded(value: object) -> object:
    """plotly.js typed-array specs ({"dtype", "bdata"[, "shape"]}) back to numpy arrays, anywhere in a trace."""
    if isinstance(value, dict) and "bdata" in value and "dtype" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
        shape = value.get("shape")
        return array.reshape([int(n) for n in str(shape).split(",")]) if shape else array
    if isinstance(value, dict):
        return {k: _decoded(v) for k, v in value.items()}
    return value


def traces_at(fig: object, position: int) -> list[dict]:
    """The traces a slider figure (denoising or A/B view) shows at slider ``position``, as ``Plotly.restyle`` leaves
    them in the browser: the step's per-trace values applied to the traces it lists (a None value removes the
    attribute, so Plotly's default applies), hidden and empty traces dropped, typed arrays decoded. Plain dicts."""
    figure = fig.to_dict() if hasattr(fig, "to_dict") else fig
    data = copy.deepcopy(figure["data"])
    update, indices = figure["layout"]["sliders"][0]["steps"][position]["args"]
    for j, k in enumerate(indices):
        for key, values in update.items():
            *parents, leaf = key.split(".")
            node = data[k]
            for part in parents:
                node = node.setdefault(part, {})
            if values[j] is None:
                node.pop(leaf, None)
            else:
                node[leaf] = values[j]
    # empty slots and legend keys draw nothing; the slider never hides slots (visibility belongs to the legend)
    return [_decoded(t) for t in data if t.get("visible", True) is True and not _empty(t.get("x"))]


def _empty(x: object) -> bool:
    """No points (an unused slot), or a legend-only key's single None."""
    return isinstance(x, list) and (len(x) == 0 or x == [None])


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


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb as far as any check that
    reads the header is concerned)."""
    png = bytearray(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    start = png.index(b"IHDR")
    png[start + 4:start + 17] = ihdr
    png[start + 17:start + 21] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(png)


def png16_bytes() -> bytes:
    """A 16-bit greyscale PNG with values across the whole 0-65535 range."""
    ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (48, 1))
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class AppEnv:
    """A checkpoints folder with a random-init tiny checkpoint and its metrics file, an examples folder with two
    small scenes and their PROPS annotations, and the scenes' ground truth."""

    checkpoint_dir: Path
    examples_dir: Path
    work_dir: Path


def build_env(root: Path) -> AppEnv:
    import torch

    from diffdet.config import TINY
    from diffdet.model import build_model
    from diffdet.weights import save_checkpoint

    checkpoint_dir, examples_dir, work_dir = root / "checkpoints", root / "examples", root / "work"
    for folder in (checkpoint_dir, examples_dir, work_dir):
        folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_checkpoint(build_model(TINY.replace(num_proposals=20)), checkpoint_dir / CHECKPOINT_NAME,
                    dtype=torch.float16)
    annotations = []
    for i in range(2):
        write_image(examples_dir / f"scene_{i:02d}.jpg", make_image(seed=i), fmt="JPEG", quality=92)
        annotations.append([f"images/scene_{i:02d}.jpg", [
            {"name": "master_chef_can", "xyxy": [20, 16, 60, 56]}, {"name": "mug", "xyxy": [70, 30, 118, 86]}]])
    (examples_dir / "props.json").write_text(json.dumps(annotations))
    rows = [{"iter": it, "loss": 3.0 / (1 + it / 100), "loss_ce": 1.0 / (1 + it / 50), "lr": 1e-4}
            for it in range(0, 501, 50)]
    rows += [{"iter": it, "eval": {"AP": it / 1000, "AP50": it / 700,
                                   "per_class": {"mug": it / 900, "cracker_box": it / 1200}}}
             for it in (250, 500)]
    (checkpoint_dir / "diffdet_tiny_props_metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return AppEnv(checkpoint_dir, examples_dir, work_dir)


@pytest.fixture(scope="session")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> AppEnv:
    return build_env(tmp_path_factory.mktemp("app_env"))


def bad_uploads(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files the app must refuse, each with a fragment of the message the user must see."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "zero_byte": (b"", "empty"),
        "not_image": (b"this is plain text, not a picture\n" * 10, "not an image"),
        "corrupt": (png_bytes(make_image())[:200], "corrupt"),
        "bomb": (bomb_png(), "too many pixels"),
    }
    out = {}
    for name, (data, message) in files.items():
        path = folder / f"{name}.png"
        path.write_bytes(data)
        out[name] = (path, message)
    big = folder / "oversized.jpg"
    with open(big, "wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0")
        handle.truncate(21 * 1024 * 1024)
    out["oversized"] = (big, "limit is 20.0 MB")
    return out


def odd_but_valid_uploads(folder: Path) -> dict[str, Path]:
    """Images the app must accept: 16-bit, RGBA, greyscale, palette, a 4000x60 strip and a 1x1 image (the CLI takes
    them; the model resizes and pads any size)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    (folder / "sixteen_bit.png").write_bytes(png16_bytes())
    out["sixteen_bit"] = folder / "sixteen_bit.png"
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[10:30, 10:40, 3] = 255
    Image.fromarray(rgba, "RGBA").save(folder / "rgba.png")
    out["rgba"] = folder / "rgba.png"
    Image.fromarray(make_image()[..., 0], "L").save(folder / "grey.png")
    out["grey"] = folder / "grey.png"
    Image.fromarray(make_image()).convert("P").save(folder / "palette.gif")
    out["palette"] = folder / "palette.gif"
    Image.fromarray(np.full((60, 4000, 3), 128, np.uint8)).save(folder / "wide_strip.png")
    out["wide_strip"] = folder / "wide_strip.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "tiny_1x1.png")
    out["tiny_1x1"] = folder / "tiny_1x1.png"
    return out


@contextlib.contextmanager
def launched_app(env: AppEnv, name: str):
    """The app launched on a free local port for the tests (its own output folder ``name``); yields
    (demo, explorer) and closes the server afterwards."""
    from app.explorer import Explorer
    from app.ui import build_demo, launch

    explorer = Explorer(env.checkpoint_dir, env.examples_dir, output_dir=env.work_dir / name)
    demo = launch(build_demo(explorer), explorer, prevent_thread_lock=True, server_name="127.0.0.1",
                  server_port=None, quiet=True)
    try:
        yield demo, explorer
    finally:
        demo.close()


def test_model_store_runs_bfloat16_only_where_native(tmp_path, tiny_model) -> None:
    import torch

    from app.runner import ModelStore
    from diffdet.inference import native_bfloat16
    from diffdet.weights import save_checkpoint

    path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_model, path)
    detector = ModelStore(device="cpu").get(path, "tiny.safetensors")
    assert detector.dtype == "auto"  # the app asks for bfloat16 where the CPU runs it natively ...
    traj = detector.predict([np.zeros((48, 64, 3), np.uint8)])[0]
    assert traj.settings["dtype"] == "auto"
    if not native_bfloat16(torch.device("cpu")):  # ... and float32 elsewhere: no emulation warning, same numbers
        plain = ModelStore(device="cpu").get(path, "tiny.safetensors")
        plain.dtype = None
        np.testing.assert_array_equal(plain.predict([np.zeros((48, 64, 3), np.uint8)])[0].boxes_xyxy, traj.boxes_xyxy)
