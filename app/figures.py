"""Pure Plotly figure builders: numpy arrays and a ``Trajectory`` in, ``go.Figure`` out. No Gradio, no model.

Speed rules (measured, see /work/shared/UI-NOTES.md): the image is a JPEG data URI in one ``go.Image``; boxes are one
``Scatter(mode="lines")`` per (position, class, opacity level) with rectangles separated by NaN gaps; hover comes from
a marker trace at the box centres; heatmaps are ``go.Heatmap`` at the model's stride. Figures are assembled from
plain dicts with Plotly's validation off (10x faster at a few hundred traces), so every key here is a real Plotly
attribute, checked by the tests through ``validate_figure``.

Coordinates are original-image pixels throughout: x right, y down (the y axis is reversed).
"""
from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from diffdet.trajectory import Trajectory

# Tableau 10 first (PROPS has 10 classes), then more for COCO-sized label sets.
PALETTE: tuple[str, ...] = (
    "#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#EECA3B", "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC",
    "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B",
)
GT_COLOUR = "#111111"  # dashed, over a white halo so it reads on dark and light images
TP_COLOUR, FP_COLOUR, FN_COLOUR = "#2CA02C", "#D62728", "#FF9F1C"
NOISE_COLOUR, FRESH_COLOUR, HEATMAP_COLOUR = "#D9D9D9", "#19D3F3", "#FF9F1C"
FAINT_COLOUR = "#E5E7EB"  # boxes scoring below the first opacity edge, any class
RENEW_COLOUR = "#FF3B30"

# Box opacity by score: the noise stays visible but faint, confident boxes are solid.
# Three levels keep the trace count (and so the slider's redraw time) low.
OPACITY_EDGES = (0.2, 0.5)             # score bin edges
OPACITY_LEVELS = (0.2, 0.55, 1.0)      # one opacity per bin

BASE_LAYOUT: dict[str, Any] = {
    "template": {"layout": {"font": {"family": "Inter, Helvetica, Arial, sans-serif", "size": 12, "color": "#1f2937"},
                            "paper_bgcolor": "white", "plot_bgcolor": "white", "colorway": list(PALETTE),
                            "hoverlabel": {"align": "left"}}},
    "margin": {"l": 8, "r": 8, "t": 36, "b": 8},
    "hovermode": "closest",
}
IMAGE_PLOT_HEIGHT = 560
TYPICAL_PLOT_WIDTH = 640  # px of the main column on a laptop screen; sets the height so the image fills the width


def image_plot_height(width: int, height: int, columns: int = 1, low: int = 280, high: int = 720) -> int:
    """Plot-area height that shows an image of this aspect ratio at the typical plot width, within [low, high]."""
    return int(np.clip(TYPICAL_PLOT_WIDTH / columns * height / max(width, 1), low, high))


def class_colour(label: int) -> str:
    return PALETTE[int(label) % len(PALETTE)]


