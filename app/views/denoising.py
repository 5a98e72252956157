"""The denoising view: every DDIM step's boxes over the image, one restyle slider to scrub them in the browser,
and the per-step statistics below."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from diffdet.evaluate import Matching, match_detections
from diffdet.trajectory import Trajectory

from app.controls import Display, number
from app.evaluation import best_iou, image_ap, stage_ious
from app.inputs import GroundTruth
from app.plotting import (
    FAINT_COLOUR, FRESH_COLOUR, GT_COLOUR, HEATMAP_COLOUR, NOISE_COLOUR, OPACITY_EDGES, OPACITY_LEVELS,
    RENEW_COLOUR, ImageSource, ViewOptions, b64_bytes, box_centres, class_colour, image_axes, image_plot_height, iou_strings,
    label_colour, label_strings, lines, make_figure, message_figure, opacity_level, placed_labels, rect_path, rgba,
)
from app.views.convergence import convergence_figure
from app.views.results import results_figure


@dataclass(frozen=True)
class Position:
    """One slider position: the boxes fed to step ``step`` ("in"), a stage's prediction at it ("out"), or the final
    detections ("final")."""

    kind: str
    step: int
    label: str
    title: str


def positions(traj: Trajectory, stage: int = -1) -> list[Position]:
    """Slider positions of a recorded trajectory: (in, out) for each of the S steps, then the final detections."""
    steps = traj.num_steps
    stage_no = (stage % traj.num_stages) + 1 if traj.num_stages else 0
    out: list[Position] = []
    for s, (t, t_next) in enumerate(traj.times):
        out.append(Position("in", s, f"{s + 1}·in", f"Step {s + 1}/{steps} · boxes fed in (t = {t})"))
        out.append(Position("out", s, f"{s + 1}·out",
                            f"Step {s + 1}/{steps} · stage {stage_no} prediction (t = {t} → {t_next})"))
    out.append(Position("final", steps, "final", "Final detections (after ensemble and NMS)"))
    return out



def line_widths(view: ViewOptions) -> dict[str, float]:
    """Line widths (px) of the denoising view: "noise" (boxes fed in), "wide" and "thin" (predictions, see
    ``wide_boxes``)."""
    return {"noise": max(0.5, view.line_width * 0.6), "wide": view.line_width, "thin": max(0.5, view.line_width / 2)}


def wide_boxes(scores: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Which boxes are drawn at the full line width (the rest at half): boxes share one line trace per (class,
    opacity level), drawn wide when every box in it scores at least ``threshold``; the lowest level (faint grey)
    is always thin. scores, labels (..., N) -> bool (..., N), for each leading index on its own."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    levels = opacity_level(scores)
    out = np.zeros(scores.shape, bool)
    for index in np.ndindex(scores.shape[:-1]):
        sc, lb, lv = scores[index], labels[index], levels[index]
        for label, level in {(int(a), int(b)) for a, b in zip(lb, lv) if b > 0}:
            pick = (lb == label) & (lv == level)
            out[index][pick] = sc[pick].min() >= threshold
    return out


GT_MAX_WIDTH = 2.0  # px of the dashed ground-truth line (its white halo is 2 px wider)


def _scored_box_traces(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str], view: ViewOptions,
    axes: tuple[str, str], hover_rows: list[list], hover_template: str, box_ids: np.ndarray,
    renewed: np.ndarray | None = None, image_width: int = 640,
) -> list[dict]:
    """Line traces for one set of scored boxes, a text trace and a hover trace.

    Boxes in the lowest opacity level share one faint grey trace whatever their class (at that opacity the colour
    does not read anyway, and the hover still names it); the others get one trace per (class, level). Fewer traces
    keep the slider's redraw fast. ``renewed`` (M,) marks boxes replaced after this step with an x in the hover
    trace.
    """
    traces: list[dict] = []
    keep = np.ones(len(scores), bool)
    if view.classes_shown is not None:
        keep &= np.isin(labels, list(view.classes_shown))
    boxes, scores, labels, box_ids = boxes[keep], scores[keep], labels[keep], box_ids[keep]
    renewed = renewed[keep] if renewed is not None else np.zeros(len(scores), bool)
    hover_rows = [row for row, k in zip(hover_rows, keep) if k]
    levels = opacity_level(scores)
    wide = wide_boxes(scores, labels, view.score_threshold)
    thin = line_widths(view)["thin"]
    faint = levels == 0
    if faint.any():
        traces.append(lines(*rect_path(boxes[faint]), rgba(FAINT_COLOUR, OPACITY_LEVELS[0]), thin,
                             name="low score", axes=axes))
    for label in np.unique(labels[~faint]):
        for level in np.unique(levels[(labels == label) & ~faint]):
            pick = (labels == label) & (levels == level)
            width = view.line_width if wide[pick][0] else thin
            traces.append(lines(*rect_path(boxes[pick]), rgba(class_colour(label), OPACITY_LEVELS[int(level)]),
                                 width, name=str(class_names[int(label)]), axes=axes))
    above = np.flatnonzero(scores >= view.score_threshold)
    if (view.show_labels or view.show_scores) and len(above):
        names = [str(class_names[int(k)]) for k in labels[above]]
        texts = label_strings(names, scores[above], view.show_labels, view.show_scores)
        # label only boxes whose labels do not collide (best first); hover names the rest
        placement = placed_labels(boxes[above], texts, scores[above], image_width)
        shown = above[placement.index]
        traces.append({
            "type": "scatter", "mode": "text", "x": placement.x, "y": placement.y,
            "text": [texts[j] for j in placement.index],
            "textposition": placement.position, "hoverinfo": "skip", "showlegend": False, "name": "labels",
            "textfont": {"color": [label_colour(k) for k in labels[shown]], "size": 11, "weight": 600},
            "xaxis": axes[0], "yaxis": axes[1],
        })
    if len(boxes):
        centres = box_centres(boxes)
        traces.append({
            "type": "scatter", "mode": "markers", "x": centres[:, 0], "y": centres[:, 1], "name": "boxes",
            "customdata": hover_rows, "hovertemplate": hover_template, "showlegend": False,
            "marker": {"size": np.where(renewed, 9, 7).tolist(),
                       "symbol": np.where(renewed, "x-thin-open", "circle").tolist(),
                       "color": [RENEW_COLOUR if r else rgba(class_colour(k), 0.6) for k, r in zip(labels, renewed)],
                       "line": {"width": np.where(renewed, 1.5, 0).tolist(), "color": RENEW_COLOUR}},
            "xaxis": axes[0], "yaxis": axes[1],
        })
    return traces


def _position_traces(
    traj: Trajectory, pos: Position, view: ViewOptions, axes: tuple[str, str], gt_ious: dict[str, np.ndarray] | None,
    det_match: np.ndarray | None,
) -> list[dict]:
    """Every trace one slider position shows (all start hidden; the caller sets visibility)."""
    names = traj.class_names
    steps = traj.num_steps
    if pos.kind == "in":
        s = pos.step
        boxes = traj.boxes_in_xyxy[s]  # (N, 4)
        n = boxes.shape[0]
        fresh = traj.renewed[s - 1] if s > 0 and traj.renewed is not None else np.zeros(n, bool)
        heat = traj.from_heatmap[s] if traj.from_heatmap is not None else np.zeros(n, bool)
        plain = ~fresh & ~heat
        traces = []
        kinds = [(plain, NOISE_COLOUR, "solid", "noise" if s == 0 else "carried over (DDIM update)"),
                 (fresh & ~heat, FRESH_COLOUR, "dot", "renewed: fresh noise"),
                 (heat, HEATMAP_COLOUR, "solid", "drawn from heatmap peaks")]
        origin = np.empty(n, dtype=object)
        for pick, colour, dash, what in kinds:
            origin[pick] = what
            if pick.any():
                xs, ys = rect_path(boxes[pick])
                traces.append(lines(xs, ys, rgba(colour, 0.55), line_widths(view)["noise"], name=what,
                                     dash=dash, axes=axes))
        centres = box_centres(boxes)
        wh = boxes[:, 2:] - boxes[:, :2]
        rows = [[int(i), str(origin[i]), float(wh[i, 0]), float(wh[i, 1])] for i in range(n)]
        # hover points per kind, so hiding a kind's layer hides its points too
        for (pick, *_), layer in zip(kinds, ("noise", "renewed", "heatmap")):
            if pick.any():
                traces.append({
                    "type": "scatter", "mode": "markers", "x": centres[pick, 0], "y": centres[pick, 1],
                    "name": f"inputs: {layer}", "customdata": [rows[i] for i in np.flatnonzero(pick)],
                    "showlegend": False,
                    "hovertemplate": (f"<b>box #%{{customdata[0]}}</b> fed to step {s + 1}/{steps}"
                                      "<br>%{customdata[1]}<br>%{customdata[2]:.0f} x %{customdata[3]:.0f} px"
                                      "<extra></extra>"),
                    "marker": {"size": 5, "color": rgba(NOISE_COLOUR, 0.5)}, "xaxis": axes[0], "yaxis": axes[1],
                })
        return traces
    if pos.kind == "out":
        s = pos.step
        stage = view.stage % traj.num_stages
        boxes, scores, labels = traj.boxes_xyxy[s, stage], traj.scores[s, stage], traj.labels[s, stage]
        n = boxes.shape[0]
        ious = gt_ious.get(f"out{s}") if gt_ious else None
        iou_text = iou_strings(ious, n)
        renewed = traj.renewed[s] if traj.renewed is not None else np.zeros(n, bool)
        rows = [[str(names[int(labels[i])]), float(scores[i]), int(i), iou_text[i],
                 "renewed after this step" if renewed[i] else "kept"] for i in range(n)]
        template = ("<b>%{customdata[0]}</b> score %{customdata[1]:.3f}<br>"
                    f"step {s + 1}/{steps} · stage {stage + 1}/{traj.num_stages}<br>"
                    "box #%{customdata[2]} · %{customdata[4]}<br>IoU with best ground truth: %{customdata[3]}"
                    "<extra></extra>")
        return _scored_box_traces(boxes, scores, labels, names, view, axes, rows, template, np.arange(n),
                                  renewed=renewed if s < steps - 1 else None, image_width=traj.image_size_hw[1])
    det = traj.detections
    m = len(det)
    ious = gt_ious.get("final") if gt_ious else None
    iou_text = iou_strings(ious, m)
    match = det_match if det_match is not None else np.full(m, "", dtype=object)
    rows = [[str(names[int(det.labels[i])]), float(det.scores[i]), int(det.step[i]) + 1, iou_text[i],
             int(i), str(match[i]) or "—"] for i in range(m)]
    template = ("<b>%{customdata[0]}</b> score %{customdata[1]:.3f}<br>detection #%{customdata[4]} · "
                "from step %{customdata[2]}<br>IoU with best ground truth: %{customdata[3]} · "
                "%{customdata[5]}<extra></extra>")
    return _scored_box_traces(det.boxes_xyxy, det.scores, det.labels, names, view, axes, rows, template,
                              np.arange(m), image_width=traj.image_size_hw[1])


def _track_traces(traj: Trajectory, pos_list: list[Position], view: ViewOptions, axes: tuple[str, str]) -> list[dict]:
    """For each position, the paths of the noisy boxes' centres x_t step by step up to that position (the DDIM
    trajectory in box space; at the final position it ends at the last prediction), for the slots that survive:
    never renewed after the path starts, and scoring at least the score threshold at the last step. Drawn faint, so
    they show the walk without covering the image; every drawn track costs slider time (~10 ms for 100)."""
    if not view.show_tracks:
        return [{}] * len(pos_list)
    stage = view.stage % traj.num_stages
    s_count, n = traj.boxes_in_xyxy.shape[:2]
    centres = (traj.boxes_in_xyxy[..., :2] + traj.boxes_in_xyxy[..., 2:]) / 2  # (S, N, 2) x_t centres
    last = (traj.boxes_xyxy[-1, stage, :, :2] + traj.boxes_xyxy[-1, stage, :, 2:]) / 2  # (N, 2)
    start = np.zeros(n, np.int64)  # first step of each slot's last life
    if traj.renewed is not None:
        for s in range(s_count - 1):
            start[traj.renewed[s]] = s + 1
    survivors = np.flatnonzero(traj.scores[-1, stage] >= view.score_threshold)
    if view.classes_shown is not None:
        survivors = survivors[np.isin(traj.labels[-1, stage, survivors], list(view.classes_shown))]
    out = []
    for pos in pos_list:
        upto = s_count - 1 if pos.kind == "final" else pos.step  # x_t points 0 .. upto
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        for slot in survivors:
            pts = centres[start[slot]:upto + 1, slot]
            if pos.kind == "final":
                pts = np.concatenate([pts, last[slot:slot + 1]])
            if len(pts) < 2:
                continue
            xs.append(np.append(pts[:, 0], np.nan))
            ys.append(np.append(pts[:, 1], np.nan))
        if not xs:
            out.append({})
            continue
        out.append(lines(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32),
                         "rgba(255,255,255,0.4)", 1, name="centre tracks", axes=axes))
    return out


def _panel(
    traj: Trajectory, image: ImageSource, view: ViewOptions, axes: tuple[str, str], gt_boxes: np.ndarray | None,
    gt_ious: dict[str, np.ndarray] | None, det_match: np.ndarray | None, caption_prefix: str = "",
) -> tuple[list[dict], list[list[dict]], list[Position]]:
    """Traces of one denoising panel: those shown at every position (image, ground truth) and, per slider position,
    the traces that position shows."""
    if not traj.recorded:
        raise ValueError("the trajectory was run with record=False; the denoising view needs the per-step boxes")
    pos_list = positions(traj, view.stage)
    static: list[dict] = [image.trace(*axes)]
    if view.show_gt and gt_boxes is not None and len(gt_boxes):
        xs, ys = rect_path(gt_boxes)
        # a reference, not the subject: at line width 6 the ground truth's heavy dashes hid the (thin, low-score)
        # early predictions under them, so it stops growing at GT_MAX_WIDTH
        width = min(max(1.0, view.line_width * 0.75), GT_MAX_WIDTH)
        static.append(lines(xs, ys, "rgba(255,255,255,0.85)", width + 2, name="ground truth halo", axes=axes,
                            legendgroup="gt"))
        static.append(lines(xs, ys, GT_COLOUR, width, name="ground truth", dash="dash", axes=axes, legendgroup="gt"))
    per_position: list[list[dict]] = []
    for pos, track in zip(pos_list, _track_traces(traj, pos_list, view, axes)):
        traces = [track] if track else []
        traces.extend(_position_traces(traj, pos, view, axes, gt_ious, det_match))
        # The position's caption just above the image, switched with its boxes.
        traces.append({"type": "scatter", "mode": "text", "x": [0], "y": [0],
                       "text": [f"<b>{caption_prefix}{pos.title}</b>"], "textposition": "top right",
                       "cliponaxis": False, "hoverinfo": "skip", "showlegend": False, "name": "caption",
                       "textfont": {"size": 13, "color": "#111827"}, "xaxis": axes[0], "yaxis": axes[1]})
        per_position.append(traces)
    return static, per_position, pos_list


def _legend_keys(traj: Trajectory, view: ViewOptions) -> list[tuple[str, str, str]]:
    """(symbol, colour, name) rows of the class-colour key shown beside the layer toggles."""
    stage = view.stage % traj.num_stages
    confident = traj.scores[:, stage] >= view.score_threshold  # (S, N)
    used = set(np.unique(traj.labels[:, stage][confident]).tolist())
    used |= set(traj.detections.labels[traj.detections.scores >= view.score_threshold].tolist())
    if view.classes_shown is not None:
        used &= set(view.classes_shown)
    keys = [("━━", class_colour(k), traj.class_names[k]) for k in sorted(used)]
    keys.append(("━━", "#9CA3AF", f"any class, score < {OPACITY_EDGES[0]:g} (faint grey)"))
    if traj.renewed is not None and traj.renewed.any():
        keys.append(("✕", RENEW_COLOUR, "renewed after this step"))
    return keys


# Slot roles in drawing order (boxes under tracks under hover markers under labels and the caption), and the legend
# layer each role belongs to: a legend click hides the layer's slots (a kind of boxes and their hover points), and
# since the slider never restyles ``visible`` (an unused slot is emptied instead), the layer stays hidden while
# scrubbing or playing.
SLOT_ROLES = ("noise", "renewed", "heatmap", "boxes", "centre tracks", "noise hover", "renewed hover",
              "heatmap hover", "boxes hover", "labels", "caption")
HOVER_LAYER = {"noise hover": "noise", "renewed hover": "renewed", "heatmap hover": "heatmap", "boxes hover": "boxes"}
LAYERS: dict[str, tuple[str, str, str]] = {  # role -> (legend group, legend name, key colour)
    "noise": ("noise", "noise boxes x_t (fed in)", NOISE_COLOUR),
    "renewed": ("renewed", "renewed: fresh noise", FRESH_COLOUR),
    "heatmap": ("heatmap", "drawn from heatmap peaks", HEATMAP_COLOUR),
    "boxes": ("boxes", "predicted boxes (class colour)", "#4C78A8"),
    "centre tracks": ("tracks", "centre tracks", "#9CA3AF"),
    "labels": ("labels", "labels", "#111827"),
}


def _slot_role(trace: dict) -> str:
    name = trace["name"]
    if name in ("centre tracks", "labels", "caption"):
        return name
    if trace["mode"] == "markers":
        return f"{name[len('inputs: '):]} hover" if name.startswith("inputs: ") else "boxes hover"
    if name == "noise" or name.startswith("carried over"):
        return "noise"
    if name.startswith("renewed"):
        return "renewed"
    if name.startswith("drawn from heatmap"):
        return "heatmap"
    return "boxes"


def _empty_slot(role: str) -> dict:
    """A slot with nothing to show: one missing point, not no points (Plotly makes a trace without data invisible,
    and the legend then skips it, so a hidden layer would reappear when the slider fills the slot)."""
    return {"type": "scatter", "mode": "markers" if role in HOVER_LAYER else "lines", "x": [None], "y": [None],
            "name": "", "hoverinfo": "skip", "showlegend": False}


def _slots(per_position: list[list[dict]]) -> tuple[list[str], list[list[dict]]]:
    """Lay every position's traces onto one shared set of slot traces, role by role: returns each slot's role and,
    per position, the trace each slot shows there (an empty trace where the slot has nothing to show)."""
    grouped = [{role: [t for t in traces if _slot_role(t) == role] for role in SLOT_ROLES} for traces in per_position]
    widths = {role: max((len(g[role]) for g in grouped), default=0) for role in SLOT_ROLES}
    roles = [role for role in SLOT_ROLES for _ in range(widths[role])]
    layout = [[t for role in SLOT_ROLES for t in g[role] + [_empty_slot(role)] * (widths[role] - len(g[role]))]
              for g in grouped]
    return roles, layout


def _flatten(trace: dict, prefix: str = "") -> dict[str, Any]:
    """{"line": {"color": c}} -> {"line.color": c}: the attribute strings ``Plotly.restyle`` takes."""
    out: dict[str, Any] = {}
    for key, value in trace.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _typed_array(value: Any) -> Any:
    """Float arrays as plotly.js typed-array specs (base64 float32), as plotly.py sends trace data: inside slider
    args plotly.py would write them out as long decimal lists."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return {"dtype": "f4", "bdata": b64_bytes(np.asarray(value, dtype="<f4"))}
        return value.tolist()
    return value


