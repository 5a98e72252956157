"""The views' figure builders (app.plotting, app.views.*) on hand-made trajectories: structure, client-side slider, validity against Plotly's schema."""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest
import torch

import test_app_support as support
from app import plotting as P
from app.views import compare, convergence, denoising, heatmap, results, training
from app.views import target as target_view
from diffdet.heatmap import gaussian_radius, synthesize_heatmap


@pytest.fixture(scope="module")
def image() -> P.ImageSource:
    return P.ImageSource.from_array(support.make_image())


GT = np.array([[20, 16, 60, 56], [70, 30, 118, 86]], np.float32)


def shown(fig) -> list[list[dict]]:
    """Per slider position, the traces the browser shows there."""
    return [support.traces_at(fig, p) for p in range(len(fig.layout.sliders[0].steps))]


def test_image_source_is_a_jpeg_data_uri_in_original_pixels() -> None:
    big = np.zeros((1000, 3000, 3), np.uint8)
    source = P.ImageSource.from_array(big, max_side=1500)
    assert source.uri.startswith("data:image/jpeg;base64,")
    assert (source.width, source.height) == (3000, 1000) and source.scale == pytest.approx(2.0)
    trace = source.trace()
    assert trace["type"] == "image" and trace["dx"] == pytest.approx(2.0) and "z" not in trace
    with pytest.raises(ValueError):
        P.ImageSource.from_array(np.zeros((4, 4), np.uint8))


def test_rect_path_separates_boxes_with_gaps() -> None:
    xs, ys = P.rect_path(np.array([[0, 1, 2, 3], [4, 5, 6, 7]]))
    assert xs.shape == (12,) and np.isnan(xs[5]) and np.isnan(ys[11])
    assert xs[:5].tolist() == [0, 2, 2, 0, 0] and ys[:5].tolist() == [1, 1, 3, 3, 1]


def test_denoise_figure_has_one_slider_position_per_step_input_output_and_final(image) -> None:
    traj = support.make_trajectory(steps=3, stages=2)
    fig = P.validate_figure(denoising.denoise_figure(traj, image, gt_boxes=GT))
    slider = fig.layout.sliders[0]
    assert len(slider.steps) == 2 * 3 + 1 and slider.active == 6
    assert [s.value for s in slider.steps] == ["1·in", "1·out", "2·in", "2·out", "3·in", "3·out", "final"]
    assert [s.label for s in slider.steps] == ["1", " ", "2", " ", "3", " ", "final"]  # ticks: step numbers
    assert all(s.method == "restyle" for s in slider.steps)
    positions = shown(fig)
    switched = slider.steps[0].args[1]
    assert 0 not in switched  # the image is never restyled
    # Every step restyles the same slot traces with the same attributes, so nothing lingers from the position shown
    # before; the figure holds one set of slots, not one set of traces per position.
    assert all(list(s.args[1]) == list(switched) for s in slider.steps)
    assert len({tuple(sorted(s.args[0])) for s in slider.steps}) == 1
    assert len(fig.data) < sum(len(p) for p in positions)
    assert "visible" not in slider.steps[0].args[0]  # visibility belongs to the legend: hidden layers stay hidden
    # The figure opens at the slider's active position; every position shows something else.
    def drawn(trace: dict) -> bool:  # not a legend-only key, not an empty slot
        x = trace.get("x")
        return x is None or (len(x) > 0 and not (len(x) == 1 and x[0] is None))

    as_opened = [t for t in fig.to_dict()["data"] if t.get("visible", True) is True and drawn(t)]
    assert [t["name"] for t in as_opened] == [t["name"] for t in positions[-1]]
    # Exactly one caption per position, naming it.
    for traces, step in zip(positions, slider.steps):
        captions = [t["text"][0] for t in traces if t["name"] == "caption"]
        assert len(captions) == 1
        expected = "Final detections" if step.value == "final" else f"Step {step.value.split('·')[0]}/3"
        assert expected in captions[0]
    assert len({tuple(t["text"][0] for t in p if t["name"] == "caption") for p in positions}) == len(positions)
    # The image and ground truth are shown at every position; the image travels as a data URI.
    assert fig.data[0].type == "image" and fig.data[0].source.startswith("data:image/jpeg")
    assert all({"image", "ground truth"} <= {t["name"] for t in p} for p in positions)


