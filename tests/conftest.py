"""Shared fixtures: a tiny model config that runs in well under a second on a CPU."""
from __future__ import annotations

import os

# On a shared 2-core machine OpenMP's default spin-waiting makes competing torch processes crawl (measured by
# the app's benchmark: 6.4 s -> 0.36 s for a 4-step run); this must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffdet.config import get_preset  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_cfg():
    """The tiny preset shrunk further: 2 stages, 16 proposals, 64x96 test size."""
    return get_preset("tiny", num_stages=2, num_proposals=16, dim_feedforward=64, min_size_test=64,
                      max_size_test=96, min_size_train=(64,), max_size_train=96)


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg):
    from diffdet.model import build_model

    torch.manual_seed(0)
    return build_model(tiny_cfg).eval()


@pytest.fixture
def rgb_image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(48, 72, 3), dtype=np.uint8)


def write_shapes_dataset(root, num_train: int = 6, num_val: int = 2, size_hw=(64, 96), seed: int = 0):
    """A PROPS-format folder of coloured rectangles (colour = class), learnable in a few dozen iterations."""
    import json

    import cv2

    from diffdet.config import PROPS_CLASSES

    rng = np.random.default_rng(seed)
    colours = [(230, 30, 30), (30, 200, 30), (40, 40, 230)]
    folder = root / "PROPS-Detection-Dataset"
    for split, count in (("train", num_train), ("val", num_val)):
        entries = []
        for i in range(count):
            image = np.full((*size_hw, 3), 90, np.uint8)
            objects = []
            for _ in range(int(rng.integers(1, 3))):
                cls = int(rng.integers(0, 3))
                w, h = int(rng.integers(14, 36)), int(rng.integers(14, 30))
                x, y = int(rng.integers(0, size_hw[1] - w)), int(rng.integers(0, size_hw[0] - h))
                image[y:y + h, x:x + w] = colours[cls]
                objects.append({"name": PROPS_CLASSES[cls], "xyxy": [x, y, x + w, y + h]})
            rel = f"images/{split}/{i:03d}.png"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / rel), image[:, :, ::-1])
            entries.append([rel, objects])
        (folder / f"{split}.json").write_text(json.dumps(entries))
    return folder