def _restyle_args(shown: list[dict], keys: Sequence[str]) -> dict[str, list]:
    """One ``Plotly.restyle`` update that turns the slot traces into ``shown`` (one entry per slot): for each of
    ``keys`` (every attribute any position sets, so nothing lingers from the position shown before), per slot its
    value or None (restyle resets that attribute to its default). ``visible`` is left alone: it belongs to the
    legend."""
    flat = [_flatten(t) for t in shown]
    return {key: [_typed_array(f.get(key)) for f in flat] for key in keys}


def slider_label(pos: "Position", steps: int) -> str:
    """A tick label that stays readable at any number of steps: the step number under its input position (every
    k-th step when there are many), nothing under predictions, "final" at the end."""
    every = max(1, int(np.ceil(steps / 12)))
    if pos.kind == "final":
        return "final"
    if pos.kind == "in" and (pos.step % every == 0 or pos.step == steps - 1):
        return str(pos.step + 1)
    return " "


def aligned_positions(pos_lists: Sequence[Sequence[Position]]) -> list[list[int]]:
    """For each position of the longest run, the position each run shows there: the same kind of frame ("in",
    "out" or "final") at the step at the same fraction of its own steps (rounded). Runs of different lengths side by
    side (A/B) then always show the same kind of frame, and a shorter run repeats a step where the longer has more;
    an index mapped by fraction alone showed one run's boxes fed in beside the other's prediction.
    Returns [position of the longest][run] -> index into that run's positions."""
    longest = max(pos_lists, key=len)
    steps_longest = max(p.step for p in longest)  # the final position's step = the number of steps
    out = []
    for pos in longest:
        row = []
        for pl in pos_lists:
            steps = max(p.step for p in pl)
            step = steps if pos.kind == "final" else round(pos.step * (steps - 1) / max(steps_longest - 1, 1))
            row.append(next(q for q, other in enumerate(pl) if other.kind == pos.kind and other.step == step))
        out.append(row)
    return out