def test_denoise_slider_steps_restyle_the_boxes_of_their_position(image) -> None:
    traj = support.make_trajectory(steps=2, stages=2)
    fig = denoising.denoise_figure(traj, image, P.ViewOptions(score_threshold=0.0))
    positions = shown(fig)
    # 1·in: the boxes fed to step 1, drawn in grey, with one hover point per proposal.
    inputs = [t for t in positions[0] if t["name"].startswith("inputs: ")]  # one hover trace per kind of box
    ids = np.concatenate([[row[0] for row in t["customdata"]] for t in inputs])
    assert sorted(ids) == list(range(traj.boxes_in_xyxy.shape[1]))
    xs = np.concatenate([np.asarray(t["x"], np.float64) for t in inputs])
    np.testing.assert_allclose(xs, P.box_centres(traj.boxes_in_xyxy[0])[ids, 0], rtol=1e-6)
    assert not [t for t in positions[0] if t["name"] in traj.class_names]
    # 2·out: step 2's last-stage boxes, by class; the hover points sit at their centres, renewal marks are gone
    # (nothing is renewed after the last step) and nothing of 1·out's hover survives.
    hover = [t for t in positions[3] if t["name"] == "boxes"][0]
    np.testing.assert_allclose(hover["x"], P.box_centres(traj.boxes_xyxy[1, -1])[:, 0], rtol=1e-6)
    assert "step 2/2" in hover["hovertemplate"] and "x-thin-open" not in hover["marker"]["symbol"]
    drawn = [t for t in positions[3] if t.get("mode") == "lines" and t["name"] in traj.class_names]
    xs = np.concatenate([np.asarray(t["x"], np.float64) for t in drawn])
    assert np.isfinite(xs).sum() == 5 * traj.boxes_xyxy.shape[2] - 5 * int((P.opacity_level(traj.scores[1, -1]) == 0).sum())
    # final: the detections.
    final = [t for t in positions[-1] if t["name"] == "boxes"][0]
    assert len(final["customdata"]) == len(traj.detections)


def test_denoise_hover_names_class_score_step_stage_box_and_iou(image) -> None:
    traj = support.make_trajectory(steps=2, stages=3)
    ious = {"out0": np.full(12, 0.25), "out1": np.full(12, 0.5), "final": np.full(len(traj.detections), 0.75)}
    fig = denoising.denoise_figure(traj, image, P.ViewOptions(score_threshold=0.0), gt_boxes=GT, gt_ious=ious)
    hovers = [t for p in shown(fig) for t in p if t["name"] == "boxes"]
    assert len(hovers) == 3  # step 1 out, step 2 out, final
    step2 = hovers[1]
    assert "step 2/2" in step2["hovertemplate"] and "stage 3/3" in step2["hovertemplate"]
    row = step2["customdata"][0]
    assert row[0] in traj.class_names and row[3] == "0.50" and isinstance(row[2], int)
    assert "IoU" in hovers[2]["hovertemplate"]


def test_denoise_marks_renewed_and_heatmap_boxes(image) -> None:
    traj = support.make_trajectory(steps=3)
    assert traj.renewed[0].any() and traj.from_heatmap[0].any()
    positions = shown(denoising.denoise_figure(traj, image))
    names = {t["name"] for p in positions for t in p}
    assert {"renewed: fresh noise", "drawn from heatmap peaks", "centre tracks", "low score"} <= names
    hover = [t for t in positions[1] if t["name"] == "boxes"][0]  # step 1's prediction: renewed boxes carry an x
    assert list(hover["marker"]["symbol"]).count("x-thin-open") == int(traj.renewed[0].sum()) > 0
    # The next position (2·in) marks the renewed slots' fresh boxes, dotted.
    fresh = [t for t in positions[2] if t["name"] == "renewed: fresh noise"][0]
    assert fresh["line"]["dash"] == "dot"
    # Play's glide data says which fed-in boxes came from heatmap peaks, so hiding that layer hides them while gliding
    tween = denoising.tween_meta(traj, denoising.ViewOptions())
    peaks = np.frombuffer(base64.b64decode(tween["heatmap"]), np.uint8).reshape(tween["S"], tween["N"])
    assert np.array_equal(peaks.astype(bool), traj.from_heatmap)


def test_class_filter_stage_and_toggles(image) -> None:
    traj = support.make_trajectory()
    fig = denoising.denoise_figure(traj, image, P.ViewOptions(classes_shown=frozenset({0}), show_labels=False,
                                                      show_scores=False, show_tracks=False))
    traces = [t for p in shown(fig) for t in p]
    box_traces = [t for t in traces if t.get("mode") == "lines" and t["name"] in traj.class_names]
    assert box_traces and all(t["name"] == traj.class_names[0] for t in box_traces)
    assert not [t for t in traces if t["name"] in ("labels", "centre tracks")]
    first_stage = shown(denoising.denoise_figure(traj, image, P.ViewOptions(stage=0)))
    assert "stage 1/2" in [t for t in first_stage[1] if t["name"] == "boxes"][0]["hovertemplate"]


def test_opacity_follows_score(image) -> None:
    assert P.opacity_level(np.array([0.0, 0.1, 0.3, 0.6, 0.9])).tolist() == [0, 0, 1, 2, 2]
    traj = support.make_trajectory()
    fig = denoising.denoise_figure(traj, image)
    alphas = {float(t["line"]["color"].split(",")[-1].rstrip(")")) for p in shown(fig) for t in p
              if t.get("mode") == "lines" and t["name"] in traj.class_names and t["line"]["color"].startswith("rgba")}
    assert len(alphas) > 1