def rgba(hex_colour: str, alpha: float) -> str:
    value = hex_colour.lstrip("#")
    r, g, b = (int(value[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha:.2f})"


def opacity_level(scores: np.ndarray) -> np.ndarray:
    """Score (N,) -> index into OPACITY_LEVELS (N,)."""
    return np.digitize(np.asarray(scores, dtype=np.float64), OPACITY_EDGES)


def make_figure(data: list[dict], layout: dict) -> go.Figure:
    """Assemble a figure from plain dicts without Plotly's per-attribute validation."""
    return go.Figure({"data": data, "layout": {**BASE_LAYOUT, **layout}}, _validate=False)


def validate_figure(fig: go.Figure) -> go.Figure:
    """Raise ValueError naming any attribute Plotly does not know (a validated copy is built and dropped); returns
    ``fig`` itself, for the tests to inspect."""
    go.Figure(fig.to_dict())
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# image and geometry helpers


@dataclass(frozen=True)
class ImageSource:
    """A JPEG data URI of an image, encoded at most ``max_side`` pixels wide or high; ``scale`` = original pixels per
    encoded pixel, so the image lies over [0, width] x [0, height] in original-pixel coordinates."""

    uri: str
    width: int
    height: int
    scale: float

    @classmethod
    def from_array(cls, rgb: np.ndarray, max_side: int = 1280, quality: int = 85) -> "ImageSource":
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        height, width = rgb.shape[:2]
        image = Image.fromarray(rgb)
        scale = max(width, height) / max_side if max(width, height) > max_side else 1.0
        if scale > 1.0:
            image = image.resize((max(1, round(width / scale)), max(1, round(height / scale))), Image.BILINEAR)
            scale = width / image.width
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        return cls(uri, width, height, scale)

    def trace(self, xaxis: str = "x", yaxis: str = "y") -> dict:
        return {"type": "image", "source": self.uri, "x0": self.scale / 2, "y0": self.scale / 2, "dx": self.scale,
                "dy": self.scale, "xaxis": xaxis, "yaxis": yaxis, "hoverinfo": "skip", "name": "image"}


def image_axes(width: int, height: int, domain_x: Sequence[float] = (0, 1), domain_y: Sequence[float] = (0, 1),
               anchor: str = "y", x_anchor: str = "x", constrain: str = "domain") -> tuple[dict, dict]:
    """An x axis over [0, width] and a reversed y axis over [0, height] at one pixel aspect ratio. ``constrain``
    "domain" shrinks the plot area to the image; "range" keeps the area and pads the range (so an axis below can
    share x exactly)."""
    xaxis = {"range": [0, width], "domain": list(domain_x), "anchor": anchor, "visible": False,
             "constrain": constrain, "showgrid": False, "zeroline": False}
    yaxis = {"range": [height, 0], "domain": list(domain_y), "anchor": x_anchor, "visible": False,
             "scaleanchor": x_anchor, "scaleratio": 1, "constrain": constrain, "constraintoward": "top",
             "showgrid": False, "zeroline": False}
    return xaxis, yaxis


def rect_path(boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, 4) boxes -> closed-rectangle x and y polylines (6 M,), NaN between boxes so one trace draws them all."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
    gap = np.full(len(boxes), np.nan, np.float32)
    x1, y1, x2, y2 = boxes.T
    xs = np.stack([x1, x2, x2, x1, x1, gap], axis=1).ravel()  # (6 M,)
    ys = np.stack([y1, y1, y2, y2, y1, gap], axis=1).ravel()
    return xs, ys


def circle_path(centres_xy: np.ndarray, radii: np.ndarray, points: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Circles (M,) as one NaN-separated polyline of (points + 2) M vertices."""
    angles = np.linspace(0, 2 * np.pi, points + 1, dtype=np.float32)
    centres = np.asarray(centres_xy, np.float32).reshape(-1, 2)
    r = np.asarray(radii, np.float32).reshape(-1, 1)
    gap = np.full((len(centres), 1), np.nan, np.float32)
    xs = np.concatenate([centres[:, :1] + r * np.cos(angles)[None], gap], axis=1).ravel()
    ys = np.concatenate([centres[:, 1:] + r * np.sin(angles)[None], gap], axis=1).ravel()
    return xs, ys


def box_centres(boxes_xyxy: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    return (boxes[:, :2] + boxes[:, 2:]) / 2  # (M, 2)


def _lines(xs: np.ndarray, ys: np.ndarray, colour: str, width: float, name: str = "", dash: str = "solid",
           axes: tuple[str, str] = ("x", "y"), **extra: Any) -> dict:
    return {"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": name, "showlegend": False,
            "hoverinfo": "skip", "line": {"color": colour, "width": width, "dash": dash},
            "xaxis": axes[0], "yaxis": axes[1], **extra}


def _legend_key(name: str, colour: str, dash: str = "solid", symbol: str | None = None) -> dict:
    """An empty trace that only puts an entry in the legend (clicking legend items is switched off)."""
    trace = {"type": "scatter", "x": [None], "y": [None], "name": name, "showlegend": True, "hoverinfo": "skip",
             "visible": True}
    if symbol:
        trace.update(mode="markers", marker={"color": colour, "symbol": symbol, "size": 9})
    else:
        trace.update(mode="lines", line={"color": colour, "width": 3, "dash": dash})
    return trace


def _legend_layout() -> dict:
    return {"orientation": "v", "x": 1.0, "xanchor": "left", "y": 1.0, "yanchor": "top", "itemclick": False,
            "itemdoubleclick": False, "bgcolor": "rgba(255,255,255,0.8)", "font": {"size": 11}}


# ---------------------------------------------------------------------------------------------------------------------
# the denoising view


@dataclass(frozen=True)
class ViewOptions:
    """What the image views draw. ``stage`` indexes the head stages (-1 = the last, the one the sampler uses);
    ``classes_shown`` None = all."""

    score_threshold: float = 0.3
    classes_shown: frozenset[int] | None = None
    stage: int = -1
    show_labels: bool = True
    show_scores: bool = True
    line_width: float = 2.0
    show_gt: bool = True
    show_tracks: bool = True


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


def _label_text(names: list[str], scores: np.ndarray, show_labels: bool, show_scores: bool) -> list[str]:
    if show_labels and show_scores:
        return [f"{n} {s:.2f}" for n, s in zip(names, scores)]
    if show_labels:
        return list(names)
    return [f"{s:.2f}" for s in scores]


def _iou_text(ious: np.ndarray | None, count: int) -> list[str]:
    if ious is None:
        return ["no ground truth"] * count
    return [f"{v:.2f}" for v in ious]


def _scored_box_traces(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str], view: ViewOptions,
    axes: tuple[str, str], hover_rows: list[list], hover_template: str, box_ids: np.ndarray,
    renewed: np.ndarray | None = None,
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
    thin = max(0.5, view.line_width / 2)
    faint = levels == 0
    if faint.any():
        traces.append(_lines(*rect_path(boxes[faint]), rgba(FAINT_COLOUR, OPACITY_LEVELS[0]), thin,
                             name="low score", axes=axes))
    for label in np.unique(labels[~faint]):
        for level in np.unique(levels[(labels == label) & ~faint]):
            pick = (labels == label) & (levels == level)
            width = view.line_width if scores[pick].min() >= view.score_threshold else thin
            traces.append(_lines(*rect_path(boxes[pick]), rgba(class_colour(label), OPACITY_LEVELS[int(level)]),
                                 width, name=str(class_names[int(label)]), axes=axes))
    above = scores >= view.score_threshold
    if (view.show_labels or view.show_scores) and above.any():
        names = [str(class_names[int(k)]) for k in labels[above]]
        traces.append({
            "type": "scatter", "mode": "text", "x": boxes[above, 0], "y": boxes[above, 1],
            "text": _label_text(names, scores[above], view.show_labels, view.show_scores),
            "textposition": "top right", "hoverinfo": "skip", "showlegend": False, "name": "labels",
            "textfont": {"color": [class_colour(k) for k in labels[above]], "size": 11, "shadow": "auto",
                         "weight": 600},
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
                traces.append(_lines(xs, ys, rgba(colour, 0.55), max(0.5, view.line_width * 0.6), name=what,
                                     dash=dash, axes=axes))
        centres = box_centres(boxes)
        wh = boxes[:, 2:] - boxes[:, :2]
        rows = [[int(i), str(origin[i]), float(wh[i, 0]), float(wh[i, 1])] for i in range(n)]
        traces.append({
            "type": "scatter", "mode": "markers", "x": centres[:, 0], "y": centres[:, 1], "name": "inputs",
            "customdata": rows, "showlegend": False,
            "hovertemplate": (f"<b>box #%{{customdata[0]}}</b> fed to step {s + 1}/{steps}<br>%{{customdata[1]}}"
                              "<br>%{customdata[2]:.0f} x %{customdata[3]:.0f} px<extra></extra>"),
            "marker": {"size": 5, "color": rgba(NOISE_COLOUR, 0.5)}, "xaxis": axes[0], "yaxis": axes[1],
        })
        return traces
    if pos.kind == "out":
        s = pos.step
        stage = view.stage % traj.num_stages
        boxes, scores, labels = traj.boxes_xyxy[s, stage], traj.scores[s, stage], traj.labels[s, stage]
        n = boxes.shape[0]
        ious = gt_ious.get(f"out{s}") if gt_ious else None
        iou_text = _iou_text(ious, n)
        renewed = traj.renewed[s] if traj.renewed is not None else np.zeros(n, bool)
        rows = [[str(names[int(labels[i])]), float(scores[i]), int(i), iou_text[i],
                 "renewed after this step" if renewed[i] else "kept"] for i in range(n)]
        template = ("<b>%{customdata[0]}</b> score %{customdata[1]:.3f}<br>"
                    f"step {s + 1}/{steps} · stage {stage + 1}/{traj.num_stages}<br>"
                    "box #%{customdata[2]} · %{customdata[4]}<br>IoU with best ground truth: %{customdata[3]}"
                    "<extra></extra>")
        return _scored_box_traces(boxes, scores, labels, names, view, axes, rows, template, np.arange(n),
                                  renewed=renewed if s < steps - 1 else None)
    det = traj.detections
    m = len(det)
    ious = gt_ious.get("final") if gt_ious else None
    iou_text = _iou_text(ious, m)
    match = det_match if det_match is not None else np.full(m, "", dtype=object)
    rows = [[str(names[int(det.labels[i])]), float(det.scores[i]), int(det.step[i]) + 1, iou_text[i],
             int(i), str(match[i]) or "—"] for i in range(m)]
    template = ("<b>%{customdata[0]}</b> score %{customdata[1]:.3f}<br>detection #%{customdata[4]} · "
                "from step %{customdata[2]}<br>IoU with best ground truth: %{customdata[3]} · "
                "%{customdata[5]}<extra></extra>")
    return _scored_box_traces(det.boxes_xyxy, det.scores, det.labels, names, view, axes, rows, template,
                              np.arange(m))


def _track_traces(traj: Trajectory, pos_list: list[Position], view: ViewOptions, axes: tuple[str, str]) -> list[dict]:
    """For each position p, the centre paths up to p (breaks where a slot was renewed) of the proposals that read as
    boxes there: those whose latest prediction scored at least ``OPACITY_EDGES[0]`` (at the final position: the
    score threshold). The faint rest would add clutter, and every drawn track costs slider time (~10 ms for 100)."""
    if not view.show_tracks:
        return [{}] * len(pos_list)
    stage = view.stage % traj.num_stages
    s_count, n = traj.boxes_in_xyxy.shape[:2]
    # centres[2s] = input of step s, centres[2s + 1] = prediction of step s: (2S, N, 2)
    centres = np.empty((2 * s_count, n, 2), np.float32)
    centres[0::2] = (traj.boxes_in_xyxy[..., :2] + traj.boxes_in_xyxy[..., 2:]) / 2
    centres[1::2] = (traj.boxes_xyxy[:, stage, :, :2] + traj.boxes_xyxy[:, stage, :, 2:]) / 2
    breaks = np.zeros((2 * s_count, n), bool)  # breaks[k]: no segment between point k-1 and k
    if traj.renewed is not None:
        breaks[2::2] = traj.renewed[:-1]
    # At the final position only the slots that ended above the score threshold keep their track: how the boxes
    # that became detections travelled, without the clutter of the rest.
    kept = traj.scores[-1, stage] >= view.score_threshold  # (N,)
    out = []
    for p in range(len(pos_list)):
        last = min(p, 2 * s_count - 1)
        if last < 1:
            out.append({})
            continue
        pts = centres[:last + 1]  # (P, N, 2)
        # Each slot's path, slot after slot: its points, a NaN gap where it was renewed and one after its end.
        gap = np.full((1, n, 2), np.nan, np.float32)
        seq = np.concatenate([np.stack([np.where(breaks[:last + 1, :, None], np.nan, pts), pts], axis=1)
                              .reshape(-1, n, 2), gap])  # (2P + 1, N, 2): [gap-or-copy, point] ..., end gap
        used = np.ones(seq.shape[:2], bool)  # drop the copies (only the gaps are needed): half the points
        used[0:-1:2] = breaks[:last + 1]
        if pos_list[p].kind == "final":
            slots = kept
        else:  # the slots whose latest prediction scored at least the first opacity edge (they read as boxes)
            latest = (last - 1) // 2  # the step of the last prediction shown up to p
            slots = traj.scores[latest, stage] >= OPACITY_EDGES[0]
        seq, used = seq[:, slots].transpose(1, 0, 2), used[:, slots].T  # (N', 2P + 1, 2), (N', 2P + 1)
        xs, ys = seq[used][:, 0], seq[used][:, 1]
        out.append(_lines(xs.astype(np.float32), ys.astype(np.float32), "rgba(255,255,255,0.45)", 1,
                          name="centre tracks", axes=axes))
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
        width = max(1.0, view.line_width * 0.75)
        static.append(_lines(xs, ys, "rgba(255,255,255,0.85)", width + 2, name="ground truth halo", axes=axes))
        static.append(_lines(xs, ys, GT_COLOUR, width, name="ground truth", dash="dash", axes=axes))
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


def _legend_keys(traj: Trajectory, view: ViewOptions, has_gt: bool) -> list[tuple[str, str, str]]:
    """(symbol, colour, name) rows of the denoising view's key."""
    stage = view.stage % traj.num_stages
    confident = traj.scores[:, stage] >= view.score_threshold  # (S, N)
    used = set(np.unique(traj.labels[:, stage][confident]).tolist())
    used |= set(traj.detections.labels[traj.detections.scores >= view.score_threshold].tolist())
    if view.classes_shown is not None:
        used &= set(view.classes_shown)
    keys = [("━━", class_colour(k), traj.class_names[k]) for k in sorted(used)]
    keys.append(("━━", "#9CA3AF", f"score < {OPACITY_EDGES[0]:g}"))
    keys.append(("━━", "#9CA3AF", "noise in"))
    if traj.renewed is not None and traj.renewed.any():
        keys.append(("┅┅", FRESH_COLOUR, "renewed"))
        keys.append(("✕", RENEW_COLOUR, "to renew"))
    if traj.from_heatmap is not None and traj.from_heatmap.any():
        keys.append(("━━", HEATMAP_COLOUR, "from heatmap"))
    if has_gt and view.show_gt:
        keys.append(("╍╍", GT_COLOUR, "ground truth"))
    return keys


def key_annotation(rows: Sequence[tuple[str, str, str]], x: float = 1.0, y: float = 1.0) -> dict:
    """A legend drawn as one annotation (coloured symbols + names): unlike legend traces, it adds nothing to the
    per-trace work of every slider step."""
    text = "<br>".join(f"<span style='color:{colour}'><b>{symbol}</b></span> {name}" for symbol, colour, name in rows)
    return {"text": text, "x": x, "y": y, "xref": "paper", "yref": "paper", "xanchor": "left", "yanchor": "top",
            "align": "left", "showarrow": False, "font": {"size": 11}, "bgcolor": "rgba(255,255,255,0.85)"}


# Slot roles in drawing order (boxes under tracks under hover markers under labels and the caption).
SLOT_ROLES = ("boxes", "centre tracks", "hover", "labels", "caption")


def _slot_role(trace: dict) -> str:
    if trace["name"] in ("centre tracks", "labels", "caption"):
        return trace["name"]
    return "hover" if trace["mode"] == "markers" else "boxes"


def _slots(per_position: list[list[dict]]) -> tuple[int, list[list[dict | None]]]:
    """Lay every position's traces onto one shared set of slot traces, role by role: returns the slot count and, per
    position, the trace each slot shows there (None = the slot is hidden there)."""
    grouped = [{role: [t for t in traces if _slot_role(t) == role] for role in SLOT_ROLES} for traces in per_position]
    widths = {role: max((len(g[role]) for g in grouped), default=0) for role in SLOT_ROLES}
    layout = [[*(g[role] + [None] * (widths[role] - len(g[role])) for role in SLOT_ROLES)] for g in grouped]
    layout = [[t for role_slots in row for t in role_slots] for row in layout]
    return sum(widths.values()), layout


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
            data = np.ascontiguousarray(value, dtype="<f4").tobytes()
            return {"dtype": "f4", "bdata": base64.b64encode(data).decode("ascii")}
        return value.tolist()
    return value


def _restyle_args(shown: list[dict | None], keys: Sequence[str]) -> dict[str, list]:
    """One ``Plotly.restyle`` update that turns the slot traces into ``shown`` (one entry per slot): for each of
    ``keys`` (every attribute any position sets, so nothing lingers from the position shown before), per slot its
    value or None (restyle resets that attribute to its default); empty slots hidden."""
    flat = [_flatten(t) if t is not None else {} for t in shown]
    args: dict[str, list] = {"visible": [t is not None for t in shown]}
    for key in keys:
        args[key] = [_typed_array(f.get(key)) for f in flat]
    return args


def _slider(panels: list[tuple[list[int], list[list[dict | None]]]], pos_lists: list[list[Position]], active: int,
            x: float = 0.02, length: float = 0.96) -> dict:
    """One restyle slider over positions. The positions share a few slot traces per panel (``panels``: each panel's
    slot trace indices and, per position, what each slot shows); a step restyles the slots' data and style, so the
    image and ground truth are left alone and the figure holds a dozen traces instead of one set per position (the
    per-step redraw cost grows with the figure's trace count). With two panels of different lengths, panel i shows
    the position at the same fraction of its run."""
    count = max(len(p) for p in pos_lists)
    longest = pos_lists[int(np.argmax([len(q) for q in pos_lists]))]
    indices = [k for slot_ids, _ in panels for k in slot_ids]
    keys = sorted({k for _, per_position in panels for slots in per_position for t in slots if t is not None
                   for k in _flatten(t)} - {"type", "xaxis", "yaxis", "visible"})
    steps = []
    for p in range(count):
        local = [round(p * (len(pl) - 1) / max(count - 1, 1)) for pl in pos_lists]
        shown = [t for (_, per_position), q in zip(panels, local) for t in per_position[q]]
        steps.append({"method": "restyle", "label": longest[p].label, "args": [_restyle_args(shown, keys), indices],
                      "value": longest[p].label, "execute": True})
    show_ticks = count <= 13
    return {
        "active": active, "steps": steps, "x": x, "len": length, "y": 0, "yanchor": "top", "pad": {"t": 8, "b": 4},
        "currentvalue": {"visible": not show_ticks, "prefix": "position ", "xanchor": "left", "font": {"size": 12}},
        "font": {"size": 10, "color": "#374151" if show_ticks else "rgba(0,0,0,0)"},
        "ticklen": 4, "transition": {"duration": 0}, "name": "step",
    }


def _slot_traces(slots: list[dict | None], axes: tuple[str, str]) -> list[dict]:
    """The slot traces as the figure opens: what they show at the active position, empty hidden ones elsewhere."""
    empty = {"type": "scatter", "mode": "lines", "x": [], "y": [], "visible": False, "hoverinfo": "skip",
             "showlegend": False, "name": "slot", "xaxis": axes[0], "yaxis": axes[1]}
    return [dict(t, visible=True) if t is not None else dict(empty) for t in slots]


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
    count, slots = _slots(per_position)
    traces = static + _slot_traces(slots[active], axes)
    keys = _legend_keys(traj, view, gt_boxes is not None and len(gt_boxes) > 0)
    xaxis, yaxis = image_axes(image.width, image.height, domain_x=(0, 0.83))
    slot_ids = list(range(len(static), len(static) + count))
    slider = _slider([(slot_ids, slots)], [pos_list], active, length=0.8)
    layout = {
        "xaxis": xaxis, "yaxis": yaxis, "height": image_plot_height(image.width, image.height) + 34 + 70,
        "sliders": [slider], "showlegend": False, "annotations": [key_annotation(keys, x=0.84)],
        "margin": {"l": 8, "r": 8, "t": 34, "b": 70},
        "meta": {"positions": [p.label for p in pos_list], "image_size_hw": [image.height, image.width]},
    }
    return make_figure(traces, layout)


def compare_figure(
    trajs: Sequence[Trajectory], titles: Sequence[str], image: ImageSource, view: ViewOptions = ViewOptions(),
    gt_boxes: np.ndarray | None = None, gt_ious: Sequence[dict[str, np.ndarray] | None] | None = None,
    det_matches: Sequence[np.ndarray | None] | None = None,
) -> go.Figure:
    """A/B: two denoising panels side by side with shared zoom and one slider that scrubs both."""
    if len(trajs) != 2 or len(titles) != 2:
        raise ValueError(f"compare_figure needs exactly two trajectories and titles, got {len(trajs)}, {len(titles)}")
    gt_ious = gt_ious or [None, None]
    det_matches = det_matches or [None, None]
    panels, pos_lists = [], []
    layout: dict[str, Any] = {}
    gap = 0.02
    for i, traj in enumerate(trajs):
        xname, yname = ("x", "y") if i == 0 else ("x2", "y2")
        static, per_position, pos_list = _panel(traj, image, view, (xname, yname), gt_boxes, gt_ious[i],
                                                det_matches[i], caption_prefix=f"{titles[i]}: ")
        panels.append((static, _slots(per_position), (xname, yname)))
        pos_lists.append(pos_list)
        domain = (0, 0.5 - gap / 2) if i == 0 else (0.5 + gap / 2, 1)
        xaxis, yaxis = image_axes(image.width, image.height, domain_x=domain, anchor=yname, x_anchor=xname)
        if i == 1:
            xaxis["matches"], yaxis["matches"] = "x", "y"
        layout["xaxis" if i == 0 else "xaxis2"] = xaxis
        layout["yaxis" if i == 0 else "yaxis2"] = yaxis
    count = max(len(p) for p in pos_lists)
    active = count - 1
    flat: list[dict] = []
    slotted = []
    for (static, (slot_count, slots), axes), pos_list in zip(panels, pos_lists):
        local = round(active * (len(pos_list) - 1) / max(count - 1, 1))
        flat.extend(static)
        slotted.append((list(range(len(flat), len(flat) + slot_count)), slots))
        flat.extend(_slot_traces(slots[local], axes))
    slider = _slider(slotted, pos_lists, active)
    layout.update({"height": image_plot_height(image.width, image.height, columns=2) + 40 + 70, "sliders": [slider],
                   "showlegend": False, "margin": {"l": 8, "r": 8, "t": 40, "b": 70}})
    return make_figure(flat, layout)


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
        {"type": "bar", "x": steps, "y": above, "name": f"boxes ≥ {score_threshold:.2f}",
         "marker": {"color": "#4C78A8"}, "hovertemplate": "step %{x}: %{y} boxes<extra></extra>"},
        {"type": "scatter", "mode": "lines+markers", "x": steps, "y": mean_all, "name": "mean score (all boxes)",
         "yaxis": "y2", "line": {"color": "#F58518"}, "hovertemplate": "step %{x}: mean %{y:.3f}<extra></extra>"},
    ]
    if (scores >= score_threshold).any():
        mean_above = np.array([s[s >= score_threshold].mean() if (s >= score_threshold).any() else np.nan
                               for s in scores])
        data.append({"type": "scatter", "mode": "lines+markers", "x": steps, "y": mean_above,
                     "name": f"mean score (≥ {score_threshold:.2f})", "yaxis": "y2",
                     "line": {"color": "#E45756", "dash": "dot"},
                     "hovertemplate": "step %{x}: mean %{y:.3f}<extra></extra>"})
    if traj.renewed is not None:
        data.append({"type": "bar", "x": steps, "y": traj.renewed.sum(axis=1), "name": "renewed after step",
                     "marker": {"color": "#19D3F3"}, "hovertemplate": "step %{x}: %{y} renewed<extra></extra>"})
    layout = {
        "height": 260, "barmode": "group", "margin": {"l": 48, "r": 48, "t": 30, "b": 40},
        "xaxis": {"title": {"text": "DDIM step"}, "dtick": 1, "showgrid": False},
        "yaxis": {"title": {"text": "boxes"}, "rangemode": "tozero", "gridcolor": "#eee"},
        "yaxis2": {"title": {"text": "score"}, "overlaying": "y", "side": "right", "range": [0, 1],
                   "showgrid": False},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0, "font": {"size": 11}},
    }
    return make_figure(data, layout)