def _slider(panels: list[tuple[list[int], list[list[dict]]]], pos_lists: list[list[Position]], active: int,
            x: float = 0.02, length: float = 0.96) -> dict:
    """One restyle slider over positions. The positions share a few slot traces per panel (``panels``: each panel's
    slot trace indices and, per position, what each slot shows); a step restyles the slots' data and style, so the
    image and ground truth are left alone and the figure holds a dozen traces instead of one set per position (the
    per-step redraw cost grows with the figure's trace count). With two panels of different lengths, each shows the
    position ``aligned_positions`` gives. Ticks carry step numbers; the current position's full name shows above the
    rail."""
    count = max(len(p) for p in pos_lists)
    longest = max(pos_lists, key=len)
    aligned = aligned_positions(pos_lists)
    steps_count = max(p.step for p in longest)
    indices = [k for slot_ids, _ in panels for k in slot_ids]
    keys = sorted({k for _, per_position in panels for slots in per_position for t in slots
                   for k in _flatten(t)} - {"type", "xaxis", "yaxis", "visible", "legendgroup"})
    steps = []
    for p in range(count):
        shown = [t for (_, per_position), q in zip(panels, aligned[p]) for t in per_position[q]]
        steps.append({"method": "restyle", "label": slider_label(longest[p], steps_count),
                      "args": [_restyle_args(shown, keys), indices], "value": longest[p].label, "execute": True})
    return {
        "active": active, "steps": steps, "x": x, "len": length, "y": 0, "yanchor": "top", "pad": {"t": 8, "b": 4},
        "currentvalue": {"visible": False}, "font": {"size": 11, "color": "#374151"},
        "ticklen": 4, "transition": {"duration": 0}, "name": "step",
    }


