"""The handlers (app.explorer.Explorer and the views' mixins) called directly, on a random-init tiny checkpoint and tiny images (no browser, no server)."""
from __future__ import annotations

import base64
import json
import shutil
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd
import plotly.graph_objects as go

import pytest
import torch

import test_app_support as support
from test_app_support import CHECKPOINT_NAME, app_env  # noqa: F401  (fixture)
from gradio.context import LocalContext

from app.controls import MAX_CLASSES_OPTION, Display, heatmap_grid, min_radius_values, rho_values
from app.explorer import Explorer
from app.views.target import TargetRequest
from diffdet.config import TINY
from diffdet.heatmap import synthesize_heatmap
from diffdet.trajectory import Trajectory

SAMPLER = dict(proposals=20, steps=2, eta=1.0, seed=0, renewal=True, renewal_threshold=0.5, ensemble=True, nms=True,
               nms_iou=0.5, heatmap_init=0.0)
DISPLAY = dict(score_threshold=0.0, classes=None, show_labels=True, show_scores=True, line_width=2, stage=0,
               show_gt=True, show_tracks=True)
VIEWS = dict(min_radius=4, rho=0.5, heat_class=MAX_CLASSES_OPTION, heat_mode="side by side",
             target_class=MAX_CLASSES_OPTION)


@pytest.fixture(scope="module")
def explorer(app_env: support.AppEnv) -> Explorer:  # noqa: F811
    return Explorer(app_env.checkpoint_dir, app_env.examples_dir, output_dir=app_env.work_dir / "handlers")


@pytest.fixture(scope="module")
def example(app_env: support.AppEnv) -> str:  # noqa: F811
    return str(app_env.examples_dir / "scene_00.jpg")


@pytest.fixture(scope="module")
def run(explorer: Explorer, example: str) -> tuple:
    return explorer.detect(example, None, True, CHECKPOINT_NAME, None, **SAMPLER, **DISPLAY, **VIEWS)


def detect(explorer: Explorer, image: str | None, gt_file: str | None = None, **changes) -> tuple:
    args = {**SAMPLER, **DISPLAY, **VIEWS, **changes}
    use_example_gt = args.pop("use_example_gt", True)
    checkpoint = args.pop("checkpoint", CHECKPOINT_NAME)
    upload = args.pop("upload", None)
    return explorer.detect(image, gt_file, use_example_gt, checkpoint, upload, **args)


def test_detect_builds_every_view(run: tuple) -> None:
    status, denoise, stats, heat, target, results, table, metrics, downloads, stored, profile, converge = run
    assert "detection(s)" in status and "2 DDIM step(s)" in status and "ground truth: example scene_00.jpg" in status
    for fig in (denoise, stats, heat, target, results, converge):
        assert isinstance(fig, go.Figure)
    assert len(denoise.layout.sliders[0].steps) == 2 * 2 + 1
    assert isinstance(table.data if hasattr(table, "data") else table, pd.DataFrame)
    assert "true positive" in metrics and "COCO AP" in metrics
    names = sorted(Path(p).name for p in downloads)
    assert names == ["detections_coco_scene_00.json", "trajectory_scene_00.json", "trajectory_scene_00.npz"]
    coco = json.loads(Path(downloads[0]).read_text())
    assert coco["categories"][0]["name"] == TINY.class_names[0] and coco["images"][0]["width"] == 128
    traj_json = json.loads(Path(downloads[1]).read_text())
    assert len(traj_json["boxes_xyxy"]) == 2 and traj_json["image_size_hw"] == [96, 128]
    assert Trajectory.load_npz(stored).num_steps == 2
    assert [c[0] for c in profile["choices"]][0].startswith("#0 master_chef_can")