def message_figure(text: str, height: int = 320) -> go.Figure:
    """An empty figure that says why it is empty."""
    return make_figure([], {
        "height": height, "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "annotations": [{"text": text, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper", "showarrow": False,
                         "font": {"size": 14, "color": "#6b7280"}}],
    })


# ---------------------------------------------------------------------------------------------------------------------
# heatmaps

HEAT_SCALE = "Viridis"
OVERLAY_SCALE = [[0.0, "rgba(255,237,160,0)"], [0.15, "rgba(254,178,76,0.35)"], [0.5, "rgba(240,59,32,0.75)"],
                 [1.0, "rgba(189,0,38,1)"]]
DIFF_SCALE = [[0.0, "rgb(33,102,172)"], [0.25, "rgb(146,197,222)"], [0.5, "rgb(247,247,247)"],
              [0.75, "rgb(244,165,130)"], [1.0, "rgb(178,24,43)"]]
DIFF_OVERLAY_SCALE = [[0.0, "rgba(33,102,172,1)"], [0.5, "rgba(247,247,247,0)"], [1.0, "rgba(178,24,43,1)"]]


def select_channel(heatmap: np.ndarray, class_index: int | None) -> np.ndarray:
    """(K, H, W) -> (H, W): one class, or the maximum over classes when ``class_index`` is None."""
    return heatmap.max(axis=0) if class_index is None else heatmap[class_index]