def test_hover_points_belong_to_the_layer_of_their_boxes(image) -> None:
    """Hiding a layer hides its boxes' hover points too (a trial saw 50 grey dots stay with "noise boxes" hidden)."""
    traj = support.make_trajectory(steps=3)
    fig = denoising.denoise_figure(traj, image)
    groups = {}
    slider = fig.layout.sliders[0]
    indices = slider.steps[0].args[1]
    for step in slider.steps:  # the names each marker slot takes over the positions
        for k, name, mode in zip(indices, step.args[0]["name"], step.args[0]["mode"]):
            if name and mode == "markers":
                groups[name] = fig.data[k].legendgroup
    assert groups.get("inputs: noise") == "noise" and groups.get("inputs: renewed") == "renewed"
    assert groups.get("inputs: heatmap") == "heatmap" and groups.get("boxes") == "boxes"


def test_preview_data_styles_each_box_as_its_trace_draws_it(image) -> None:
    """The slider's preview layer draws a position's boxes from ``tween_meta``: each prediction's width there is its
    line trace's width, and the final detections are carried too."""
    traj = support.make_trajectory(steps=3)
    view = P.ViewOptions(score_threshold=0.3, line_width=3)
    tween = denoising.tween_meta(traj, view)
    widths = tween["widths"]
    wide = np.frombuffer(base64.b64decode(tween["wide"]), np.uint8).reshape(tween["S"], tween["K"], tween["N"])
    stage = view.stage % traj.num_stages
    seen = set()
    for s in range(tween["S"]):
        boxes, scores, labels = traj.boxes_xyxy[s, stage], traj.scores[s, stage], traj.labels[s, stage]
        traces = denoising._scored_box_traces(boxes, scores, labels, traj.class_names, view, ("x", "y"),
                                              [[0]] * len(scores), "", np.arange(len(scores)))
        for trace in (t for t in traces if t.get("mode") == "lines"):
            xs = np.asarray(trace["x"], np.float32)
            members = [int(np.flatnonzero(np.isclose(boxes[:, 0], x0))[0]) for x0 in xs[0::6]]  # first corners
            # the rule, from the scores: a trace of one class and score level is wide when all of it reaches the
            # threshold; the faint grey trace never is
            rule = trace["name"] != "low score" and scores[members].min() >= view.score_threshold
            assert trace["line"]["width"] == pytest.approx(widths["wide"] if rule else widths["thin"]), s
            for j in members:  # and the preview draws each of its boxes so
                assert bool(wide[s, -1, j]) == rule, (s, j)
            seen.add(bool(rule))
    assert seen == {True, False}  # both widths occur in this run
    final = tween["final"]
    det = traj.detections
    boxes = np.frombuffer(base64.b64decode(final["boxes"]), "<i2").reshape(-1, 4) / 2
    assert final["M"] == len(det) and np.abs(boxes - det.boxes_xyxy).max() <= 0.25
    assert np.array_equal(np.frombuffer(base64.b64decode(final["labels"]), np.uint8), det.labels)


def test_unrecorded_trajectory_is_refused(image) -> None:
    traj = support.make_trajectory()
    traj.boxes_xyxy = None
    with pytest.raises(ValueError, match="record"):
        denoising.denoise_figure(traj, image)
    assert "recorded" in json.dumps(denoising.step_stats_figure(traj, 0.3).to_dict())


def test_compare_figure_scrubs_both_panels_with_one_slider(image) -> None:
    a, b = support.make_trajectory(steps=3), support.make_trajectory(steps=2, seed=1)
    fig = P.validate_figure(compare.compare_figure([a, b], ["A", "B"], image, gt_boxes=GT))
    assert len(fig.layout.sliders[0].steps) == 7
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.matches == "y"
    kinds = ("boxes fed in", "prediction", "Final detections")
    for traces in shown(fig):
        captions = [t["text"][0] for t in traces if t["name"] == "caption"]
        assert len(captions) == 2 and captions[0].startswith("<b>A:") and captions[1].startswith("<b>B:")
        # both panels show the same kind of frame (by fraction alone, A's boxes fed in sat beside B's prediction)
        assert [[k in c for k in kinds] for c in captions[:1]] == [[k in c for k in kinds] for c in captions[1:]]


def test_runs_of_different_lengths_are_aligned_by_kind_of_frame() -> None:
    ten, four = denoising.positions(support.make_trajectory(steps=10)), \
        denoising.positions(support.make_trajectory(steps=4))
    aligned = denoising.aligned_positions([ten, four])
    assert len(aligned) == len(ten) == 21 and all(len(row) == 2 for row in aligned)
    assert [row[0] for row in aligned] == list(range(21))  # the longest run is shown position by position
    assert all(ten[a].kind == four[b].kind for a, b in aligned)
    assert aligned[0] == [0, 0] and aligned[-1] == [20, 8] and aligned[1] == [1, 1]
    # B's step never goes back as the slider moves forward (B repeats a step where A has more), and no frame is skipped
    steps = [four[b].step for _, b in aligned]
    assert steps == sorted(steps) and {b for _, b in aligned} == set(range(9))
    assert denoising.aligned_positions([four, ten])[6] == [2, 6]  # the longer run first or second: the same rule