def _slot_traces(slots: list[dict], roles: list[str], axes: tuple[str, str]) -> list[dict]:
    """The slot traces as the figure opens (what they show at the active position), each in its role's legend
    group."""
    out = []
    for trace, role in zip(slots, roles):
        group = LAYERS.get(HOVER_LAYER.get(role, role), (role,))[0]
        out.append(dict(trace, visible=True, legendgroup=group, xaxis=axes[0], yaxis=axes[1]))
    return out


def layer_legend(roles: Sequence[str], has_gt: bool) -> list[dict]:
    """The layers present, in drawing order, as ``{"group", "name", "colour", "dash"}`` rows: the page draws them as
    toggle buttons above the plot (``app.ui.PAGE_JS``); a click sets ``visible`` of every trace in the group to
    ``"legendonly"`` and back. Outside Plotly, so the legend costs nothing per slider step (Plotly's own legend was
    redrawn on every step: ~25 of ~80 ms of a step on a busy 2-core CPU, measured)."""
    rows = []
    for role in dict.fromkeys(roles):
        if role in LAYERS:
            group, name, colour = LAYERS[role]
            rows.append({"group": group, "name": name, "colour": colour, "dash": "dot" if role == "renewed" else "solid"})
    if has_gt:
        rows.append({"group": "gt", "name": "ground truth", "colour": GT_COLOUR, "dash": "dash"})
    return rows