def _heatmap_trace(z: np.ndarray, stride: float, axes: tuple[str, str], colorscale: Any, zmin: float, zmax: float,
                   name: str, colorbar: dict | None = None, **extra: Any) -> dict:
    trace = {"type": "heatmap", "z": np.asarray(z, np.float32).round(3), "x0": stride / 2, "dx": stride,
             "y0": stride / 2, "dy": stride, "zmin": zmin, "zmax": zmax, "colorscale": colorscale, "name": name,
             "xaxis": axes[0], "yaxis": axes[1], "showscale": colorbar is not None,
             "hovertemplate": f"{name}: %{{z:.3f}}<br>x %{{x:.0f}} px, y %{{y:.0f}} px<extra></extra>", **extra}
    if colorbar is not None:
        trace["colorbar"] = {"thickness": 10, "len": 0.8, "tickfont": {"size": 10}, **colorbar}
    return trace


def heatmap_figure(
    predicted: np.ndarray | None, target: np.ndarray, stride: float, image: ImageSource, class_names: Sequence[str],
    class_index: int | None = None, target_source: str = "ground truth", mode: str = "side",
    boxes_xyxy: np.ndarray | None = None,
) -> go.Figure:
    """Predicted vs synthesised centre heatmap.

    Args:
        predicted (np.ndarray[K, Hh, Wh]) probabilities, or None for a model without a heatmap head.
        target (np.ndarray[K, Hh, Wh]) from ``diffdet.heatmap.synthesize_heatmap``; cell (i, j) centred at
            ((j + .5) * stride, (i + .5) * stride) original-image pixels. Either map may also come already reduced
            to the shown channel, (Hh, Wh).
        class_index: one class, or None for the maximum over classes.
        mode: "side" = predicted | target | difference with shared zoom; "overlay" = on the image, with buttons to
            switch the layer and a slider for its opacity (both in the browser).
        boxes_xyxy (np.ndarray[G, 4]): outlines drawn for orientation (the target's boxes).
    """
    if mode not in ("side", "overlay"):
        raise ValueError(f"mode must be 'side' or 'overlay', got {mode!r}")
    which = "max over classes" if class_index is None else class_names[class_index]
    tgt = target if target.ndim == 2 else select_channel(target, class_index)
    pred = None
    if predicted is not None:
        pred = predicted if predicted.ndim == 2 else select_channel(predicted, class_index)
    if pred is not None and pred.shape != tgt.shape:
        raise ValueError(f"predicted {pred.shape} and target {tgt.shape} grids differ")
    diff = pred - tgt if pred is not None else None
    outline = rect_path(boxes_xyxy) if boxes_xyxy is not None and len(boxes_xyxy) else None
    data: list[dict] = []
    layout: dict[str, Any] = {}
    if mode == "side":
        titles = [f"predicted ({which})", f"target from {target_source}", "predicted − target"]
        gap = 0.03
        width = (1 - 2 * gap) / 3
        annotations = []
        for i, title in enumerate(titles):
            suffix = "" if i == 0 else str(i + 1)
            axes = (f"x{suffix}", f"y{suffix}")
            domain = (i * (width + gap), i * (width + gap) + width)
            xaxis, yaxis = image_axes(image.width, image.height, domain_x=domain, anchor=axes[1], x_anchor=axes[0])
            if i:
                xaxis["matches"], yaxis["matches"] = "x", "y"
            layout[f"xaxis{suffix}"], layout[f"yaxis{suffix}"] = xaxis, yaxis
            annotations.append({"text": title, "x": domain[0] + width / 2, "y": 1.0, "xref": "paper",
                                "yref": "paper", "xanchor": "center", "yanchor": "bottom", "showarrow": False,
                                "font": {"size": 12}})
            z = (pred, tgt, diff)[i]
            if z is None:
                annotations.append({"text": "this checkpoint has<br>no heatmap head", "x": domain[0] + width / 2,
                                    "y": 0.5, "xref": "paper", "yref": "paper", "showarrow": False,
                                    "font": {"color": "#6b7280"}})
                data.append({"type": "scatter", "x": [0, image.width], "y": [0, image.height], "mode": "markers",
                             "marker": {"opacity": 0}, "hoverinfo": "skip", "showlegend": False,
                             "xaxis": axes[0], "yaxis": axes[1]})
            else:
                bar = {"orientation": "h", "x": domain[0] + width / 2, "xanchor": "center", "y": -0.04,
                       "yanchor": "top", "len": width * 0.9, "thickness": 8}
                if i < 2:
                    data.append(_heatmap_trace(z, stride, axes, HEAT_SCALE, 0, 1, ("predicted", "target")[i],
                                               bar if i == 1 or pred is None else None))
                else:
                    data.append(_heatmap_trace(z, stride, axes, DIFF_SCALE, -1, 1, "difference", bar))
            if outline is not None:
                data.append(_lines(*outline, "rgba(255,255,255,0.6)", 1, name="boxes", axes=axes))
        layout.update({"height": image_plot_height(image.width, image.height, columns=3, low=140) + 30 + 50,
                       "annotations": annotations, "margin": {"l": 8, "r": 8, "t": 30, "b": 50},
                       "showlegend": False})
        return make_figure(data, layout)

    xaxis, yaxis = image_axes(image.width, image.height)
    data.append(image.trace())
    layers = [("predicted", pred, OVERLAY_SCALE, 0, 1), ("target", tgt, OVERLAY_SCALE, 0, 1),
              ("difference", diff, DIFF_OVERLAY_SCALE, -1, 1)]
    layers = [layer for layer in layers if layer[1] is not None]
    first = 1
    for i, (name, z, scale, lo, hi) in enumerate(layers):
        data.append(_heatmap_trace(z, stride, ("x", "y"), scale, lo, hi, name, {"x": 1.0, "xanchor": "left"},
                                   opacity=0.7, visible=i == 0))
    if outline is not None:
        data.append(_lines(*outline, "rgba(255,255,255,0.7)", 1, name="boxes"))
    count = len(data)
    heat_ids = list(range(first, first + len(layers)))
    buttons = [{"label": name, "method": "restyle",
                "args": [{"visible": [True] * first + [j == i for j in range(len(layers))]
                          + [True] * (count - first - len(layers))}]}
               for i, (name, *_rest) in enumerate(layers)]
    opacity_steps = [{"label": f"{v:.1f}", "method": "restyle", "args": [{"opacity": v}, heat_ids]}
                     for v in np.round(np.linspace(0, 1, 11), 1)]
    layout.update({
        "xaxis": xaxis, "yaxis": yaxis, "height": image_plot_height(image.width, image.height) + 44 + 60,
        "showlegend": False,
        "margin": {"l": 8, "r": 40, "t": 44, "b": 60},
        "updatemenus": [{"type": "buttons", "direction": "right", "buttons": buttons, "x": 0, "y": 1.0,
                         "xanchor": "left", "yanchor": "bottom", "pad": {"b": 4}, "showactive": True,
                         "active": 0}],
        "sliders": [{"active": 7, "steps": opacity_steps, "x": 0.02, "len": 0.96, "y": 0, "yanchor": "top",
                     "currentvalue": {"prefix": "heatmap opacity ", "font": {"size": 12}}, "pad": {"t": 6},
                     "font": {"size": 9}, "transition": {"duration": 0}, "name": "opacity"}],
        "annotations": [{"text": f"class: {which} · target from {target_source}", "x": 1, "y": 1.0,
                         "xref": "paper", "yref": "paper", "xanchor": "right", "yanchor": "bottom",
                         "showarrow": False, "font": {"size": 12}}],
    })
    return make_figure(data, layout)