def test_step_stats(image) -> None:
    traj = support.make_trajectory(steps=3)
    fig = P.validate_figure(denoising.step_stats_figure(traj, 0.3))
    bars = fig.data[0]
    assert list(bars.x) == [1, 2, 3]
    assert list(bars.y) == [(traj.scores[s, -1] >= 0.3).sum() for s in range(3)]
    # the chart says what it counts: each step's predictions before NMS, not the final detections
    assert "before NMS" in bars.name and f"{traj.scores.shape[2]} predicted boxes" in fig.layout.xaxis.title.text
    renewed = [t for t in fig.data if t.name == "renewed after step"]
    assert traj.renewed.any() and list(renewed[0].y) == traj.renewed.sum(axis=1).tolist()
    # a run without renewal has no renewal bars, and no legend entry promising them
    traj.renewed = np.zeros_like(traj.renewed)
    assert not [t for t in denoising.step_stats_figure(traj, 0.3).data if t.name == "renewed after step"]
    # each tooltip names its mean (it said "mean 0.581" for both lines); the axis spans the steps, no empty 0 / N+1,
    # and thins its ticks on a long run (20 upright-impossible labels crowded a phone)
    tips = [t.hovertemplate for t in fig.data if t.type == "scatter"]
    assert any("mean score of all boxes" in t for t in tips) and any("boxes ≥ 0.30" in t for t in tips), tips
    assert list(fig.layout.xaxis.range) == [0.5, 3.5] and fig.layout.xaxis.dtick == 1
    long = denoising.step_stats_figure(support.make_trajectory(steps=20), 0.3)
    assert list(long.layout.xaxis.range) == [0.5, 20.5] and long.layout.xaxis.dtick == 2
    assert all(len(line) <= 40 for line in long.layout.xaxis.title.text.split("<br>"))  # fits a phone


def test_heatmap_views(image) -> None:
    traj = support.make_trajectory()
    target = np.zeros_like(traj.heatmap)
    target[0, 4, 5] = 1.0
    side = P.validate_figure(heatmap.heatmap_figure(traj.heatmap, target, 8.0, image, traj.class_names, boxes_xyxy=GT))
    heat = [t for t in side.data if t.type == "heatmap"]
    assert [t.name for t in heat] == ["predicted", "target", "difference"]
    assert heat[0].dx == 8.0 and heat[0].x0 == 4.0
    np.testing.assert_allclose(np.asarray(heat[2].z), (traj.heatmap.max(0) - target.max(0)).round(3), atol=1e-3)
    assert side.layout.xaxis2.matches == "x" and side.layout.xaxis3.matches == "x"
    one = heatmap.heatmap_figure(traj.heatmap, target, 8.0, image, traj.class_names, class_index=1)
    np.testing.assert_allclose(np.asarray(one.data[0].z), traj.heatmap[1].round(3), atol=1e-3)
    overlay = P.validate_figure(heatmap.heatmap_figure(traj.heatmap, target, 8.0, image, traj.class_names,
                                                 mode="overlay"))
    assert overlay.data[0].type == "image"
    assert [b.label for b in overlay.layout.updatemenus[0].buttons] == ["predicted", "target", "difference"]
    # each button shows its own layer and names it in the title (the title said "target" over every layer)
    heat_ids = [i for i, t in enumerate(overlay.data) if t.type == "heatmap" and t.name != "white wash"]
    wash = [i for i, t in enumerate(overlay.data) if t.name == "white wash"]
    assert overlay.layout.annotations[0].text.startswith("predicted heatmap")
    assert overlay.data[wash[0]].visible is False and list(overlay.layout.sliders[0].steps[0].args[1]) == heat_ids
    for button, heat_id, name in zip(overlay.layout.updatemenus[0].buttons, heat_ids,
                                     ("predicted heatmap", "target from ground truth", "predicted − target")):
        visible, relayout = button.args
        assert [i for i, v in enumerate(visible["visible"]) if v and i in heat_ids] == [heat_id]
        assert relayout["annotations[0].text"].startswith(name)
        # the photo is washed white under the difference only (its see-through zero showed the pink table as red)
        assert visible["visible"][wash[0]] == name.startswith("predicted −")
    only_target = heatmap.heatmap_figure(None, target, 8.0, image, traj.class_names, mode="overlay")
    assert only_target.layout.annotations[0].text.startswith("target from ground truth")
    assert overlay.layout.sliders[0].steps[3].args[0] == {"opacity": 0.3}
    none = P.validate_figure(heatmap.heatmap_figure(None, target, 8.0, image, traj.class_names))
    assert "no heatmap head" in json.dumps(none.to_dict())


