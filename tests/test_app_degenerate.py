"""Degenerate but valid models (issue #12, kind 7): one head stage, one class, a few proposals, no heatmap head.
The app builds, its controls with nothing to choose hide, and a run draws every view."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

import test_app_support as support
from app.explorer import Explorer
from app.ui import build_demo
from diffdet.config import TINY
from diffdet.model import build_model
from diffdet.weights import save_checkpoint

DEGENERATE = {
    "one_stage": dict(num_stages=1),
    "one_class": dict(class_names=("mug",)),
    "three_proposals": dict(num_proposals=3),
    "no_heatmap": dict(use_heatmap=False),
    "all_at_once": dict(num_stages=1, class_names=("mug",), num_proposals=2, use_heatmap=False),
}
SAMPLER = dict(proposals=None, steps=2, eta=0.0, seed=0, renewal=True, renewal_threshold=0.5, ensemble=True,
               nms=True, nms_iou=0.5, heatmap_init=0.0)
DISPLAY = dict(score_threshold=0.0, classes=None, show_labels=True, show_scores=True, line_width=2, stage=0,
               show_gt=True, show_tracks=True)
VIEWS = dict(min_radius=4, rho=0.5, heat_class="max over classes", heat_mode="side by side",
             target_class="max over classes")


@pytest.fixture(scope="module", params=sorted(DEGENERATE))
def degenerate(request, tmp_path_factory) -> tuple[str, Explorer]:
    root = tmp_path_factory.mktemp(request.param)
    checkpoints, examples = root / "checkpoints", root / "examples"
    checkpoints.mkdir()
    examples.mkdir()
    torch.manual_seed(0)
    cfg = TINY.replace(**DEGENERATE[request.param])
    save_checkpoint(build_model(cfg), checkpoints / "model.safetensors", dtype=torch.float16)
    support.write_image(examples / "scene.jpg", support.make_image(), fmt="JPEG")
    return request.param, Explorer(checkpoints, examples, output_dir=root / "work")


def test_the_app_builds_and_hides_what_has_no_choice(degenerate) -> None:
    name, explorer = degenerate
    cfg = TINY.replace(**DEGENERATE[name])
    demo = build_demo(explorer)  # a one-stage model used to fail here: "Slider minimum must be less than maximum"
    by_id = {c.elem_id: c for c in demo.blocks.values() if getattr(c, "elem_id", None)}
    assert by_id["stage"].visible is (cfg.num_stages > 1)
    assert by_id["heatmap-init"].visible is cfg.use_heatmap and by_id["heatmap-b"].visible is cfg.use_heatmap
    assert by_id["stage"].minimum < by_id["stage"].maximum
    info = explorer.checkpoint_info("model.safetensors", None)
    assert info[2]["visible"] is (cfg.num_stages > 1) and info[2]["maximum"] > 1
    assert info[9]["visible"] is (cfg.num_classes > 1) and info[4]["visible"] is cfg.use_heatmap


def test_a_run_draws_every_view(degenerate) -> None:
    name, explorer = degenerate
    cfg = TINY.replace(**DEGENERATE[name])
    image = str(explorer.example_paths()[0])
    out = explorer.detect(image, None, True, "model.safetensors", None, **SAMPLER, **DISPLAY, **VIEWS)
    assert f"{cfg.num_proposals} proposals" in out[0]
    figures = [out[i] for i in (1, 2, 3, 4, 5, 11)]
    assert all(isinstance(f, go.Figure) for f in figures)
    assert len(out[1].layout.sliders[0].steps) == 2 * 2 + 1
    redrawn = explorer.render(out[9], image, None, True, *DISPLAY.values(), 0)
    assert redrawn[1].layout.sliders[0].active == 0
    api, _ = explorer.predict_api(image, "model.safetensors", 1, 0, None, 1.0, 0.0, 0.0)
    assert all(d["class"] in cfg.class_names for d in api["detections"])
    assert np.isfinite([d["score"] for d in api["detections"]]).all()