TWEEN_MAX_VALUES = 160_000  # int16 box coordinates carried for Play's interpolation (~430 kB of base64 at most)


def tween_meta(traj: Trajectory, view: ViewOptions) -> dict | None:
    """What Play needs to glide the boxes between slider positions in the browser, slot by slot: the boxes fed to
    each step and every head stage's prediction at it, so a step plays as x_t -> stage 1 -> ... -> the shown stage
    -> x_{t-1}. Coordinates travel as little-endian int16 half-pixels (base64), labels and score levels as uint8.

    The slider's instant preview (``app.ui.PAGE_JS``) draws a position's boxes from the same data, styled as the
    figure draws them, so the style rides along: line widths in px, which predictions are drawn wide
    (``wide_boxes``) and which classes are shown.

    Returns ``{"S", "K", "N", "stages" (the K stage numbers carried, 1-based), "stage" (the shown one), "in" (S, N, 4),
    "out" (S, K, N, 4), "labels" (S, K, N), "levels" (S, K, N) opacity level, "wide" (S, K, N) uint8, "renewed" (S, N)
    uint8, "heatmap" (S, N) uint8 (the box fed to step s was drawn from heatmap peaks), "colours" (per class),
    "opacities" (per level), "noise" / "fresh" / "peak" / "faint" colours, "widths" ({"noise", "wide", "thin"} px),
    "classes_shown" (class ids, or None for all), "final" (the M final detections: {"M", "boxes" (M, 4), "labels",
    "levels", "wide"})}``; all stages when they fit under ``TWEEN_MAX_VALUES``, else only
    the shown stage; None without a recorded trajectory or when even that does not fit.
    """
    if not traj.recorded or traj.boxes_in_xyxy is None or traj.boxes_xyxy is None:
        return None
    s_count, n_stages, n = traj.boxes_xyxy.shape[:3]
    shown = view.stage % n_stages
    stages = list(range(shown + 1))
    if s_count * n * 4 * (len(stages) + 1) > TWEEN_MAX_VALUES:
        stages = [shown]
        if s_count * n * 4 * 2 > TWEEN_MAX_VALUES:
            return None
    half_pixels = lambda a: np.clip(np.round(np.asarray(a, np.float64) * 2), -32768, 32767).astype("<i2")  # noqa: E731
    out = traj.boxes_xyxy[:, stages]
    renewed = traj.renewed if traj.renewed is not None else np.zeros((s_count, n), bool)
    det = traj.detections
    peaks = traj.from_heatmap if traj.from_heatmap is not None else np.zeros((s_count, n), bool)
    return {
        "S": int(s_count), "K": len(stages), "N": int(n), "stages": [k + 1 for k in stages], "stage": shown + 1,
        "in": b64_bytes(half_pixels(traj.boxes_in_xyxy)), "out": b64_bytes(half_pixels(out)),
        "labels": b64_bytes(np.asarray(traj.labels[:, stages], np.uint8)),
        "levels": b64_bytes(np.asarray(opacity_level(traj.scores[:, stages]), np.uint8)),
        "wide": b64_bytes(np.asarray(wide_boxes(traj.scores[:, stages], traj.labels[:, stages], view.score_threshold),
                                np.uint8)),
        "renewed": b64_bytes(np.asarray(renewed, np.uint8)), "heatmap": b64_bytes(np.asarray(peaks, np.uint8)),
        "colours": [class_colour(k) for k in range(len(traj.class_names))],
        "opacities": list(OPACITY_LEVELS), "noise": NOISE_COLOUR, "fresh": FRESH_COLOUR, "peak": HEATMAP_COLOUR,
        "faint": FAINT_COLOUR,
        "widths": line_widths(view),
        "classes_shown": None if view.classes_shown is None else sorted(int(k) for k in view.classes_shown),
        "final": {"M": len(det), "boxes": b64_bytes(half_pixels(det.boxes_xyxy.reshape(-1, 4))),
                  "labels": b64_bytes(np.asarray(det.labels, np.uint8)),
                  "levels": b64_bytes(np.asarray(opacity_level(det.scores), np.uint8)),
                  "wide": b64_bytes(np.asarray(wide_boxes(det.scores, det.labels, view.score_threshold), np.uint8))},
    }