def _rgba(colour: str) -> tuple[float, ...]:
    values = [float(v) for v in re.findall(r"[\d.]+", colour)]
    return tuple(values) if len(values) == 4 else (*values, 1.0)


def test_heatmaps_have_one_colour_ramp_in_every_view(image) -> None:
    """A value has one colour in every view: the side-by-side maps are the overlay's ramp laid on white (they were
    viridis while the overlays and the Target tab were red), and the boxes drawn over them are not white."""
    traj = support.make_trajectory()
    target = np.zeros_like(traj.heatmap)
    side = heatmap.heatmap_figure(traj.heatmap, target, 8.0, image, traj.class_names, boxes_xyxy=GT)
    overlay = heatmap.heatmap_figure(traj.heatmap, target, 8.0, image, traj.class_names, mode="overlay")
    labels = np.array([0])
    tgt = synthesize_heatmap(torch.as_tensor(GT[:1]), torch.as_tensor(labels), 3, (12, 16), 8.0, 1.0, 0.5).numpy()
    target_tab = target_view.target_figure(image, GT[:1], labels, support.CLASSES, tgt, 8.0, np.array([1.0]))
    overlay_scales = [[tuple(s) for s in t.colorscale] for t in [*overlay.data, *target_tab.data]
                      if t.type == "heatmap" and t.name in ("predicted", "target")]
    assert len(overlay_scales) == 3 and all(s == overlay_scales[0] for s in overlay_scales)
    for trace in [t for t in side.data if t.name in ("predicted", "target")]:
        assert [v for v, _ in trace.colorscale] == [v for v, _ in overlay_scales[0]]
        for (_, alone), (_, over) in zip(trace.colorscale, overlay_scales[0]):
            *rgb, a = _rgba(over)
            assert _rgba(alone)[:3] == pytest.approx([c * a + 255 * (1 - a) for c in rgb], abs=0.6)
        assert _rgba(trace.colorscale[0][1])[:3] == (255, 255, 255)
    outline = [t for t in side.data if t.name == "boxes"][0]
    assert min(_rgba(outline.line.color)[:3]) < 128
    with pytest.raises(ValueError):
        heatmap.heatmap_figure(traj.heatmap, target, 8.0, image, traj.class_names, mode="3d")