def test_same_seed_is_cached_and_identical(explorer: Explorer, example: str, run: tuple) -> None:
    again = detect(explorer, example)
    assert "cached result" in again[0]
    np.testing.assert_array_equal(Trajectory.load_npz(again[9]).boxes_xyxy, Trajectory.load_npz(run[9]).boxes_xyxy)
    other = detect(explorer, example, seed=5)
    assert not np.array_equal(Trajectory.load_npz(other[9]).boxes_in_xyxy, Trajectory.load_npz(run[9]).boxes_in_xyxy)


def test_without_image_the_status_asks_for_one(explorer: Explorer) -> None:
    out = detect(explorer, None)
    assert "Upload an image" in out[0]


@pytest.mark.parametrize("name", ["zero_byte", "not_image", "corrupt", "bomb", "oversized"])
def test_bad_images_raise_a_user_error(explorer: Explorer, app_env: support.AppEnv, name: str) -> None:  # noqa: F811
    path, message = support.bad_uploads(app_env.work_dir / "bad")[name]
    with pytest.raises(gr.Error) as info:
        detect(explorer, str(path))
    assert message in info.value.message and "Traceback" not in info.value.message


def test_odd_images_run(explorer: Explorer, app_env: support.AppEnv) -> None:  # noqa: F811
    for name, path in support.odd_but_valid_uploads(app_env.work_dir / "odd").items():
        out = detect(explorer, str(path), steps=1)
        assert "detection(s)" in out[0], name


def test_bad_settings_and_checkpoints_raise_user_errors(explorer: Explorer, example: str,
                                                        app_env: support.AppEnv) -> None:  # noqa: F811
    with pytest.raises(gr.Error, match="DDIM steps must be between"):
        detect(explorer, example, steps=500)
    with pytest.raises(gr.Error, match="eta must be a number"):
        detect(explorer, example, eta="lots")
    with pytest.raises(gr.Error, match="Unknown checkpoint"):
        detect(explorer, example, checkpoint="../../etc/passwd")
    junk = app_env.work_dir / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(gr.Error) as info:
        detect(explorer, example, upload=str(junk))
    assert "junk.safetensors" in info.value.message and str(app_env.work_dir) not in info.value.message


def test_mis_shaped_checkpoint_is_refused(explorer: Explorer, example: str, app_env: support.AppEnv) -> None:  # noqa
    from diffdet.model import build_model
    from diffdet.weights import save_checkpoint

    model = build_model(TINY.replace(num_stages=1))
    path = app_env.work_dir / "other.safetensors"
    save_checkpoint(model, path, dtype=torch.float16)
    meta_cfg = TINY.replace(num_stages=2).to_json()
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(path), metadata={"format": "diffdet-explorer/1", "config": meta_cfg})
    with pytest.raises(gr.Error, match="does not fit the model"):
        detect(explorer, example, upload=str(path))


def test_bad_ground_truth_file_warns_and_the_run_goes_on(explorer: Explorer, example: str,
                                                         app_env: support.AppEnv) -> None:  # noqa: F811
    bad = app_env.work_dir / "bad_gt.json"
    bad.write_text("{oops")
    out = detect(explorer, example, gt_file=str(bad))
    assert "Ground truth not used" in out[0] and "not valid JSON" in out[0]
    assert "No ground truth" in out[7]