def denoise_figure(
    traj: Trajectory, image: ImageSource, view: ViewOptions = ViewOptions(), gt_boxes: np.ndarray | None = None,
    gt_ious: dict[str, np.ndarray] | None = None, det_match: np.ndarray | None = None, active: int | None = None,
) -> go.Figure:
    """The image with every position's boxes in one figure; a Plotly ``restyle`` slider switches trace visibility in
    the browser, so scrubbing never calls the server.

    Args:
        traj: a recorded trajectory (boxes in original-image pixels).
        gt_boxes (np.ndarray[G, 4]): ground truth drawn dashed, or None.
        gt_ious: best IoU with the ground truth per box, keyed "out{s}" (N,) for step s at ``view.stage`` and
            "final" (M,) for the detections; det_match (M,) "TP" / "FP" / "" per detection.
        active: the slider position shown first (default: the final detections).
    """
    axes = ("x", "y")
    static, per_position, pos_list = _panel(traj, image, view, axes, gt_boxes, gt_ious, det_match)
    active = len(pos_list) - 1 if active is None else int(np.clip(active, 0, len(pos_list) - 1))
    roles, slots = _slots(per_position)
    has_gt = view.show_gt and gt_boxes is not None and len(gt_boxes) > 0
    traces = static + _slot_traces(slots[active], roles, axes)
    keys = [{"symbol": symbol, "colour": colour, "name": name} for symbol, colour, name in _legend_keys(traj, view)]
    xaxis, yaxis = image_axes(image.width, image.height)
    slot_ids = list(range(len(static), len(static) + len(roles)))
    slider = _slider([(slot_ids, slots)], [pos_list], active)
    layout = {
        "xaxis": xaxis, "yaxis": yaxis, "height": image_plot_height(image.width, image.height) + 34 + 70,
        "sliders": [slider], "showlegend": False,
        "margin": {"l": 8, "r": 8, "t": 34, "b": 70},
        # ``layers`` and ``keys`` are drawn by the page above the plot (toggles and the class-colour key).
        "meta": {"positions": [p.label for p in pos_list], "titles": [p.title for p in pos_list], "image_size_hw": [image.height, image.width],
                 "layers": layer_legend(roles, has_gt), "keys": keys, "tween": tween_meta(traj, view)},
    }
    return make_figure(traces, layout)