def test_target_figure_draws_radius_circles_and_profile(image) -> None:
    labels = np.array([0, 2])
    boxes_t = torch.as_tensor(GT)
    target = synthesize_heatmap(boxes_t, torch.as_tensor(labels), 3, (12, 16), 8.0, 1.0, 0.5).numpy()
    radii = gaussian_radius(boxes_t, 8.0, 1.0, 0.5).numpy()
    fig = P.validate_figure(target_view.target_figure(image, GT, labels, support.CLASSES, target, 8.0, radii, profile_box=1,
                                            min_radius=1.0, rho=0.5))
    circles = [t for t in fig.data if t.name == "gaussian radius"][0]
    xs = np.asarray(circles.x, float)
    first = xs[: np.flatnonzero(np.isnan(xs))[0]]
    assert first.max() - first.min() == pytest.approx(2 * radii[0] * 8.0, rel=1e-3)
    profile = [t for t in fig.data if t.name == "profile"][0]
    row = int((GT[1, 1] + GT[1, 3]) / 2 // 8)
    np.testing.assert_allclose(np.asarray(profile.y), target.max(0)[row].round(4), atol=1e-4)  # the map shown
    assert max(profile.y) == pytest.approx(1.0)
    assert fig.layout.xaxis2.matches == "x" and len(fig.layout.shapes) == 2


def test_results_figure_colours_tp_fp_fn(image) -> None:
    boxes = np.array([[20, 16, 60, 56], [0, 0, 10, 10]], np.float32)
    fig = P.validate_figure(results.results_figure(
        image, boxes, np.array([0.9, 0.8]), np.array([0, 0]), support.CLASSES, status=np.array(["TP", "FP"]),
        best_iou=np.array([1.0, 0.0]), gt_boxes=GT, gt_labels=np.array([0, 2]), gt_matched=np.array([True, False])))
    colours = {t.name: t.line.color for t in fig.data if getattr(t, "mode", None) == "lines" and t.x[0] is not None}
    assert colours["true positive"] == P.TP_COLOUR and colours["false positive"] == P.FP_COLOUR
    assert colours["missed"] == P.FN_COLOUR
    plain = P.validate_figure(results.results_figure(image, boxes, np.array([0.9, 0.8]), np.array([0, 1]),
                                               support.CLASSES))
    assert {t.name for t in plain.data if getattr(t, "showlegend", False)} == {"master_chef_can", "cracker_box"}


def test_results_figure_draws_crowd_ignored_detections_apart(image) -> None:
    boxes = np.array([[20, 16, 60, 56], [0, 0, 10, 10]], np.float32)
    fig = P.validate_figure(results.results_figure(
        image, boxes, np.array([0.9, 0.8]), np.array([0, 0]), support.CLASSES, status=np.array(["TP", "ignored"]),
        best_iou=np.array([1.0, 0.0]), gt_boxes=GT, gt_labels=np.array([0, 2]), gt_matched=np.array([True, False])))
    colours = {t.name: t.line.color for t in fig.data if getattr(t, "mode", None) == "lines" and t.x[0] is not None}
    assert colours["on a crowd region (ignored)"] == P.GT_COLOUR and "false positive" not in colours


def test_training_figure() -> None:
    rows = [{"iter": 0, "loss": 2.0, "loss_ce": 1.0, "lr": 1e-4}, {"iter": 100, "loss": 1.0, "loss_ce": 0.5},
            {"iter": 100, "eval": {"AP": 0.4, "AP50": 0.6, "per_class": {"mug": 0.5, "cracker_box": 0.3}}}]
    fig = P.validate_figure(training.training_figure(rows, title="run"))
    names = [t.name for t in fig.data]
    assert {"loss", "loss_ce", "AP", "AP50", "PROPS paper, R-50 with heatmap (real photos)",
            "PROPS paper, R-50 without heatmap (real photos)"} <= set(names)
    ap = [t for t in fig.data if t.name == "AP"][0]
    assert list(ap.y) == [40.0]  # fractions are shown as percentages
    rank = {t.name: t.legendrank for t in fig.data if t.name.startswith("loss")}
    assert rank["loss"] < rank["loss_ce"]  # the total heads the (scrolling) loss legend
    bars = [t for t in fig.data if t.name == "PROPS paper, R-50 with heatmap (real photos)"][0]
    assert list(bars.y) == [training.PAPER_PROPS_AP["mug"][1], training.PAPER_PROPS_AP["cracker_box"][1]]
    # one colour, one meaning across the panels: AP is this run's red (as its per-class bars), no line is the paper's
    lines_ = {t.name: t.line.color for t in fig.data if t.type == "scatter" and t.name.startswith("AP")}
    bars_ = {t.name: t.marker.color for t in fig.data if t.type == "bar"}
    assert lines_["AP"] == bars_["this run, iter 100 (its own validation set)"]
    assert not set(lines_.values()) & {c for n, c in bars_.items() if n.startswith("PROPS paper")}
    empty = training.training_figure([{"iter": 0, "loss": 1.0}])
    assert "no evaluation rows" in json.dumps(empty.to_dict())
    # one evaluation is a point per metric, and the panel says so; two make a curve and no note
    assert [a.text for a in fig.layout.annotations if a.name == "ap"] == [
        "evaluated once, at iteration 100:<br>one point per metric, no curve"]
    two = training.training_figure(rows + [{"iter": 200, "eval": {"AP": 0.5, "AP50": 0.7}}])
    assert not [a for a in two.layout.annotations if a.name == "ap"]
    # the loss axis: decades labelled when the curves span one or more (2, 10, 5, 2, 1, 5, ... was one axis's labels)
    assert fig.layout.yaxis.dtick is None  # 0.5 to 2: within a decade, Plotly's own ticks
    wide = training.training_figure(rows + [{"iter": 200, "loss": 0.05, "loss_ce": 0.01}])
    assert wide.layout.yaxis.dtick == 1 and wide.layout.yaxis.minor.dtick == "D1"


def test_denoising_figure_of_a_realistic_run_stays_small(image) -> None:
    """The denoising view of a realistic run (4 steps, 4 stages, 100 boxes) sends under 2 MB of figure JSON to the
    browser. Its build time is a benchmark figure (bench/bench_app.py), not a test."""
    traj = support.make_trajectory(steps=4, stages=4, proposals=100, classes=tuple(f"c{i}" for i in range(10)))
    text = denoising.denoise_figure(traj, image).to_json()
    assert len(text) < 2_000_000


def test_convergence_curve_follows_the_best_slots_to_their_final_box() -> None:
    traj = support.make_trajectory(steps=4, stages=2, proposals=12)
    curve = convergence.convergence_curve(traj, top=3)
    final_scores = traj.scores[-1, -1]
    assert list(curve["slots"]) == list(np.argsort(-final_scores)[:3])
    assert curve["xt"].shape == (4, 3) and curve["x0"].shape == (4, 3)
    # The x0 prediction of the last step is the final box itself; x_t walks towards it (the fake run drifts).
    np.testing.assert_allclose(curve["x0"][-1], 1.0, atol=1e-6)
    assert curve["mean_xt"][-1] > curve["mean_xt"][0]
    # Where a slot was renewed, its last life starts after the renewal.
    start = convergence.last_life_start(traj)
    for slot in range(12):
        renewed_at = np.flatnonzero(traj.renewed[:, slot])
        assert start[slot] == (renewed_at[-1] + 1 if len(renewed_at) else 0)


def test_convergence_figure_has_toggleable_layers(image) -> None:
    traj = support.make_trajectory(steps=4, stages=2, proposals=12)
    fig = P.validate_figure(convergence.convergence_figure(traj, image, top=5, gt_boxes=GT))
    groups = {t.legendgroup for t in fig.data if t.type == "scatter" and t.showlegend}
    assert {"gt", "xt", "path", "xtcurve", "x0curve"} <= groups
    # every trace of a group that is drawn on the image carries the group, so one legend click hides them all
    xt_traces = [t for t in fig.data if t.name == "noisy box x_t (each step)"]
    assert len(xt_traces) >= 4 and all(t.legendgroup == "xt" for t in xt_traces)
    assert fig.layout.legend.itemclick is not False
    assert len(fig.layout.meta["mean_xt"]) == 4
    # faint early, solid late: opacity and width rise with the step; the legend shows the most visible one
    alpha = [float(t.line.color.rsplit(",", 1)[1].rstrip(")")) for t in xt_traces]
    widths = [t.line.width for t in xt_traces]
    assert alpha == sorted(alpha) and alpha[0] < 0.5 and alpha[-1] >= 0.8 and widths == sorted(widths)
    keyed = [t for t in xt_traces if t.showlegend]
    assert len(keyed) == 1 and keyed[0] is xt_traces[-1]


def test_slider_ticks_stay_readable_at_many_steps(image) -> None:
    traj = support.make_trajectory(steps=30, stages=1, proposals=6)
    labels = [s.label for s in P.validate_figure(denoising.denoise_figure(traj, image)).layout.sliders[0].steps]
    numbered = [v for v in labels if v.strip() and v != "final"]
    assert len(labels) == 61 and 10 <= len(numbered) <= 16 and "1" in numbered and "30" in numbered


def test_placed_labels_never_overlap_and_prefer_high_scores() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, (60, 2)).astype(np.float32)
    boxes = np.concatenate([xy, xy + 40], axis=1)
    scores = rng.uniform(0, 1, 60)
    texts = [f"potted_meat_can {s:.2f}" for s in scores]
    placement = P.placed_labels(boxes, texts, scores, image_width=640, max_labels=15)
    kept = placement.index
    assert 0 < len(kept) <= 15 and int(np.argmax(scores)) in kept
    px = 640 / P.LABEL_DRAWN_WIDTH
    rects = []
    height = (P.LABEL_FONT_PX + 4) * px
    for i, x, y, position in zip(kept, placement.x, placement.y, placement.position):
        width = (len(texts[i]) * P.LABEL_CHAR_PX + 4) * px
        left = x - width if position.endswith("left") else x
        assert x == (boxes[i, 2] if position.endswith("left") else boxes[i, 0])
        inside = position.startswith("bottom")  # drawn inside the box, just under its top edge
        assert y == pytest.approx(boxes[i, 1] + (P.LABEL_BORDER_PX * px if inside else 0))
        top = y if inside else y - height
        assert top >= 0 and inside == (boxes[i, 1] < height)
        rects.append((left, top, left + width, top + height))
    for a in range(len(rects)):
        for b in range(a + 1, len(rects)):
            ra, rb = rects[a], rects[b]
            assert not (ra[0] < rb[2] and rb[0] < ra[2] and ra[1] < rb[3] and rb[1] < ra[3])


