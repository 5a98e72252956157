"""The convergence view: the best proposals followed from pure noise to their final box.

For each of the ``top`` slots with the highest final score, the noisy box x_t fed to every DDIM step is drawn over the
image (faint at the first step, solid at the last) with the path of its centre, and a chart gives, step by step, the
IoU of x_t and of the head's x0 prediction with that slot's final box. A slot renewed after step s began a new life
there: its earlier lives are drawn as short grey segments that end with a cross, not as part of its path.

Presets: ``TEACHING`` (deterministic DDIM, no renewal, many steps, a few dozen proposals) makes the walk visible;
``PAPER`` is DiffusionDet's setting (eta 1 with box renewal, 4 steps). Their values were chosen by
``convergence_curve`` on the shipped model (see the README's app section).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from diffdet.evaluate import iou_matrix
from diffdet.trajectory import Trajectory

from app.plotting import (
    ImageSource, ViewOptions, box_centres, class_colour, image_axes, image_plot_height, lines, make_figure,
    message_figure, rect_path, rgba,
)

LIFE_COLOUR = "#9CA3AF"


@dataclass(frozen=True)
class Preset:
    """A one-click sampler setting (the values the Sampler controls take)."""

    name: str
    steps: int
    eta: float
    renewal: bool
    proposals: int | None  # None: the checkpoint's own number
    note: str


TEACHING = Preset("Teaching: watch boxes converge", steps=10, eta=0.0, renewal=False, proposals=50,
                  note="deterministic DDIM (eta 0), no box renewal, 10 steps, 50 proposals: each box walks from "
                       "noise onto an object")
PAPER = Preset("Paper setting", steps=4, eta=1.0, renewal=True, proposals=None,
               note="the DiffusionDet paper's setting for several steps: eta 1 with box renewal, 4 steps, the "
                    "checkpoint's proposals; the higher AP of the two, but the boxes jump rather than walk")


def last_life_start(traj: Trajectory) -> np.ndarray:
    """(N,) the first step of each slot's last life: 0 for a slot never renewed, s + 1 when renewed after step s."""
    s_count, n = traj.boxes_in_xyxy.shape[:2]
    start = np.zeros(n, np.int64)
    if traj.renewed is not None:
        for s in range(s_count - 1):
            start[traj.renewed[s]] = s + 1
    return start


def top_slots(traj: Trajectory, top: int = 10, stage: int = -1, classes: frozenset[int] | None = None) -> np.ndarray:
    """Indices of the ``top`` slots with the highest score at the last step (best first)."""
    scores = traj.scores[-1, stage % traj.num_stages].astype(np.float64)
    if classes is not None:
        scores = np.where(np.isin(traj.labels[-1, stage % traj.num_stages], list(classes)), scores, -1.0)
    order = np.argsort(-scores, kind="stable")
    return order[:min(top, int((scores >= 0).sum()))]


def convergence_curve(traj: Trajectory, top: int = 10, stage: int = -1) -> dict[str, np.ndarray]:
    """Per step, IoU with each slot's final box (its last prediction) for the ``top`` best slots.

    Returns {"slots": (k,), "xt": (S, k) IoU of the noisy input x_t of step s, "x0": (S, k) IoU of the x0
    prediction at step s, "mean_xt": (S,), "mean_x0": (S,)}. A slot's earlier lives (before a renewal) count too:
    their boxes were unrelated noise, which is what the paper's setting shows.
    """
    stage = stage % traj.num_stages
    slots = top_slots(traj, top, stage)
    final = traj.boxes_xyxy[-1, stage, slots]  # (k, 4)
    xt = np.zeros((traj.num_steps, len(slots)), np.float32)
    x0 = np.zeros_like(xt)
    for s in range(traj.num_steps):
        # nan_to_num: two empty boxes have IoU 0/0
        xt[s] = np.nan_to_num(iou_matrix(traj.boxes_in_xyxy[s, slots], final).diagonal())
        x0[s] = np.nan_to_num(iou_matrix(traj.boxes_xyxy[s, stage, slots], final).diagonal())
    empty = np.full(traj.num_steps, np.nan, np.float32)
    return {"slots": slots, "xt": xt, "x0": x0,
            "mean_xt": xt.mean(axis=1) if len(slots) else empty, "mean_x0": x0.mean(axis=1) if len(slots) else empty}