def step_stats_figure(traj: Trajectory, score_threshold: float, stage: int = -1) -> go.Figure:
    """Per step: the number of boxes scoring at least ``score_threshold`` (bars), their mean score and the number of
    renewed boxes."""
    if not traj.recorded:
        return message_figure("Run with the trajectory recorded to see per-step statistics.", height=240)
    stage = stage % traj.num_stages
    scores = traj.scores[:, stage]  # (S, N)
    steps = np.arange(1, traj.num_steps + 1)
    above = (scores >= score_threshold).sum(axis=1)
    mean_all = scores.mean(axis=1)
    data = [
        {"type": "bar", "x": steps, "y": above, "name": f"boxes ≥ {score_threshold:.2f}, before NMS",
         "marker": {"color": "#4C78A8"},
         "hovertemplate": f"step %{{x}}: %{{y}} boxes ≥ {score_threshold:.2f}<extra></extra>"},
        {"type": "scatter", "mode": "lines+markers", "x": steps, "y": mean_all, "name": "mean score (all boxes)",
         "yaxis": "y2", "line": {"color": "#F58518"},
         "hovertemplate": "step %{x}: mean score of all boxes %{y:.3f}<extra></extra>"},
    ]
    if (scores >= score_threshold).any():
        mean_above = np.array([s[s >= score_threshold].mean() if (s >= score_threshold).any() else np.nan
                               for s in scores])
        data.append({"type": "scatter", "mode": "lines+markers", "x": steps, "y": mean_above,
                     "name": f"mean score (≥ {score_threshold:.2f})", "yaxis": "y2",
                     "line": {"color": "#E45756", "dash": "dot"},
                     "hovertemplate": f"step %{{x}}: mean score of the boxes ≥ {score_threshold:.2f} "
                                      "%{y:.3f}<extra></extra>"})
    renewed = traj.renewed.sum(axis=1) if traj.renewed is not None else np.zeros(traj.num_steps, np.int64)
    if renewed.any():  # without renewal, no bars and no legend entry
        data.append({"type": "bar", "x": steps, "y": renewed, "name": "renewed after step",
                     "marker": {"color": "#19D3F3"}, "hovertemplate": "step %{x}: %{y} renewed<extra></extra>"})
    counts_max = int(max(above.max(initial=0), renewed.max(initial=0)))
    layout = {
        "height": 290, "barmode": "group", "margin": {"l": 48, "r": 48, "t": 30, "b": 70},
        # what is counted: every step's own predictions, so more than the status line's final detections (a student
        # read 18-23 boxes against "9 detections" as a contradiction); three short lines: two ran past a phone's edges
        "xaxis": {"title": {"text": f"DDIM step<br>each step's {scores.shape[1]} predicted boxes,<br>before the "
                                    "ensemble and NMS", "font": {"size": 12}}, "showgrid": False,
                  # the steps only (Plotly padded 0 and N + 1), every step up to 12, then every other or fifth one
                  "range": [0.5, traj.num_steps + 0.5], "tick0": 1,
                  "dtick": 1 if traj.num_steps <= 12 else 2 if traj.num_steps <= 24 else 5},
        "yaxis": {"title": {"text": "boxes"}, "rangemode": "tozero", "gridcolor": "#eee", "tickformat": "d",
                  # counts: whole-number ticks (Plotly put 0.2, 0.4 ... under a count of 1)
                  **({"dtick": 1, "range": [0, max(counts_max, 1) * 1.05]} if counts_max <= 5 else {})},
        "yaxis2": {"title": {"text": "score"}, "overlaying": "y", "side": "right", "range": [0, 1],
                   "showgrid": False},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
    }
    return make_figure(data, layout)


