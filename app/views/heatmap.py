"""The heatmap view: the head's predicted centre heatmap against the target synthesised from the boxes."""
from __future__ import annotations

from typing import Any, Sequence

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

from diffdet.heatmap import synthesize_heatmap
from diffdet.trajectory import Trajectory

from app.controls import MAX_CLASSES_OPTION, Display, number
from app.inputs import GroundTruth
from app.plotting import ImageSource, image_axes, image_plot_height, lines, make_figure, rect_path

# One colour ramp for heat everywhere: transparent pale yellow -> orange -> dark red over the image (overlay, Target
# tab), and the same ramp laid on white where a map stands alone (side by side), so a value has one colour in every
# view (the side-by-side maps were viridis, the overlays red: two colours for one number).
_HEAT_STOPS = ((0.0, (255, 237, 160), 0.0), (0.15, (254, 178, 76), 0.35), (0.5, (240, 59, 32), 0.75),
               (1.0, (189, 0, 38), 1.0))
OVERLAY_SCALE = [[v, f"rgba({r},{g},{b},{a:g})"] for v, (r, g, b), a in _HEAT_STOPS]
HEAT_SCALE = [[v, "rgb({},{},{})".format(*(round(c * a + 255 * (1 - a)) for c in rgb))] for v, rgb, a in _HEAT_STOPS]
DIFF_SCALE = [[0.0, "rgb(33,102,172)"], [0.25, "rgb(146,197,222)"], [0.5, "rgb(247,247,247)"],
              [0.75, "rgb(244,165,130)"], [1.0, "rgb(178,24,43)"]]
# on the photo, a difference of +-0.3 was faint with a straight alpha ramp (0.3 of full colour): it is 0.7 there now,
# and the photo still shows through the small differences (the colour bar shows the mapping)
DIFF_OVERLAY_SCALE = [[0.0, "rgba(33,102,172,1)"], [0.35, "rgba(67,147,195,0.7)"], [0.5, "rgba(247,247,247,0)"],
                      [0.65, "rgba(214,96,77,0.7)"], [1.0, "rgba(178,24,43,1)"]]
WASH_OPACITY = 0.75  # the white laid over the photo under the difference layer (see heatmap_figure)


def select_channel(heatmap: np.ndarray, class_index: int | None) -> np.ndarray:
    """(K, H, W) -> (H, W): one class, or the maximum over classes when ``class_index`` is None."""
    return heatmap.max(axis=0) if class_index is None else heatmap[class_index]