def test_a_label_at_the_right_border_is_drawn_from_its_boxs_right_edge() -> None:
    boxes = np.array([[600.0, 100.0, 640.0, 150.0], [10.0, 300.0, 80.0, 350.0]], np.float32)
    texts = ["master_chef_can 0.91", "mug 0.80"]
    placement = P.placed_labels(boxes, texts, np.array([0.91, 0.80]), image_width=640)
    assert placement.index.tolist() == [0, 1]
    assert placement.position == ["top left", "top right"]  # ends at the box's right edge, inside the image
    assert placement.x[1] == 10.0
    # the first ends a few screen pixels inside the border (the last glyph's halo was clipped at the border)
    assert 640.0 - 6 * 640 / P.LABEL_DRAWN_WIDTH < placement.x[0] < 640.0
    inside = P.placed_labels(boxes - [[40, 0, 40, 0], [0, 0, 0, 0]], texts, np.array([0.91, 0.80]), image_width=640)
    assert inside.x[0] == 600.0  # away from the border a label still ends at its box's right edge


def test_a_box_on_the_images_top_edge_is_labelled_inside_it() -> None:
    # the largest object of example scene 1 (the cracker box) touches the top edge: its label used to be dropped
    boxes = np.array([[250.0, 0.0, 460.0, 170.0], [300.0, 4.0, 340.0, 60.0], [40.0, 200.0, 120.0, 300.0]], np.float32)
    texts = ["cracker_box 0.93", "mug 0.40", "sugar_box 0.80"]
    placement = P.placed_labels(boxes, texts, np.array([0.93, 0.40, 0.80]), image_width=640)
    assert placement.index.tolist() == [0, 2]  # the mug's label would cover the cracker box's: left to the hover
    assert placement.position == ["bottom right", "top right"]
    pad = P.LABEL_BORDER_PX * 640 / P.LABEL_DRAWN_WIDTH  # a few screen px below the image's top edge
    assert placement.y.tolist() == pytest.approx([pad, 200.0]) and placement.x.tolist() == [250.0, 40.0]
    below = P.placed_labels(boxes[:1] + [0, -30, 0, 0], texts[:1], np.array([0.93]), image_width=640)
    assert below.y.tolist() == pytest.approx([pad]) and below.position == ["bottom right"]  # past the top: clamped