def target_figure(
    image: ImageSource, boxes_xyxy: np.ndarray, labels: np.ndarray, class_names: Sequence[str], target: np.ndarray,
    stride: float, radii_cells: np.ndarray, class_index: int | None = None, profile_box: int | None = None,
    source: str = "ground truth", min_radius: float | None = None, rho: float | None = None,
    profile_map: np.ndarray | None = None,
) -> go.Figure:
    """The synthesised target on the image with each box's gaussian radius drawn as a circle, and below it the 1-D
    profile of the target along the row through one box's centre (x shared with the image).

    Args:
        boxes_xyxy (np.ndarray[G, 4]) pixels, labels (np.ndarray[G]) class ids: the boxes the target comes from.
        target (np.ndarray[K, Hh, Wh]): ``synthesize_heatmap`` output, or (Hh, Wh) already reduced to the shown
            class; radii_cells (np.ndarray[G]) from ``gaussian_radius``, in heatmap cells (one cell = ``stride``
            pixels).
        class_index: the class shown (None = max over classes); profile_box: index into the boxes (None = none).
        profile_map (np.ndarray[Hh, Wh]): the profile box's class channel, needed when ``target`` is 2-D.
    """
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    shown = np.ones(len(labels), bool) if class_index is None else labels == class_index
    z = target if target.ndim == 2 else select_channel(target, class_index)
    axes_img, axes_prof = ("x", "y"), ("x2", "y2")
    xaxis, yaxis = image_axes(image.width, image.height, domain_y=(0.3, 1.0), constrain="range")
    xaxis2 = {"domain": [0, 1], "anchor": "y2", "matches": "x", "showgrid": False, "zeroline": False,
              "title": {"text": "x (pixels)", "font": {"size": 11}}}
    yaxis2 = {"domain": [0, 0.2], "anchor": "x2", "range": [0, 1.08], "title": {"text": "target", "font": {"size": 11}},
              "gridcolor": "#eee", "zeroline": False}
    # The live view resends this figure on every slider move: the map travels as uint8 (4x smaller than float32)
    # and is read exactly in the profile below, so it carries no hover of its own.
    ticks = [0, 0.25, 0.5, 0.75, 1.0]
    z_uint8 = np.round(np.clip(z, 0, 1) * 255).astype(np.uint8)
    heat = _heatmap_trace(z_uint8, stride, axes_img, OVERLAY_SCALE, 0, 255, "target",
                          {"x": 1.0, "xanchor": "left", "y": 0.65, "len": 0.65,
                           "tickvals": [t * 255 for t in ticks], "ticktext": [f"{t:g}" for t in ticks]},
                          opacity=0.75)
    heat["z"] = z_uint8
    heat["hoverinfo"] = "skip"
    heat.pop("hovertemplate")
    data = [image.trace(), heat]
    centres = box_centres(boxes)
    radii_px = np.asarray(radii_cells, np.float32).reshape(-1) * stride
    for label in np.unique(labels[shown]):
        pick = shown & (labels == label)
        data.append(_lines(*rect_path(boxes[pick]), class_colour(label), 1.5, name=class_names[int(label)]))
    if shown.any():
        data.append(_lines(*circle_path(centres[shown], radii_px[shown]), "rgba(255,255,255,0.95)", 1.5,
                           name="gaussian radius", dash="dot"))
        rows = [[str(class_names[int(labels[i])]), float(radii_cells[i]), float(radii_px[i]),
                 float(boxes[i, 2] - boxes[i, 0]), float(boxes[i, 3] - boxes[i, 1]), int(i)]
                for i in np.flatnonzero(shown)]
        data.append({"type": "scatter", "mode": "markers", "x": centres[shown, 0], "y": centres[shown, 1],
                     "customdata": rows, "showlegend": False, "name": "centres",
                     "marker": {"size": 6, "color": "white", "line": {"width": 1, "color": "black"}},
                     "hovertemplate": ("<b>#%{customdata[5]} %{customdata[0]}</b><br>box %{customdata[3]:.0f} x "
                                       "%{customdata[4]:.0f} px<br>radius %{customdata[1]:.2f} cells = "
                                       "%{customdata[2]:.1f} px<extra></extra>")})
    shapes = []
    title = f"target from {source} · class: {'max over classes' if class_index is None else class_names[class_index]}"
    if min_radius is not None and rho is not None:
        title += f" · r = max({min_radius:g}, {rho:g} · min(w, h)) cells, 1 cell = {stride:.1f} px"
    if profile_box is not None and 0 <= profile_box < len(boxes):
        b = int(profile_box)
        channel = profile_map if profile_map is not None else (target if target.ndim == 2 else target[labels[b]])
        row = int(np.clip(np.floor(centres[b, 1] / stride), 0, channel.shape[0] - 1))
        values = channel[row]  # (Wh,)
        xs = (np.arange(values.shape[0], dtype=np.float32) + 0.5) * stride
        data.append({"type": "scatter", "mode": "lines+markers", "x": xs, "y": values.round(4),
                     "line": {"color": class_colour(labels[b]), "width": 2, "shape": "linear"},
                     "marker": {"size": 3}, "name": "profile", "showlegend": False,
                     "xaxis": "x2", "yaxis": "y2",
                     "hovertemplate": "x %{x:.0f} px: %{y:.3f}<extra></extra>"})
        data.append(_lines(*rect_path(boxes[b:b + 1]), "#FFFFFF", 3.0, name="profile box"))
        data.append(_lines(np.array([0, image.width], np.float32),
                           np.array([(row + 0.5) * stride] * 2, np.float32), "rgba(255,255,255,0.8)", 1,
                           name="profile row", dash="dash"))
        cx, r = float(centres[b, 0]), float(radii_px[b])
        for x in (cx - r, cx + r):
            shapes.append({"type": "line", "xref": "x2", "yref": "y2", "x0": x, "x1": x, "y0": 0, "y1": 1.05,
                           "line": {"color": "#6b7280", "dash": "dot", "width": 1}})
        title += f"<br>profile: box #{b} ({class_names[int(labels[b])]}), dotted lines at centre ± r"
    layout = {"xaxis": xaxis, "yaxis": yaxis, "xaxis2": xaxis2, "yaxis2": yaxis2, "shapes": shapes,
              "height": int(image_plot_height(image.width, image.height) / 0.7) + 96, "showlegend": False,
              "title": {"text": title, "font": {"size": 12}, "x": 0.01, "xanchor": "left", "y": 0.985,
                        "yanchor": "top", "yref": "container"},
              "margin": {"l": 50, "r": 50, "t": 64, "b": 40}}
    return make_figure(data, layout)