def heatmap_trace(z: np.ndarray, stride: float, axes: tuple[str, str], colorscale: Any, zmin: float, zmax: float,
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
                    data.append(heatmap_trace(z, stride, axes, HEAT_SCALE, 0, 1, ("predicted", "target")[i],
                                               bar if i == 1 or pred is None else None))
                else:
                    data.append(heatmap_trace(z, stride, axes, DIFF_SCALE, -1, 1, "difference", bar))
            if outline is not None:   # grey: the maps are white where they are zero
                data.append(lines(*outline, "rgba(75,85,99,0.6)", 1, name="boxes", axes=axes))
        layout.update({"height": image_plot_height(image.width, image.height, columns=3, low=140) + 30 + 50,
                       "annotations": annotations, "margin": {"l": 8, "r": 8, "t": 30, "b": 50},
                       "showlegend": False})
        return make_figure(data, layout)

    xaxis, yaxis = image_axes(image.width, image.height)
    data.append(image.trace())
    layers = [("predicted", pred, OVERLAY_SCALE, 0, 1), ("target", tgt, OVERLAY_SCALE, 0, 1),
              ("difference", diff, DIFF_OVERLAY_SCALE, -1, 1)]
    layers = [layer for layer in layers if layer[1] is not None]
    # Under the difference, the photo is washed white: a zero difference is see-through, and on the bare photo a
    # pink table read as "predicted > target" red while the colour bar says zero is white.
    data.append({"type": "heatmap", "z": [[0.0]], "x0": image.width / 2, "dx": image.width, "y0": image.height / 2,
                 "dy": image.height, "colorscale": [[0, "white"], [1, "white"]], "showscale": False,
                 "opacity": WASH_OPACITY, "hoverinfo": "skip", "name": "white wash", "xaxis": "x", "yaxis": "y",
                 "visible": layers[0][0] == "difference"})
    first = 2
    for i, (name, z, scale, lo, hi) in enumerate(layers):
        data.append(heatmap_trace(z, stride, ("x", "y"), scale, lo, hi, name, {"x": 1.0, "xanchor": "left"},
                                   opacity=0.7, visible=i == 0))
    if outline is not None:
        data.append(lines(*outline, "rgba(255,255,255,0.7)", 1, name="boxes"))
    count = len(data)
    heat_ids = list(range(first, first + len(layers)))
    # the title names the layer shown: each button switches it with the layer (the annotation is the figure's only)
    titles = {"predicted": f"predicted heatmap · class: {which}",
              "target": f"target from {target_source} · class: {which}",
              "difference": f"predicted − target · class: {which}"}
    buttons = [{"label": name, "method": "update",
                "args": [{"visible": [True, name == "difference"] + [j == i for j in range(len(layers))]
                          + [True] * (count - first - len(layers))}, {"annotations[0].text": titles[name]}]}
               for i, (name, *_rest) in enumerate(layers)]
    opacity_steps = [{"label": f"{v:.1f}", "method": "restyle", "args": [{"opacity": v}, heat_ids]}
                     for v in np.round(np.linspace(0, 1, 11), 1)]
    layout.update({
        "xaxis": xaxis, "yaxis": yaxis, "height": image_plot_height(image.width, image.height) + 70 + 60,
        "showlegend": False,
        # wide enough for either colour bar (the difference's labels, -0.5, need 59 px): Plotly widened a narrower
        # margin for them, and the image moved a few pixels at every switch of the layer
        "margin": {"l": 8, "r": 64, "t": 70, "b": 60},
        "updatemenus": [{"type": "buttons", "direction": "right", "buttons": buttons, "x": 0, "y": 1.0,
                         "xanchor": "left", "yanchor": "bottom", "pad": {"b": 4}, "showactive": True,
                         "active": 0}],
        "sliders": [{"active": 7, "steps": opacity_steps, "x": 0.02, "len": 0.96, "y": 0, "yanchor": "top",
                     "currentvalue": {"prefix": "heatmap opacity ", "font": {"size": 12}}, "pad": {"t": 6},
                     "font": {"size": 9}, "transition": {"duration": 0}, "name": "opacity"}],
        # above the buttons, on the left: at the right, Plotly's mode bar covered it on hover, and on a phone the
        # buttons did
        "annotations": [{"text": titles[layers[0][0]], "x": 0, "y": 1.0, "yshift": 34, "xref": "paper",
                         "yref": "paper", "xanchor": "left", "yanchor": "bottom", "showarrow": False,
                         "font": {"size": 12}, "name": "title"}],
    })
    return make_figure(data, layout)


class HeatmapHandlers:
    """The heatmap view's handlers (mixed into ``app.explorer.Explorer``)."""

    @staticmethod
    def _class_index(value: Any, class_names: Sequence[str]) -> int | None:
        if value in (None, "", MAX_CLASSES_OPTION) or value not in class_names:
            return None
        return list(class_names).index(value)

    @staticmethod
    def _target_boxes(gt: GroundTruth | None, traj: Trajectory | None,
                      score_threshold: float) -> tuple[np.ndarray, np.ndarray, str]:
        if gt is not None and len(gt):
            return gt.boxes_xyxy, gt.labels, "ground truth"
        if traj is not None:
            keep = traj.detections.scores >= score_threshold
            return traj.detections.boxes_xyxy[keep], traj.detections.labels[keep], \
                f"detections ≥ {score_threshold:.2f}"
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), "no boxes"

    @staticmethod
    def _synthesize(boxes: np.ndarray, labels: np.ndarray, class_index: int | None, grid: tuple[int, int],
                    stride: float, min_radius: float, rho: float) -> np.ndarray:
        """The target channel shown: one class, or the maximum over classes. Objects merge by element-wise max, so
        the maximum over classes equals the core's target with every box in one class; either way one channel
        is synthesised instead of K (10x less work for the live sliders)."""
        pick = np.ones(len(labels), bool) if class_index is None else np.asarray(labels) == class_index
        boxes_t = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)[pick])
        one_class = torch.zeros(len(boxes_t), dtype=torch.int64)
        return synthesize_heatmap(boxes_t, one_class, 1, grid, stride, min_radius, rho)[0].numpy()  # (Hh, Wh)

    def _heatmap(self, traj: Trajectory, source: ImageSource, gt: GroundTruth | None, display: Display,
                 heat_class: Any, heat_mode: Any, min_radius: Any, rho: Any) -> go.Figure:
        min_r = number(min_radius, 4.0, 0.1, 64.0, "min_radius")
        rho_v = number(rho, 0.5, 0.0, 4.0, "rho")
        boxes, labels, source_name = self._target_boxes(gt, traj, display.score_threshold)
        if traj.heatmap is not None:
            grid, stride = tuple(traj.heatmap.shape[1:]), traj.heatmap_stride
        else:
            grid, stride = (max(1, source.height // 8), max(1, source.width // 8)), 8.0
        class_index = self._class_index(heat_class, traj.class_names)
        target = self._synthesize(boxes, labels, class_index, grid, stride, min_r, rho_v)
        predicted = select_channel(traj.heatmap, class_index) if traj.heatmap is not None else None
        mode = "overlay" if heat_mode == "overlay on image" else "side"
        return heatmap_figure(predicted, target, stride, source, traj.class_names, class_index, source_name, mode,
                                boxes)

    def render_heatmap(self, traj_file: str | None, image_path: str | None, gt_file: str | None,
                       use_example_gt: bool, heat_class: Any, heat_mode: Any, min_radius: Any, rho: Any,
                       score_threshold: Any) -> Any:
        traj = self.trajectory(traj_file)
        if traj is None or not image_path:
            return gr.skip()
        source = self.image_source(image_path)
        if (source.height, source.width) != tuple(traj.image_size_hw):
            return gr.skip()
        display = Display(score_threshold=number(score_threshold, 0.3, 0, 1, "Score threshold"))
        gt, _ = self.ground_truth(image_path, traj.image_size_hw, gt_file, use_example_gt, traj.class_names)
        return self._heatmap(traj, source, gt, display, heat_class, heat_mode, min_radius, rho)