def convergence_figure(traj: Trajectory, image: ImageSource, view: ViewOptions = ViewOptions(), top: int = 10,
                       gt_boxes: np.ndarray | None = None) -> go.Figure:
    """Left: the ``top`` best slots' noisy boxes x_t at every step over the image (opacity rising with the step),
    their centre paths and final boxes, earlier lives of renewed slots as grey segments ending in a cross.
    Right: IoU of x_t (solid) and of the x0 prediction (dotted) with the final box, step by step; thin lines per
    slot, thick lines their mean. Every layer has a legend entry that shows or hides it."""
    if not traj.recorded:
        return message_figure("Run with the trajectory recorded to follow the proposals.")
    stage = view.stage % traj.num_stages
    curve = convergence_curve(traj, top, stage)
    slots = top_slots(traj, top, stage, view.classes_shown)
    if not len(slots):
        return message_figure("No proposal of the classes shown.")
    curve_slots = list(curve["slots"])
    start = last_life_start(traj)
    s_count = traj.num_steps
    steps = np.arange(1, s_count + 1)
    labels = traj.labels[-1, stage, slots]
    final = traj.boxes_xyxy[-1, stage, slots]
    data: list[dict] = [image.trace()]
    width = view.line_width
    if view.show_gt and gt_boxes is not None and len(gt_boxes):
        data.append(lines(*rect_path(gt_boxes), "#111111", 1, name="ground truth", dash="dash", legendgroup="gt",
                          showlegend=True))
    # x_t at every step of the slot's last life, one trace per step (its opacity and width rise with the step) in one
    # legend group, keyed by the last step's trace (the first step's is too faint to see in the legend).
    keyed = None
    for s in range(s_count):
        alive = start[slots] <= s
        if not alive.any():
            continue
        late = s / max(s_count - 1, 1)
        for label in np.unique(labels[alive]):
            pick = alive & (labels == label)
            keyed = len(data)
            data.append(lines(*rect_path(traj.boxes_in_xyxy[s, slots[pick]]),
                              rgba(class_colour(label), 0.08 + 0.77 * late), max(0.5, width * (0.25 + 0.5 * late)),
                              name="noisy box x_t (each step)", legendgroup="xt", showlegend=False))
    if keyed is not None:
        data[keyed]["showlegend"] = True
    # Centre paths of the last lives: x_t centres step by step, then the final box's centre.
    xs, ys = [], []
    for j, slot in enumerate(slots):
        pts = box_centres(traj.boxes_in_xyxy[start[slot]:, slot])
        pts = np.concatenate([pts, box_centres(final[j:j + 1])])
        xs.extend(pts[:, 0].tolist() + [None])
        ys.extend(pts[:, 1].tolist() + [None])
    data.append(lines(np.array(xs, dtype=np.float32), np.array(ys, dtype=np.float32), "rgba(255,255,255,0.7)", 1,
                      name="centre path", legendgroup="path", showlegend=True))
    # Earlier lives (renewed slots): their boxes' centres, ending with a cross where the slot was renewed.
    if (start[slots] > 0).any():
        ex, ey, end_x, end_y = [], [], [], []
        for slot in slots:
            if start[slot] == 0:
                continue
            pts = box_centres(traj.boxes_in_xyxy[:start[slot], slot])
            lives = np.concatenate([[0], np.flatnonzero(traj.renewed[:start[slot] - 1, slot]) + 1, [start[slot]]])
            for a, b in zip(lives[:-1], lives[1:]):
                ex.extend(pts[a:b, 0].tolist() + [None])
                ey.extend(pts[a:b, 1].tolist() + [None])
                end_x.append(float(pts[b - 1, 0]))
                end_y.append(float(pts[b - 1, 1]))
        data.append(lines(np.array(ex, dtype=np.float32), np.array(ey, dtype=np.float32), rgba(LIFE_COLOUR, 0.8), 1,
                          name="earlier lives (renewed)", legendgroup="lives", showlegend=True))
        data.append({"type": "scatter", "mode": "markers", "x": end_x, "y": end_y, "name": "renewed here",
                     "legendgroup": "lives", "showlegend": False, "hoverinfo": "skip",
                     "marker": {"symbol": "x-thin-open", "size": 8, "color": LIFE_COLOUR, "line": {"width": 1.5}}})
    for j, label in enumerate(np.unique(labels)):
        pick = labels == label
        data.append(lines(*rect_path(final[pick]), class_colour(label), width + 0.5,
                          name="final box (class colour)", legendgroup="final", showlegend=j == 0))
    centres = box_centres(final)
    scores = traj.scores[-1, stage, slots]
    rows = [[str(traj.class_names[int(k)]), float(sc), int(slot), int(start[slot]) + 1]
            for k, sc, slot in zip(labels, scores, slots)]
    data.append({"type": "scatter", "mode": "markers", "x": centres[:, 0], "y": centres[:, 1], "customdata": rows,
                 "name": "final boxes", "showlegend": False, "marker": {"size": 6, "color": "rgba(255,255,255,0.7)"},
                 "hovertemplate": ("<b>%{customdata[0]}</b> %{customdata[1]:.2f}<br>proposal #%{customdata[2]}, "
                                   "this life from step %{customdata[3]}<extra></extra>")})
    # The chart: IoU with the final box per step.
    for j, slot in enumerate(curve_slots):
        if slot not in set(slots.tolist()):
            continue
        colour = rgba(class_colour(traj.labels[-1, stage, slot]), 0.35)
        data.append({"type": "scatter", "mode": "lines", "x": steps, "y": curve["xt"][:, j], "name": f"#{slot}",
                     "line": {"color": colour, "width": 1}, "xaxis": "x2", "yaxis": "y2", "legendgroup": "xtcurve",
                     "showlegend": False, "hovertemplate": f"proposal #{slot}, step %{{x}}: IoU %{{y:.2f}}"
                                                           "<extra></extra>"})
    data.append({"type": "scatter", "mode": "lines+markers", "x": steps, "y": curve["mean_xt"],
                 "name": f"IoU(x_t, final), mean of top {len(curve_slots)}", "line": {"color": "#111827", "width": 3},
                 "xaxis": "x2", "yaxis": "y2", "legendgroup": "xtcurve", "showlegend": True,
                 "hovertemplate": "step %{x}: mean IoU of x_t %{y:.2f}<extra></extra>"})
    data.append({"type": "scatter", "mode": "lines+markers", "x": steps, "y": curve["mean_x0"],
                 "name": "IoU(x0 prediction, final), mean", "line": {"color": "#E45756", "width": 2, "dash": "dot"},
                 "xaxis": "x2", "yaxis": "y2", "legendgroup": "x0curve", "showlegend": True,
                 "hovertemplate": "step %{x}: mean IoU of x0 %{y:.2f}<extra></extra>"})
    xaxis, yaxis = image_axes(image.width, image.height, domain_x=(0, 0.6))
    layout = {
        "xaxis": xaxis, "yaxis": yaxis,
        "xaxis2": {"domain": [0.68, 1], "anchor": "y2", "title": {"text": "DDIM step"}, "dtick": 1 if s_count <= 12
                   else None, "range": [0.5, s_count + 0.5], "showgrid": False},
        "yaxis2": {"domain": [0.45, 1], "anchor": "x2", "range": [0, 1.02], "title": {"text": "IoU with final box"},
                   "gridcolor": "#eee"},
        "height": image_plot_height(image.width, image.height, low=300, high=560) + 60,
        "legend": {"orientation": "v", "x": 0.64, "xanchor": "left", "y": 0.3, "yanchor": "top", "font": {"size": 10},
                   "tracegroupgap": 0, "bgcolor": "rgba(209,213,219,0.9)", "groupclick": "togglegroup",
                   "title": {"text": "click to hide", "font": {"size": 10}}},
        "margin": {"l": 8, "r": 8, "t": 30, "b": 8},
        "title": {"text": f"The {len(slots)} best proposals from noise to their final box", "font": {"size": 13},
                  "x": 0.01, "xanchor": "left"},
        "meta": {"mean_xt": [round(float(v), 4) for v in curve["mean_xt"]]},
    }
    return make_figure(data, layout)