def test_tracks_follow_only_surviving_proposals(image) -> None:
    traj = support.make_trajectory(steps=4, stages=2, proposals=12)
    view = denoising.ViewOptions(score_threshold=0.5)
    fig = denoising.denoise_figure(traj, image, view)
    final = support.traces_at(fig, len(fig.layout.sliders[0].steps) - 1)
    track = [t for t in final if t["name"] == "centre tracks"][0]
    paths = np.isnan(np.asarray(track["x"], np.float64)).sum()  # one NaN ends each path
    survivors = int((traj.scores[-1, -1] >= 0.5).sum())
    assert 0 < paths <= survivors < 12
    assert track["line"]["color"].endswith("0.4)")  # faint


def test_denoise_figure_carries_its_legend_as_meta_not_as_plotly_legend(image) -> None:
    # The page draws the layer toggles and the class key from layout.meta; Plotly's own legend (redrawn on every
    # slider step) is off, and no legend-only traces ride along.
    traj = support.make_trajectory(steps=3, stages=2)
    fig = P.validate_figure(denoising.denoise_figure(traj, image, gt_boxes=GT))
    assert fig.layout.showlegend is False and not fig.layout.annotations
    layers = fig.layout.meta["layers"]
    groups = [row["group"] for row in layers]
    assert groups[-1] == "gt" and "boxes" in groups and "noise" in groups
    scatters = [t for t in fig.data if t.type == "scatter"]
    assert set(groups) <= {t.legendgroup for t in scatters}  # every toggle has traces to hide
    assert not any(t.showlegend for t in scatters)
    keys = [row["name"] for row in fig.layout.meta["keys"]]
    assert "any class, score < 0.2 (faint grey)" in keys
    no_gt = denoising.denoise_figure(traj, image)
    assert "gt" not in [row["group"] for row in no_gt.layout.meta["layers"]]


def test_labels_read_on_their_white_outline() -> None:
    # WCAG contrast of every label colour against white >= 4.5, with the class colour's hue (channel ratios) kept
    for k in range(len(P.PALETTE)):
        box, text = P.class_colour(k), P.label_colour(k)
        assert 1.05 / (P.relative_luminance(text) + 0.05) >= 4.5
        rgb = [np.array([int(c.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4)], float) for c in (box, text)]
        assert np.allclose(rgb[1] / max(rgb[1].max(), 1), rgb[0] / rgb[0].max(), atol=0.03)
    assert P.text_on_white("#4C78A8") == "#4C78A8"  # dark enough already: unchanged
    assert P.relative_luminance("#FFFFFF") == 1.0 and P.relative_luminance("#000000") == 0.0


def test_the_denoising_views_labels_use_the_readable_colours(image) -> None:
    traj = support.make_trajectory(steps=2, stages=1, proposals=8)
    fig = denoising.denoise_figure(traj, image, denoising.ViewOptions(score_threshold=0.0))
    final = support.traces_at(fig, len(fig.layout.sliders[0].steps) - 1)
    labels = [t for t in final if t["name"] == "labels"][0]
    readable = {P.label_colour(k) for k in range(len(P.PALETTE))}
    assert labels["textfont"]["color"] and set(labels["textfont"]["color"]) <= readable


def test_the_ground_truth_stays_a_thin_reference_at_any_line_width(image) -> None:
    traj = support.make_trajectory(steps=2, stages=1, proposals=6)
    gt = np.array([[10.0, 10.0, 60.0, 60.0]], np.float32)
    for lw, expected in ((1.0, 1.0), (2.0, 1.5), (6.0, denoising.GT_MAX_WIDTH)):
        fig = denoising.denoise_figure(traj, image, denoising.ViewOptions(line_width=lw), gt_boxes=gt)
        line = [t for t in fig.data if t.name == "ground truth"][0]
        assert line.line.width == pytest.approx(expected)


def test_the_step_chart_counts_boxes_in_whole_numbers() -> None:
    traj = support.make_trajectory(steps=3, stages=1, proposals=6)
    few = denoising.step_stats_figure(traj, score_threshold=0.99)  # at most a box or two per step
    assert few.layout.yaxis.dtick == 1 and few.layout.yaxis.tickformat == "d"
    many = denoising.step_stats_figure(support.make_trajectory(steps=3, stages=1, proposals=40), 0.0)
    assert many.layout.yaxis.dtick is None and many.layout.yaxis.tickformat == "d"  # Plotly's own spacing