def test_uploaded_coco_ground_truth_scores_the_run(explorer: Explorer, example: str,
                                                   app_env: support.AppEnv) -> None:  # noqa: F811
    coco = {"images": [{"id": 1, "file_name": "scene_00.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [70, 30, 48, 56]}],
            "categories": [{"id": 9, "name": "mug"}]}
    path = app_env.work_dir / "coco_gt.json"
    path.write_text(json.dumps(coco))
    out = detect(explorer, example, gt_file=str(path))
    assert "coco_gt.json (1 boxes)" in out[0]
    assert "of 1 ground-truth box(es)" in out[7]
    no_gt = detect(explorer, example, use_example_gt=False)
    assert "No ground truth" in no_gt[7]


def test_render_redraws_without_sampling(explorer: Explorer, example: str, run: tuple) -> None:
    status, denoise, stats, results, table, metrics, converge = explorer.render(
        run[9], example, None, True, 0.0, [TINY.class_names[0]], False, False, 3, 1, False, False, 2)
    assert denoise.layout.sliders[0].active == 2  # the slider stays where the browser said it was
    assert f"1 of {len(TINY.class_names)} classes shown" in status and "renewal on" in status
    traces = [t for p in range(len(denoise.layout.sliders[0].steps)) for t in support.traces_at(denoise, p)]
    assert "stage 1/4" in [t for t in traces if t["name"] == "boxes"][0]["hovertemplate"]
    drawn = {t["name"] for t in traces if t.get("mode") == "lines" and t["name"] in TINY.class_names}
    assert drawn <= {TINY.class_names[0]}
    assert not [t for t in traces if t["name"] in ("labels", "centre tracks", "ground truth")]
    assert all(explorer.render(None, example, None, True, *DISPLAY.values())[i] is not None for i in range(7))


def test_target_follows_rho_and_matches_the_core_synthesis(explorer: Explorer, example: str, run: tuple) -> None:
    fig_a = explorer.render_target(example, None, True, run[9], CHECKPOINT_NAME, None, 1.0, 0.3, MAX_CLASSES_OPTION,
                                   1, 0.3)
    fig_b = explorer.render_target(example, None, True, run[9], CHECKPOINT_NAME, None, 1.0, 0.9, MAX_CLASSES_OPTION,
                                   1, 0.3)
    z_a = np.asarray([t for t in fig_a.data if t.name == "target"][0].z, np.float64) / 255
    z_b = np.asarray([t for t in fig_b.data if t.name == "target"][0].z, np.float64) / 255
    assert z_b.sum() > z_a.sum()  # a larger rho spreads each gaussian
    traj = Trajectory.load_npz(run[9])
    boxes = torch.tensor([[20, 16, 60, 56], [70, 30, 118, 86]], dtype=torch.float32)
    expected = synthesize_heatmap(boxes, torch.tensor([0, 8]), 10, traj.heatmap.shape[1:], traj.heatmap_stride,
                                  1.0, 0.9).numpy()
    np.testing.assert_allclose(z_b, expected.max(0), atol=0.5 / 255 + 1e-6)  # max over classes
    fig_mug = explorer.render_target(example, None, True, run[9], CHECKPOINT_NAME, None, 1.0, 0.9, "mug", 1, 0.3)
    z_mug = np.asarray([t for t in fig_mug.data if t.name == "target"][0].z, np.float64) / 255
    np.testing.assert_allclose(z_mug, expected[8], atol=0.5 / 255 + 1e-6)  # one class
    profile = [t for t in fig_mug.data if t.name == "profile"][0]
    row = int(((30 + 86) / 2) // traj.heatmap_stride)
    np.testing.assert_allclose(np.asarray(profile.y), expected[8, row].round(4), atol=1e-4)
    # a box of another class than the one shown: the profile is the shown map's row (a trial saw the other class's
    # gaussian drawn along a row where the map was empty)
    fig_other = explorer.render_target(example, None, True, run[9], CHECKPOINT_NAME, None, 1.0, 0.9, "mug", 0, 0.3)
    profile = [t for t in fig_other.data if t.name == "profile"][0]
    row = int(((16 + 56) / 2) // traj.heatmap_stride)
    np.testing.assert_allclose(np.asarray(profile.y), expected[8, row].round(4), atol=1e-4)
    # picking a class moves the profile to that class's box when it was on another class's (a trial saw the mug
    # shown and the profile left on another object); on a box of the class, or with every class shown, it stays
    args = (example, None, True, run[9], CHECKPOINT_NAME, None, 1.0, 0.9)
    fig_follow, box = explorer.render_target_class(*args, "mug", 0, 0.3)
    assert box == gr.update(value=1)
    np.testing.assert_allclose(np.asarray([t for t in fig_follow.data if t.name == "profile"][0].y),
                               expected[8, int(((30 + 86) / 2) // traj.heatmap_stride)].round(4), atol=1e-4)
    assert explorer.render_target_class(*args, "mug", 1, 0.3)[1] == gr.skip()
    assert explorer.render_target_class(*args, MAX_CLASSES_OPTION, 0, 0.3)[1] == gr.skip()
    assert explorer.render_target_class(*args, "cracker_box", 1, 0.3)[1] == gr.skip()  # no box of that class


def _decode_map(text: str, shape: list[int]) -> np.ndarray:
    """Python's inverse of ``encode_map`` (the page's ``dd.inflateMap``): inflate, then undo the y and x differences."""
    delta = np.frombuffer(zlib.decompress(base64.b64decode(text)), np.uint8).reshape(shape).astype(np.int64)
    return (np.cumsum(np.cumsum(delta, axis=0), axis=1) % 256).astype(np.uint8)


def test_slider_frames_are_the_figures_the_server_draws_at_each_position(explorer: Explorer, example: str,
                                                                         run: tuple) -> None:
    args = (example, None, True, run[9], CHECKPOINT_NAME, None)
    plain = explorer.render_target(*args, 1.0, 0.5, MAX_CLASSES_OPTION, 1, 0.3)
    assert "frames" not in (plain.layout.meta or {})  # the API's figure carries none
    opened = explorer.render_target_opened(*args, 1.0, 0.5, MAX_CLASSES_OPTION, 1, 0.3)
    frames = opened.layout.meta["frames"]
    assert opened.layout.meta["params"] == {"min_radius": 1.0, "rho": 0.5}
    assert frames["rho"]["values"] == rho_values() and frames["rho"]["held"] == {"min_radius": 1.0}
    assert frames["min_radius"]["values"] == min_radius_values() and frames["min_radius"]["held"] == {"rho": 0.5}
    for slider, k in (("rho", 0), ("rho", 6), ("rho", 30), ("min_radius", 0), ("min_radius", 7), ("min_radius", 31)):
        F = frames[slider]
        value = F["values"][k]
        min_radius, rho = (1.0, value) if slider == "rho" else (value, 0.5)
        figure = explorer.render_target(*args, min_radius, rho, MAX_CLASSES_OPTION, 1, 0.3)
        trace = {t.name: t for t in figure.data}
        np.testing.assert_array_equal(_decode_map(F["z"][k], F["shape"]), np.asarray(trace["target"].z))
        assert F["title"][k] == figure.layout.title.text
        radii = np.frombuffer(base64.b64decode(F["radii"][k]), "<f4")
        np.testing.assert_allclose([row[1] for row in trace["centres"].customdata], radii, rtol=1e-6)
        np.testing.assert_array_equal(np.frombuffer(base64.b64decode(F["profile"][k]), "<f4"),
                                      np.asarray(trace["profile"].y, np.float32))
        r = radii[F["box"]] * F["stride"]
        assert [s.x0 for s in figure.layout.shapes] == pytest.approx([F["box_cx"] - r, F["box_cx"] + r])


class _Session:
    def __init__(self, name: str) -> None:
        self.session_hash = name


def test_a_target_request_overtaken_by_a_newer_one_sends_nothing(explorer: Explorer, example: str,
                                                                 run: tuple, monkeypatch) -> None:
    """Gradio shows whichever target figure answers last: a slow request (rho frames) must not cover the figure of a
    quicker one sent after it."""
    token = LocalContext.request.set(_Session("overtaken"))
    try:
        args = (example, None, True, run[9], CHECKPOINT_NAME, None, 1.0, 0.5, MAX_CLASSES_OPTION, 1, 0.3)
        original = explorer._target

        def overtaken(*a, **k):  # a newer request of this session comes while this one computes
            TargetRequest(explorer, {"newer": True})
            return original(*a, **k)

        monkeypatch.setattr(explorer, "_target", overtaken)
        assert isinstance(explorer.render_target_rho(*args), dict)  # gr.skip(): nothing sent
        monkeypatch.setattr(explorer, "_target", original)
        assert list(explorer.render_target_rho(*args).layout.meta["frames"]) == ["rho"]
        # a move the page drew from these frames sends nothing; drawn from another figure's frames (here: another
        # min_radius was on its way), the figure comes
        drawn = (*args[:7], 0.55, *args[8:])
        assert isinstance(explorer.render_target_rho(*drawn, True), dict)
        other = (*args[:6], 2.0, 0.55, *args[8:])
        assert "rho" in explorer.render_target_rho(*other, True).layout.meta["frames"]
        # min_radius frames were not sent with that figure: a min_radius move said drawn is drawn by the server
        assert "min_radius" in explorer.render_target_min_radius(*(*args[:6], 2.5, 0.55, *args[8:]), True) \
            .layout.meta["frames"]
    finally:
        LocalContext.request.reset(token)


def test_target_works_before_any_run(explorer: Explorer, example: str) -> None:
    fig, update = explorer.target_boxes_update(example, None, True, None, CHECKPOINT_NAME, None, 4, 0.5,
                                               "mug", 0.3)
    heat = [t for t in fig.data if t.name == "target"][0]
    grid, stride = heatmap_grid(TINY, (96, 128))
    assert np.asarray(heat.z).shape == grid and heat.dx == pytest.approx(stride)
    assert len(update["choices"]) == 2
    empty = explorer.render_target(example, None, False, None, CHECKPOINT_NAME, None, 4, 0.5, None, None, 0.3)
    assert "No boxes" in json.dumps(empty.to_dict())


def test_heatmap_view_modes(explorer: Explorer, example: str, run: tuple) -> None:
    overlay = explorer.render_heatmap(run[9], example, None, True, "mug", "overlay on image", 4, 0.5, 0.3)
    assert overlay.data[0].type == "image" and overlay.layout.updatemenus
    side = explorer.render_heatmap(run[9], example, None, True, MAX_CLASSES_OPTION, "side by side", 4, 0.5, 0.3)
    assert [t.name for t in side.data if t.type == "heatmap"] == ["predicted", "target", "difference"]


def test_checkpoint_info_updates_the_controls(explorer: Explorer) -> None:
    (info, classes, stage, proposals, heat, heat_class, target_class, min_radius, rho, classes_box,
     heat_b) = explorer.checkpoint_info(CHECKPOINT_NAME, None)
    assert "efficientnet_lite0" in info and "10 classes" in info
    assert classes["choices"] == list(TINY.class_names) and stage["maximum"] == TINY.num_stages
    assert stage["visible"] is True and classes_box["visible"] is True
    assert "value" not in proposals and heat["visible"] is True and heat_b["visible"] is True
    assert min_radius["value"] == TINY.min_radius and rho["value"] == TINY.rho
    bad = explorer.checkpoint_info("missing.safetensors", None)
    assert "Unknown checkpoint" in bad[0]


def test_checkpoint_dropdown_sees_files_added_after_start(app_env: support.AppEnv, tmp_path) -> None:  # noqa: F811
    folder = tmp_path / "ckpts"
    folder.mkdir()
    shutil.copy(app_env.checkpoint_dir / CHECKPOINT_NAME, folder / CHECKPOINT_NAME)
    explorer = Explorer(folder, app_env.examples_dir)
    assert explorer.checkpoint_dropdown(CHECKPOINT_NAME)["choices"] == [CHECKPOINT_NAME]
    shutil.copy(folder / CHECKPOINT_NAME, folder / "another.safetensors")
    update = explorer.checkpoint_dropdown("another.safetensors")
    assert update["choices"] == ["another.safetensors", CHECKPOINT_NAME] and update["value"] == "another.safetensors"
    (folder / "another.safetensors").unlink()
    assert explorer.checkpoint_dropdown("another.safetensors")["value"] == explorer.default_checkpoint()


def test_training_curves(explorer: Explorer, app_env: support.AppEnv) -> None:  # noqa: F811
    fig, summary = explorer.training(None, CHECKPOINT_NAME)
    assert "diffdet_tiny_props_metrics.jsonl" in summary and "best AP 50.0 at iteration 500" in summary
    assert {"AP", "AP50", "loss"} <= {t.name for t in fig.data}
    empty = Explorer(app_env.work_dir / "no_checkpoints", app_env.examples_dir)
    fig, summary = empty.training(None, None)
    assert "No metrics" in summary
    with pytest.raises(gr.Error, match="iter"):
        bad = app_env.work_dir / "bad_metrics.jsonl"
        bad.write_text("hello\n")
        explorer.training(str(bad), CHECKPOINT_NAME)


def test_compare(explorer: Explorer, example: str) -> None:
    fig, summary = explorer.compare(example, None, True, CHECKPOINT_NAME, None, *SAMPLER.values(),
                                    *DISPLAY.values(), 3, 1, 0.5, 0.0, False)
    assert len(fig.layout.sliders[0].steps) == 5
    assert "seed 0, 2 step(s)" in summary and "seed 3, 1 step(s), eta 0.5" in summary and "renewal off" in summary


def test_predict_api(explorer: Explorer, example: str) -> None:
    result, traj_path = explorer.predict_api(example, CHECKPOINT_NAME, 2, 0, 20, 1.0, 0.0, 0.0)
    assert result["image_size_hw"] == [96, 128] and result["class_names"] == list(TINY.class_names)
    assert len(result["detections"]) > 0
    det = result["detections"][0]
    assert set(det) == {"class", "label", "score", "box_xyxy", "step"}
    assert json.loads(Path(traj_path).read_text())["times"]


def test_display_controls_are_checked() -> None:
    view = Display.from_controls(0.4, ["mug"], True, False, 3, 2, True, False).view(TINY.class_names, 4)
    assert view.classes_shown == frozenset({8}) and view.stage == 1 and view.score_threshold == 0.4
    assert Display.from_controls(None, None, None, None, None, None, None, None).view(TINY.class_names, 4).stage == -1


def test_old_outputs_are_pruned(app_env: support.AppEnv) -> None:  # noqa: F811
    ex = Explorer(app_env.checkpoint_dir, app_env.examples_dir, output_dir=app_env.work_dir / "prune",
                  keep_outputs_s=0.0)
    first = ex._new_output_folder()
    (first / "x").write_text("x")
    import os
    os.utime(first, (0, 0))
    ex._new_output_folder()
    assert not first.exists()


def test_without_any_checkpoint_the_app_builds_and_explains(app_env: support.AppEnv, example: str) -> None:  # noqa
    from app.ui import build_demo

    empty = Explorer(app_env.work_dir / "no_ckpt", app_env.examples_dir, output_dir=app_env.work_dir / "no_ckpt_out")
    demo = build_demo(empty)
    assert demo is not None and empty.default_checkpoint() is None
    with pytest.raises(gr.Error, match="No checkpoint is available"):
        detect(empty, example, checkpoint=None)
    assert "No checkpoint" in empty.checkpoint_info(None, None)[0]


def test_uploaded_checkpoint_asking_for_huge_inputs_is_refused(explorer: Explorer, example: str,
                                                               app_env: support.AppEnv) -> None:  # noqa: F811
    from diffdet.model import build_model
    from diffdet.weights import save_checkpoint

    path = app_env.work_dir / "huge.safetensors"
    save_checkpoint(build_model(TINY.replace(min_size_test=3000, max_size_test=4000)), path, dtype=torch.float16)
    with pytest.raises(gr.Error, match="at most 1333 pixels"):
        detect(explorer, example, upload=str(path))


def test_image_change_explains_instead_of_failing(explorer: Explorer, app_env: support.AppEnv) -> None:  # noqa
    path, message = support.bad_uploads(app_env.work_dir / "explain")["not_image"]
    args = {**SAMPLER, **DISPLAY, **VIEWS}
    out = explorer.detect_or_explain(str(path), None, True, CHECKPOINT_NAME, None, *args.values())
    assert "**Cannot run:**" in out[0] and message in out[0] and "previous run" in out[0]
    # every view keeps what it showed (the previous run) instead of an error badge
    assert len(out) == 12 and all(isinstance(v, type(gr.skip())) and v == gr.skip() for v in out[1:])


def test_a_failed_detect_keeps_the_previous_views(explorer: Explorer, example: str) -> None:
    args = {**SAMPLER, **DISPLAY, **VIEWS, "steps": 10_000}
    out = explorer.detect_or_explain(example, None, True, CHECKPOINT_NAME, None, *args.values())
    assert "DDIM steps must be between" in out[0] and all(v == gr.skip() for v in out[1:])


def test_a_shared_link_sets_image_controls_and_position(explorer: Explorer) -> None:
    from types import SimpleNamespace

    link = SimpleNamespace(query_params={"example": "scene_01.jpg", "steps": "7", "eta": "0.5", "renewal": "1",
                                         "proposals": "30", "seed": "3", "threshold": "0.6", "pos": "4", "lw": "3.5",
                                         "labels": "0", "scores": "1", "gt": "0", "tracks": "0", "stage": "2"})
    (image, steps, eta, renewal, proposals, seed, threshold, pos, lw, labels, scores, gt, tracks,
     stage) = explorer.from_url(link)
    assert image.endswith("scene_01.jpg") and steps["value"] == 7 and eta["value"] == 0.5
    assert renewal["value"] is True and proposals["value"] == 30 and seed["value"] == 3
    assert threshold["value"] == 0.6 and pos["value"] == 4
    # the display settings too
    assert lw["value"] == 3.5 and labels["value"] is False and scores["value"] is True
    assert gt["value"] is False and tracks["value"] is False and stage["value"] == 2
    # a broken link is ignored, never an error; an image that is none of the examples is said so
    bad = SimpleNamespace(query_params={"example": "../../etc/passwd", "steps": "999", "eta": "x", "pos": "-1",
                                        "lw": "99", "labels": "yes", "stage": "99"})
    with pytest.warns(UserWarning, match="not one of the examples"):
        image, steps, eta, *_, pos, lw, labels, _, _, _, stage = explorer.from_url(bad)
    assert image.endswith("scene_00.jpg") and "value" not in steps and "value" not in eta and "value" not in pos
    assert "value" not in lw and "value" not in labels and "value" not in stage
    assert explorer.from_url(None)[0].endswith("scene_00.jpg")


def test_the_address_names_an_example_only_for_an_examples_bytes(explorer: Explorer, example: str,
                                                                   tmp_path: Path) -> None:
    renamed = tmp_path / "my_photo.jpg"  # an example's bytes under another name: still that example
    renamed.write_bytes(Path(example).read_bytes())
    assert explorer.url_example(example) == Path(example).name == explorer.url_example(str(renamed))
    own = tmp_path / "scene_03.jpg"  # an image of one's own named like an example: not that example
    own.write_bytes(Path(example).read_bytes()[:-100] + bytes(100))
    assert explorer.url_example(str(own)) == "" and explorer.url_example(None) == ""


def test_app_runs_class_agnostic_nms(explorer: Explorer) -> None:
    from app.controls import APP_AGNOSTIC_NMS
    from diffdet.config import get_preset

    options = explorer.sampler_options(get_preset("tiny"), 20, 2, 1.0, True, 0.5, True, True, 0.5, 0.0)
    assert APP_AGNOSTIC_NMS and options.agnostic_nms  # measured to raise precision at the same AP


class RecordingProgress(gr.Progress):
    """A gr.Progress that records what the handler tells it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __call__(self, progress, desc=None, total=None, unit="steps", _tqdm=None):  # noqa: ANN001
        self.calls.append((progress, desc, unit))


def test_progress_is_reported_per_ddim_step_with_the_time_left(explorer: Explorer, example: str) -> None:
    import inspect

    # Gradio passes its tracker to the page's detect handler: a parameter defaulting to gr.Progress(), right after
    # the slider position (the last of the page's inputs).
    names = list(inspect.signature(explorer.detect_or_explain).parameters)
    assert names[-2:] == ["position", "progress"]
    assert isinstance(inspect.signature(explorer.detect_or_explain).parameters["progress"].default, gr.Progress)
    progress = RecordingProgress()
    args = {**SAMPLER, **DISPLAY, **VIEWS, "steps": 5, "seed": 4242}  # a fresh run, not a cache hit
    out = explorer.detect_or_explain(example, None, True, CHECKPOINT_NAME, None, *args.values(), None, progress)
    assert "detection(s)" in out[0]
    assert [c[0] for c in progress.calls] == [(k, 5) for k in range(1, 6)]  # one report per DDIM step
    assert all(c[1].startswith(f"DDIM step {k}/5") for k, c in enumerate(progress.calls, 1))
    # no estimate after the first step (it carries the backbone), then the measured time per step x steps left
    assert "left" not in progress.calls[0][1]
    assert all("s left" in c[1] for c in progress.calls[1:-1]) and "drawing the views" in progress.calls[-1][1]
    # (the estimates themselves: test_time_left_is_the_measured_time_per_step_times_the_steps_left; here a step
    # of the tiny model takes a few ms, below the 0.1 s the text shows, so comparing them was flaky)
    # a cache hit runs no step and reports none
    again = RecordingProgress()
    explorer.detect_or_explain(example, None, True, CHECKPOINT_NAME, None, *args.values(), None, again)
    assert again.calls == []


def test_time_left_is_the_measured_time_per_step_times_the_steps_left(monkeypatch: pytest.MonkeyPatch) -> None:
    import app.explorer as explorer_module

    clock = iter([10.0, 12.0, 13.0, 13.5, 14.0])  # steps 2-5 take 2, 1, 0.5 and 0.5 s (step 1 carries the backbone)
    monkeypatch.setattr(explorer_module.time, "perf_counter", lambda: next(clock))
    progress = RecordingProgress()
    on_step = explorer_module.step_reporter(progress)
    for done in range(1, 6):
        on_step(done, 5)
    assert [c[1] for c in progress.calls] == [
        "DDIM step 1/5",  # no estimate from the first step alone
        "DDIM step 2/5 · about 6.0 s left",  # 2 s per step so far x 3 steps left
        "DDIM step 3/5 · about 3.0 s left",  # (3 s / 2 steps) x 2
        "DDIM step 4/5 · about 1.2 s left",  # (3.5 s / 3 steps) x 1
        "DDIM step 5/5 · drawing the views"]


def test_a_page_run_repeated_at_once_by_the_same_session_changes_nothing(explorer: Explorer, example: str,
                                                                          tmp_path: Path) -> None:
    # Gradio's Image reports one upload as two changes: a bad upload was run and warned about twice
    from types import SimpleNamespace

    from gradio.context import LocalContext

    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"not an image" * 100)
    args = (str(bad), None, True, CHECKPOINT_NAME, None, *{**SAMPLER, **DISPLAY, **VIEWS}.values())
    token = LocalContext.request.set(SimpleNamespace(session_hash="session-a"))
    try:
        with pytest.warns(UserWarning, match="not an image"):
            first = explorer.detect_or_explain(*args)
        assert "Cannot run" in first[0]
        again = explorer.detect_or_explain(*args)  # the second report of the same upload: nothing, no warning
        assert all(v == gr.skip() for v in again)
        LocalContext.request.set(SimpleNamespace(session_hash="session-b"))  # another visitor is answered
        with pytest.warns(UserWarning, match="not an image"):
            assert "Cannot run" in explorer.detect_or_explain(*args)[0]
    finally:
        LocalContext.request.reset(token)
    with pytest.warns(UserWarning, match="not an image"):  # outside a page session (no request): it runs
        assert "Cannot run" in explorer.detect_or_explain(*args)[0]
