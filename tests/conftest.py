"""Shared fixtures: a tiny model config that runs in well under a second on a CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffdet.config import get_preset

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