# ---------------------------------------------------------------------------------------------------------------------
# results and training


def results_figure(
    image: ImageSource, boxes_xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
    status: np.ndarray | None = None, best_iou: np.ndarray | None = None, gt_boxes: np.ndarray | None = None,
    gt_labels: np.ndarray | None = None, gt_matched: np.ndarray | None = None, view: ViewOptions = ViewOptions(),
) -> go.Figure:
    """Final detections; with ground truth, true positives green, false positives red and missed ground truth
    (false negatives) dashed orange at IoU 0.5.

    Args:
        boxes_xyxy (np.ndarray[M, 4]), scores (M,), labels (M,): the detections drawn (already thresholded).
        status (M,): "TP" / "FP" per detection; best_iou (M,) its best IoU with a ground-truth box of any class.
        gt_boxes (G, 4), gt_labels (G,), gt_matched (G,) bool: ground truth and whether a detection found it.
    """
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    data = [image.trace()]
    have_gt = gt_boxes is not None and status is not None
    if have_gt:
        groups = [("TP", TP_COLOUR, "true positive"), ("FP", FP_COLOUR, "false positive")]
        for key, colour, name in groups:
            pick = status == key
            if pick.any():
                data.append(_lines(*rect_path(boxes[pick]), colour, view.line_width, name=name))
            data.append(_legend_key(name, colour))
        missed = ~np.asarray(gt_matched, bool)
        if missed.any():
            data.append(_lines(*rect_path(gt_boxes[missed]), FN_COLOUR, view.line_width, name="missed", dash="dash"))
        if (~missed).any() and view.show_gt:
            data.append(_lines(*rect_path(gt_boxes[~missed]), GT_COLOUR, 1, name="found gt", dash="dash"))
        data.append(_legend_key("false negative (missed)", FN_COLOUR, dash="dash"))
        if len(gt_boxes) and missed.any():
            centres = box_centres(gt_boxes[missed])
            data.append({"type": "scatter", "mode": "markers", "x": centres[:, 0], "y": centres[:, 1],
                         "showlegend": False, "name": "missed", "marker": {"size": 7, "color": FN_COLOUR},
                         "text": [f"missed {class_names[int(k)]}" for k in gt_labels[missed]],
                         "hovertemplate": "<b>%{text}</b> (false negative)<extra></extra>"})
    else:
        for label in np.unique(labels):
            pick = labels == label
            data.append(_lines(*rect_path(boxes[pick]), class_colour(label), view.line_width,
                               name=class_names[int(label)]))
            data.append(_legend_key(class_names[int(label)], class_colour(label)))
    if len(boxes):
        names = [str(class_names[int(k)]) for k in labels]
        if view.show_labels or view.show_scores:
            colours = ([TP_COLOUR if s == "TP" else FP_COLOUR for s in status] if have_gt
                       else [class_colour(k) for k in labels])
            data.append({"type": "scatter", "mode": "text", "x": boxes[:, 0], "y": boxes[:, 1],
                         "text": _label_text(names, scores, view.show_labels, view.show_scores),
                         "textposition": "top right", "hoverinfo": "skip", "showlegend": False, "name": "labels",
                         "textfont": {"color": colours, "size": 11, "shadow": "auto", "weight": 600}})
        centres = box_centres(boxes)
        iou_text = _iou_text(best_iou, len(boxes))
        rows = [[names[i], float(scores[i]), iou_text[i], str(status[i]) if have_gt else "no ground truth", i]
                for i in range(len(boxes))]
        data.append({"type": "scatter", "mode": "markers", "x": centres[:, 0], "y": centres[:, 1],
                     "customdata": rows, "showlegend": False, "name": "detections",
                     "marker": {"size": 7, "color": "rgba(255,255,255,0.6)"},
                     "hovertemplate": ("<b>#%{customdata[4]} %{customdata[0]}</b> %{customdata[1]:.3f}<br>"
                                       "%{customdata[3]} · best IoU %{customdata[2]}<extra></extra>")})
    xaxis, yaxis = image_axes(image.width, image.height)
    layout = {"xaxis": xaxis, "yaxis": yaxis, "height": image_plot_height(image.width, image.height) + 16,
              "legend": _legend_layout(),
              "margin": {"l": 8, "r": 8, "t": 8, "b": 8}}
    return make_figure(data, layout)