def status_line(traj: Trajectory, display: Display, shown: int, gt: GroundTruth | None) -> str:
    """What the views show, in one line: detections at the threshold, the run's settings, the ground truth."""
    s = traj.settings
    renewal = "renewal on" if s.get("box_renewal") else "renewal off"
    line = (f"**{shown} detection(s)** with score ≥ {display.score_threshold:.2f} "
            f"(of {len(traj.detections)} kept) · "
            f"{traj.num_steps} DDIM step(s), {traj.boxes_in_xyxy.shape[1]} proposals, eta {s.get('eta', 1.0):g}, "
            f"{renewal}, seed {s.get('seed', '?')} · image {traj.image_size_hw[1]} x {traj.image_size_hw[0]}")
    if display.classes is not None and len(display.classes) < len(traj.class_names):
        line += f" · {len(display.classes)} of {len(traj.class_names)} classes shown"
    if gt is not None:
        line += f" · ground truth: {gt.source} ({len(gt)} boxes)"
    return line


class DenoisingHandlers:
    """The denoising view's handlers (mixed into ``app.explorer.Explorer``)."""

    def _views(self, traj: Trajectory, source: ImageSource, gt: GroundTruth | None, display: Display,
               position: int | None = None) -> dict:
        """Denoising view (opened at slider ``position``, None = the final detections), step statistics,
        convergence view, results figure, table, metrics and status line for one run."""
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
                                        gt.boxes_xyxy, gt.labels, crowd_boxes_xyxy=gt.crowd_boxes_xyxy,
                                        crowd_labels=gt.crowd_labels)
            det_match = np.full(len(det), "below threshold", dtype=object)
            det_match[keep] = matching.status
            ap = image_ap(traj, gt.boxes_xyxy, gt.labels, gt.crowd_boxes_xyxy, gt.crowd_labels) if len(gt) else None
            metrics = self._metrics_markdown(ap, matching, display.score_threshold, traj.class_names, gt)
        ious = stage_ious(traj, gt_boxes, view.stage)
        denoise = denoise_figure(traj, source, view, gt_boxes, ious, det_match, active=position)
        stats = step_stats_figure(traj, display.score_threshold, view.stage)
        kept_ious = best_iou(det.boxes_xyxy[keep], gt_boxes) if gt_boxes is not None else None
        results = results_figure(
            source, det.boxes_xyxy[keep], det.scores[keep], det.labels[keep], traj.class_names,
            status=matching.status if matching else None, best_iou=kept_ious,
            gt_boxes=gt.boxes_xyxy if gt is not None else None, gt_labels=gt.labels if gt is not None else None,
            gt_matched=matching.gt_matched if matching else None, view=view)
        table = self._table(traj, keep, matching, kept_ious)
        converge = convergence_figure(traj, source, view, gt_boxes=gt_boxes)
        return {"denoise": denoise, "stats": stats, "results": results, "table": table, "metrics": metrics,
                "shown": int(keep.sum()), "convergence": converge,
                "status": status_line(traj, display, int(keep.sum()), gt)}

    def render(self, traj_file: str | None, image_path: str | None, gt_file: str | None, use_example_gt: bool,
               score_threshold: Any, classes: Any, show_labels: Any, show_scores: Any, line_width: Any, stage: Any,
               show_gt: Any, show_tracks: Any, position: Any = None) -> tuple:
        """Redraw the status line, denoising view, statistics, results, table, metrics and convergence view from the
        stored run (no sampling). ``position``: the denoising slider's position to keep (the browser sends it)."""
        traj = self.trajectory(traj_file)
        if traj is None or not image_path:
            return (gr.skip(),) * 7
        source = self.image_source(image_path)
        if (source.height, source.width) != tuple(traj.image_size_hw):
            return (gr.skip(),) * 7  # a new image is in; its run will redraw everything
        display = Display.from_controls(score_threshold, classes, show_labels, show_scores, line_width, stage,
                                        show_gt, show_tracks)
        gt, _ = self.ground_truth(image_path, traj.image_size_hw, gt_file, use_example_gt, traj.class_names)
        keep = None if position in (None, "") else number(position, 0, 0, 10_000, "Position", integer=True)
        views = self._views(traj, source, gt, display, keep)
        return (views["status"], views["denoise"], views["stats"], views["results"], views["table"], views["metrics"],
                views["convergence"])