# The PROPS paper's Table I (ResNet-50, 200 proposals): per-class AP without / with the heatmap head.
PAPER_PROPS_AP: dict[str, tuple[float, float]] = {
    "master_chef_can": (74.873, 80.74), "cracker_box": (72.318, 77.84), "sugar_box": (75.262, 79.01),
    "tomato_soup_can": (72.893, 76.05), "mustard_bottle": (72.541, 79.95), "tuna_fish_can": (44.210, 58.62),
    "gelatin_box": (55.481, 60.85), "potted_meat_can": (65.272, 70.77), "mug": (70.459, 75.43),
    "large_marker": (25.211, 34.40),
}


def ap_scale(rows: Sequence[dict]) -> float:
    """100 when a file stores AP as fractions (pycocotools), 1 when as percentages (detectron2, this project):
    decided once per file, so an early AP below 1 % is not mistaken for a fraction."""
    values = [abs(float(v)) for r in rows if isinstance(r.get("eval"), dict)
              for k, v in r["eval"].items() if k.startswith("AP") and isinstance(v, (int, float))]
    return 1.0 if any(v > 1.0 for v in values) else 100.0


def training_figure(rows: Sequence[dict], title: str = "") -> go.Figure:
    """Curves of a run's metrics file: losses and learning rate against iteration, AP and AP50 against iteration, and
    per-class AP at the last evaluation next to the PROPS paper's Table I. Per-stage losses (``loss_ce_0`` ...)
    start hidden; click their legend entries to show them."""
    train = [r for r in rows if "eval" not in r]
    evals = [r for r in rows if isinstance(r.get("eval"), dict)]
    scale = ap_scale(rows)
    small = {"size": 10}
    layout: dict[str, Any] = {
        "height": 680, "margin": {"l": 56, "r": 16, "t": 24, "b": 48}, "barmode": "group",
        "xaxis": {"domain": [0, 0.36], "anchor": "y", "title": {"text": "iteration"}},
        "yaxis": {"domain": [0.56, 1], "anchor": "x", "type": "log", "title": {"text": "loss"}},
        "xaxis2": {"domain": [0.6, 1], "anchor": "y2", "title": {"text": "iteration"}, "matches": "x"},
        "yaxis2": {"domain": [0.56, 1], "anchor": "x2", "title": {"text": "AP (%)"}, "rangemode": "tozero"},
        "xaxis3": {"domain": [0, 1], "anchor": "y3", "tickangle": -20},
        "yaxis3": {"domain": [0, 0.34], "anchor": "x3", "title": {"text": "AP (%) per class"}, "rangemode": "tozero"},
        # Three legends, one beside each panel (losses: a scrollable column; click to show per-stage terms).
        "legend": {"x": 0.37, "y": 1, "yanchor": "top", "font": small, "maxheight": 0.42, "tracegroupgap": 2},
        "legend2": {"x": 0.6, "y": 1.0, "yanchor": "bottom", "orientation": "h", "font": small},
        "legend3": {"x": 0, "y": 0.36, "yanchor": "bottom", "orientation": "h", "font": small},
    }
    data: list[dict] = []
    loss_keys = sorted({k for r in train for k in r if k.startswith("loss") and isinstance(r[k], (int, float))})
    totals = [k for k in ("loss_total", "loss") if k in loss_keys]
    for i, key in enumerate(loss_keys):
        pts = [(r["iter"], r[key]) for r in train if isinstance(r.get(key), (int, float)) and r[key] > 0]
        if not pts:
            continue
        xs, ys = zip(*pts)
        per_stage = key[-1].isdigit() and "_" in key
        data.append({"type": "scatter", "mode": "lines", "x": list(xs), "y": list(ys), "name": key,
                     "line": {"width": 2.5 if key in totals else 1.2, "color": PALETTE[i % len(PALETTE)]},
                     "hovertemplate": f"{key} at iter %{{x}}: %{{y:.4f}}<extra></extra>",
                     "xaxis": "x", "yaxis": "y", "legendgroup": "loss",
                     "visible": "legendonly" if per_stage else True})
    for key, colour in (("AP", "#E45756"), ("AP50", "#4C78A8"), ("AP75", "#54A24B")):
        pts = [(r["iter"], float(r["eval"][key]) * scale) for r in evals
               if isinstance(r["eval"].get(key), (int, float))]
        if pts:
            xs, ys = zip(*pts)
            data.append({"type": "scatter", "mode": "lines+markers", "x": list(xs), "y": list(ys), "name": key,
                         "line": {"color": colour}, "xaxis": "x2", "yaxis": "y2", "legend": "legend2",
                         "hovertemplate": f"{key} at iter %{{x}}: %{{y:.2f}}<extra></extra>"})
    last = next((r for r in reversed(evals) if isinstance(r["eval"].get("per_class"), dict)), None)
    annotations = []
    if last is not None:
        per_class = {k: float(v) * scale for k, v in last["eval"]["per_class"].items() if isinstance(v, (int, float))}
        names = list(per_class)
        data.append({"type": "bar", "x": names, "y": [per_class[n] for n in names],
                     "name": f"this run (iter {last['iter']})", "marker": {"color": "#E45756"},
                     "xaxis": "x3", "yaxis": "y3", "legend": "legend3"})
        known = [n for n in names if n in PAPER_PROPS_AP]
        if known:
            for j, (label, colour) in enumerate((("paper R-50, no heatmap", "#BAB0AC"),
                                                 ("paper R-50, heatmap", "#4C78A8"))):
                data.append({"type": "bar", "x": known, "y": [PAPER_PROPS_AP[n][j] for n in known], "name": label,
                             "marker": {"color": colour}, "xaxis": "x3", "yaxis": "y3", "legend": "legend3"})
    else:
        annotations.append({"text": "no per-class AP in this file", "x": 0.5, "y": 0.2, "xref": "paper",
                            "yref": "paper", "showarrow": False, "font": {"color": "#6b7280"}})
    if not evals:
        annotations.append({"text": "no evaluation rows yet", "x": 0.78, "y": 0.8, "xref": "paper", "yref": "paper",
                            "showarrow": False, "font": {"color": "#6b7280"}})
    if not loss_keys:
        annotations.append({"text": "no loss rows", "x": 0.22, "y": 0.8, "xref": "paper", "yref": "paper",
                            "showarrow": False, "font": {"color": "#6b7280"}})
    layout["annotations"] = annotations
    return make_figure(data, layout)
