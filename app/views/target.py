"""The target-generation view: the heatmap head's training target, live under the min_radius / rho sliders, with
a profile through one box."""
from __future__ import annotations

import base64
import threading
import zlib
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from gradio.context import LocalContext

from diffdet.config import DiffDetConfig
from diffdet.heatmap import gaussian_radius
from diffdet.trajectory import Trajectory

from app.controls import LRU, heatmap_grid, min_radius_values, number, rho_values
from app.inputs import GroundTruth
from app.plotting import (
    IMAGE_PLOT_HEIGHT, ImageSource, b64_bytes, box_centres, circle_path, class_colour, image_axes, image_plot_height,
    lines, make_figure, message_figure, rect_path,
)
from app.views.heatmap import OVERLAY_SCALE, heatmap_trace, select_channel

def target_figure(
    image: ImageSource, boxes_xyxy: np.ndarray, labels: np.ndarray, class_names: Sequence[str], target: np.ndarray,
    stride: float, radii_cells: np.ndarray, class_index: int | None = None, profile_box: int | None = None,
    source: str = "ground truth", min_radius: float | None = None, rho: float | None = None,
) -> go.Figure:
    """The synthesised target on the image with each box's gaussian radius drawn as a circle, and below it the 1-D
    profile of the map shown along the row through one box's centre (x shared with the image): with one class
    shown and a box of another, the profile is that of the (empty) map there, as the image shows it.

    Args:
        boxes_xyxy (np.ndarray[G, 4]) pixels, labels (np.ndarray[G]) class ids: the boxes the target comes from.
        target (np.ndarray[K, Hh, Wh]): ``synthesize_heatmap`` output, or (Hh, Wh) already reduced to the shown
            class; radii_cells (np.ndarray[G]) from ``gaussian_radius``, in heatmap cells (one cell = ``stride``
            pixels).
        class_index: the class shown (None = max over classes); profile_box: index into the boxes (None = none).
    """
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    shown = np.ones(len(labels), bool) if class_index is None else labels == class_index
    z = target if target.ndim == 2 else select_channel(target, class_index)
    axes_img = ("x", "y")
    xaxis, yaxis = image_axes(image.width, image.height, domain_y=(0.3, 1.0), constrain="range")
    xaxis2 = {"domain": [0, 1], "anchor": "y2", "matches": "x", "showgrid": False, "zeroline": False,
              "title": {"text": "x (pixels)", "font": {"size": 11}}}
    yaxis2 = {"domain": [0, 0.2], "anchor": "x2", "range": [0, 1.08], "title": {"text": "target", "font": {"size": 11}},
              "gridcolor": "#eee", "zeroline": False}
    # The live view resends this figure on every slider move: the map travels as uint8 (4x smaller than float32)
    # and is read exactly in the profile below, so it carries no hover of its own.
    ticks = [0, 0.25, 0.5, 0.75, 1.0]
    z_uint8 = np.round(np.clip(z, 0, 1) * 255).astype(np.uint8)
    heat = heatmap_trace(z_uint8, stride, axes_img, OVERLAY_SCALE, 0, 255, "target",
                          # under the image, in the gap above the profile chart (beside it, it squeezed the image)
                          {"orientation": "h", "x": 0.5, "xanchor": "center", "y": 0.285, "yanchor": "top",
                           "len": 0.6, "thickness": 12,
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
        data.append(lines(*rect_path(boxes[pick]), class_colour(label), 1.5, name=class_names[int(label)]))
    if shown.any():
        data.append(lines(*circle_path(centres[shown], radii_px[shown]), "rgba(255,255,255,0.95)", 1.5,
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
    has_profile = profile_box is not None and 0 <= profile_box < len(boxes)
    title = target_title(source, class_names, class_index, stride, min_radius, rho,
                         (int(profile_box), class_names[int(labels[int(profile_box)])]) if has_profile else None)
    if has_profile:
        b = int(profile_box)
        row = int(np.clip(np.floor(centres[b, 1] / stride), 0, z.shape[0] - 1))
        values = z[row]  # (Wh,)
        xs = (np.arange(values.shape[0], dtype=np.float32) + 0.5) * stride
        # a line without point markers: per-point marker styling was the largest single cost of redrawing this
        # figure on every rho / min_radius move (~17 of ~250 ms per move in a browser profile on a busy CPU)
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": values.round(4),
                     "line": {"color": class_colour(labels[b]), "width": 2, "shape": "linear"},
                     "name": "profile", "showlegend": False,
                     "xaxis": "x2", "yaxis": "y2",
                     "hovertemplate": "x %{x:.0f} px: %{y:.3f}<extra></extra>"})
        data.append(lines(*rect_path(boxes[b:b + 1]), "#FFFFFF", 3.0, name="profile box"))
        data.append(lines(np.array([0, image.width], np.float32),
                           np.array([(row + 0.5) * stride] * 2, np.float32), "rgba(255,255,255,0.8)", 1,
                           name="profile row", dash="dash"))
        cx, r = float(centres[b, 0]), float(radii_px[b])
        for x in (cx - r, cx + r):
            shapes.append({"type": "line", "xref": "x2", "yref": "y2", "x0": x, "x1": x, "y0": 0, "y1": 1.05,
                           "line": {"color": "#6b7280", "dash": "dot", "width": 1}})
    layout = {"xaxis": xaxis, "yaxis": yaxis, "xaxis2": xaxis2, "yaxis2": yaxis2, "shapes": shapes,
              "height": int(image_plot_height(image.width, image.height) / 0.7) + 96, "showlegend": False,
              # a fixed pad from the top, in px: at y 0.985 of the figure a phone's shorter figure cut the first line
              "title": {"text": title, "font": {"size": 12}, "x": 0.01, "xanchor": "left", "y": 1.0,
                        "yanchor": "top", "yref": "container", "pad": {"t": 14}},
              "margin": {"l": 50, "r": 16, "t": 64, "b": 40},
              # the image's size for the page's phone layout: with constrain="range" Plotly pads the axis ranges
              "meta": {"image_size": [image.width, image.height]}}
    return make_figure(data, layout)


def target_title(source: str, class_names: Sequence[str], class_index: int | None, stride: float,
                 min_radius: float | None, rho: float | None, profile: tuple[int, str] | None) -> str:
    """The target figure's title: what the target is built from, the radius rule with its values (when given) and
    the profile box (index, class name) when there is one."""
    title = f"target from {source} · class: {'max over classes' if class_index is None else class_names[class_index]}"
    if min_radius is not None and rho is not None:
        # its own line: on a phone-width figure the title is cut at the plot's right edge
        title += f"<br>r = max({min_radius:g}, {rho:g} · min(w, h)) cells, 1 cell = {stride:.1f} px"
    if profile is not None:
        title += f"<br>profile: box #{profile[0]} ({profile[1]}), dotted lines at centre ± r"
    return title


def encode_map(z: np.ndarray) -> str:
    """A map in [0, 1] (H, W) as the figure shows it (uint8, 255 = 1) for the page: differences along x, then along
    y (mod 256; a smooth gaussian map becomes mostly zeros), deflated (zlib), base64. The page inverts it with
    ``DecompressionStream("deflate")`` and two running sums (``app.ui.PAGE_JS``, ``dd.inflateMap``)."""
    u = np.round(np.clip(z, 0, 1) * 255).astype(np.int16)
    delta = np.diff(np.diff(u, axis=1, prepend=0), axis=0, prepend=0)
    return base64.b64encode(zlib.compress((delta % 256).astype(np.uint8).tobytes(), 1)).decode("ascii")


# The target view's sliders whose every position the figure can carry as a frame, drawn by the page.
LIVE_SLIDERS = ("rho", "min_radius")


def slider_frames(values: Sequence[float], parameters: Callable[[float], tuple[float, float]], boxes: np.ndarray,
                  profile_box: int | None, stride: float,
                  title: Callable[[float, float], str],
                  synthesize: Callable[[float, float], np.ndarray]) -> dict:
    """What the target view draws at every position of one slider, the other held, so the page redraws a move of it
    without asking the server (a round trip through Gradio took ~200 ms on a 2-core CPU; the page's redraw alone
    ~90 ms). ``parameters(v)`` gives (min_radius, rho) at slider value v. Each frame comes from the same functions as
    the figure: ``synthesize(min_radius, rho)`` for the map shown, ``gaussian_radius`` for the radii,
    ``title(min_radius, rho)``; the circles are the unit circle of ``circle_path`` scaled by each radius.

    Returns ``{"values" (R,), "shape" [Hh, Wh], "z" (R maps, ``encode_map``), "radii" (R x base64 float32 (G,)
    cells), "profile" (R x base64 float32 (Wh,) the profile row, rounded as the figure's) or None, "title" (R,),
    "stride", "box" (the profile box, or None), "box_cx" (its centre x, pixels), "unit_circle" ([x, y] of one circle
    of radius 1 about 0)}``.
    """
    boxes_t = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4))
    centres = box_centres(boxes)
    frames: dict[str, Any] = {"values": list(values), "z": [], "radii": [], "title": [], "stride": float(stride),
                              "profile": [] if profile_box is not None else None, "box": profile_box,
                              "box_cx": None if profile_box is None else float(centres[profile_box, 0]),
                              "unit_circle": [a[:-1].tolist() for a in circle_path(np.zeros((1, 2)), np.ones(1))]}
    for value in frames["values"]:
        min_radius, rho = parameters(value)
        z = synthesize(min_radius, rho)
        frames["z"].append(encode_map(z))
        frames["shape"] = list(z.shape)
        frames["radii"].append(b64_bytes(gaussian_radius(boxes_t, stride, min_radius, rho).numpy().astype("<f4")))
        frames["title"].append(title(min_radius, rho))
        if profile_box is not None:
            row = int(np.clip(np.floor(centres[profile_box, 1] / stride), 0, z.shape[0] - 1))
            frames["profile"].append(b64_bytes(z[row].round(4).astype("<f4")))
    return frames


class TargetRequest:
    """One request for this browser session's target figure. The target view's events run side by side (a move that
    brings slider frames takes ~100 ms longer than one without), and Gradio shows whichever figure answers last; so
    every request is numbered, and one that a newer request overtook sends nothing (``latest``). The session also
    remembers, per live slider, the inputs (all but that slider) of the last figure sent with its frames: a move the
    page drew from frames is right only when they are the request's own (``frames_match``); a move made while another
    change was on its way was drawn from the old figure's frames and needs the new figure.

    Args:
        inputs: the request's inputs by name (those of ``TargetHandlers.render_target``).
    """

    def __init__(self, handlers: "TargetHandlers", inputs: dict[str, Any]) -> None:
        self._requests, self._lock = handlers._target_requests, handlers._target_lock
        self.session = getattr(LocalContext.request.get(None), "session_hash", None)
        self.inputs = inputs
        self.number = 0
        if self.session:
            with self._lock:
                number, frames = self._requests.peek(self.session) or (0, {})
                self.number = number + 1
                self._requests.put(self.session, (self.number, frames))

    def _key(self, slider: str) -> str:
        return repr(sorted((k, v) for k, v in self.inputs.items() if k != slider))

    def _state(self) -> tuple[int, dict[str, str]]:
        with self._lock:
            return self._requests.peek(self.session) or (self.number, {})

    def latest(self) -> bool:
        return not self.session or self._state()[0] == self.number

    def frames_match(self, slider: str) -> bool:
        return not self.session or self._state()[1].get(slider) == self._key(slider)

    def sent(self, frames: Sequence[str]) -> None:
        """This request's figure is sent, with the frames of these sliders."""
        if self.session:
            with self._lock:
                number, _ = self._requests.peek(self.session) or (self.number, {})
                self._requests.put(self.session, (number, {slider: self._key(slider) for slider in frames}))


class TargetHandlers:
    """The target view's handlers (mixed into ``app.explorer.Explorer``)."""

    _target_requests: LRU
    _target_lock: threading.Lock

    def _target(self, source: ImageSource, image_hw: tuple[int, int], class_names: Sequence[str],
                gt: GroundTruth | None, traj: Trajectory | None, cfg: DiffDetConfig | None, score_threshold: float,
                min_radius: Any, rho: Any, target_class: Any, profile_box: Any,
                frames: Sequence[str] = (), follow_class: bool = False) -> tuple[go.Figure, Any]:
        """The target figure and the profile-box choices. ``frames``: the live sliders (``LIVE_SLIDERS``) whose
        every position the figure carries (``slider_frames``, in ``layout.meta["frames"]``, with the figure's own
        ``params``) for the page to draw. ``follow_class``: a profile box of another class than the one shown moves
        to the shown class's first box (when it has one)."""
        min_r = number(min_radius, 4.0, 0.1, 64.0, "min_radius")
        rho_v = number(rho, 0.5, 0.0, 4.0, "rho")
        boxes, labels, source_name = self._target_boxes(gt, traj, score_threshold)
        if traj is not None and traj.heatmap is not None:
            grid, stride = tuple(traj.heatmap.shape[1:]), traj.heatmap_stride
        elif cfg is not None:
            grid, stride = heatmap_grid(cfg, image_hw)
        else:
            grid, stride = (max(1, image_hw[0] // 8), max(1, image_hw[1] // 8)), 8.0
        class_index = self._class_index(target_class, class_names)
        target = self._synthesize(boxes, labels, class_index, grid, stride, min_r, rho_v)
        radii = gaussian_radius(torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)), stride, min_r,
                                rho_v).numpy()
        choices = [(f"#{i} {class_names[int(k)]} ({b[2] - b[0]:.0f} x {b[3] - b[1]:.0f} px)", i)
                   for i, (b, k) in enumerate(zip(boxes, labels))]
        box = None
        if choices:
            box = int(profile_box) if isinstance(profile_box, (int, float)) and 0 <= profile_box < len(choices) \
                else 0
            of_class = np.flatnonzero(np.asarray(labels) == class_index) if follow_class else []
            if class_index is not None and len(of_class) and labels[box] != class_index:
                box = int(of_class[0])
        if len(boxes) == 0:
            figure = message_figure("No boxes to build a target from: give ground truth (or pick an example) or "
                                      "run the detector.", height=IMAGE_PLOT_HEIGHT)
            return figure, gr.update(choices=choices, value=box)
        figure = target_figure(source, boxes, labels, class_names, target, stride, radii, class_index, box,
                               source_name, min_r, rho_v)
        if frames:
            profile = (box, class_names[int(labels[box])]) if box is not None else None
            title = lambda m, r: target_title(source_name, class_names, class_index, stride, m, r, profile)  # noqa: E731
            synthesize = lambda m, r: self._synthesize(boxes, labels, class_index, grid, stride, m, r)  # noqa: E731
            grids = {"rho": (rho_values(), lambda v: (min_r, v), {"min_radius": min_r}),
                     "min_radius": (min_radius_values(), lambda v: (v, rho_v), {"rho": rho_v})}
            carried = {}
            for slider in frames:
                values, parameters, held = grids[slider]
                carried[slider] = {**slider_frames(values, parameters, boxes, box, stride, title, synthesize),
                                   "held": held}
            figure.update_layout(meta={**figure.layout.meta, "frames": carried,
                                       "params": {"min_radius": min_r, "rho": rho_v}})
        return figure, gr.update(choices=choices, value=box)

    def render_target(self, image_path: str | None, gt_file: str | None, use_example_gt: bool,
                      traj_file: str | None, checkpoint: str | None, upload: str | None, min_radius: Any, rho: Any,
                      target_class: Any, profile_box: Any, score_threshold: Any) -> Any:
        """Re-synthesise the target for new min_radius / rho / class / profile box. Sends nothing when a newer
        request of the same browser session has come meanwhile (``TargetRequest``)."""
        inputs = dict(locals())
        inputs.pop("self")
        return self._render_target(TargetRequest(self, inputs), ())[0]

    def render_target_class(self, image_path: str | None, gt_file: str | None, use_example_gt: bool,
                            traj_file: str | None, checkpoint: str | None, upload: str | None, min_radius: Any,
                            rho: Any, target_class: Any, profile_box: Any, score_threshold: Any) -> tuple[Any, Any]:
        """Another class shown: the figure, and the profile moved to that class's first box when it was on a box of
        another class (a trial picked "mug" and the profile stayed on the tuna can, along a row where the mug's map
        is empty). A box of another class picked afterwards stays (``render_target``). Returns (figure, profile-box
        update, or ``gr.skip()`` when the box stays)."""
        inputs = dict(locals())
        inputs.pop("self")
        figure, box = self._render_target(TargetRequest(self, inputs), (), follow_class=True)
        return figure, gr.skip() if box is None or box == profile_box else gr.update(value=box)

    def _render_target(self, request: TargetRequest, frames: Sequence[str],
                       follow_class: bool = False) -> tuple[Any, int | None]:
        """(the figure, or ``gr.skip()`` when a newer request came meanwhile; the profile box it shows, or None)."""
        i = request.inputs
        box = None
        if not i["image_path"]:
            figure = message_figure("Pick an image (and ground truth) to see its heatmap target.")
        else:
            source, image_hw, class_names, gt, traj, cfg = self._target_inputs(
                i["image_path"], i["gt_file"], i["use_example_gt"], i["traj_file"], i["checkpoint"], i["upload"])
            figure, profile = self._target(source, image_hw, class_names, gt, traj, cfg,
                                           number(i["score_threshold"], 0.3, 0, 1, "Score threshold"),
                                           i["min_radius"], i["rho"], i["target_class"], i["profile_box"],
                                           frames=frames, follow_class=follow_class)
            box = profile.get("value")
        if not request.latest():
            return gr.skip(), box
        request.sent(list((figure.layout.meta or {}).get("frames", {})))
        return figure, box

    def _render_live(self, inputs: dict[str, Any], slider: str | None) -> Any:
        """A move of a live slider (``slider``), or the Target tab opened (None). The page draws a move from the
        shown figure's frames of that slider when it has them (``drawn_in_page``: nothing to send, when those
        frames are this request's own); otherwise the figure comes with that slider's frames (with both sliders'
        when the tab opens), for the moves after this one."""
        drawn = inputs.pop("drawn_in_page", False) is True
        request = TargetRequest(self, inputs)
        if slider and drawn and request.frames_match(slider):
            return gr.skip()
        return self._render_target(request, (slider,) if slider else LIVE_SLIDERS)[0]

    def render_target_rho(self, image_path: str | None, gt_file: str | None, use_example_gt: bool,
                          traj_file: str | None, checkpoint: str | None, upload: str | None, min_radius: Any,
                          rho: Any, target_class: Any, profile_box: Any, score_threshold: Any,
                          drawn_in_page: Any = False) -> Any:
        """A move of the rho slider (``_render_live``)."""
        inputs = dict(locals())
        inputs.pop("self")
        return self._render_live(inputs, "rho")

    def render_target_min_radius(self, image_path: str | None, gt_file: str | None, use_example_gt: bool,
                                 traj_file: str | None, checkpoint: str | None, upload: str | None, min_radius: Any,
                                 rho: Any, target_class: Any, profile_box: Any, score_threshold: Any,
                                 drawn_in_page: Any = False) -> Any:
        """A move of the min_radius slider (``_render_live``)."""
        inputs = dict(locals())
        inputs.pop("self")
        return self._render_live(inputs, "min_radius")

    def render_target_opened(self, image_path: str | None, gt_file: str | None, use_example_gt: bool,
                             traj_file: str | None, checkpoint: str | None, upload: str | None, min_radius: Any,
                             rho: Any, target_class: Any, profile_box: Any, score_threshold: Any) -> Any:
        """The Target tab opened: the figure with both live sliders' frames (``_render_live``)."""
        inputs = dict(locals())
        inputs.pop("self")
        return self._render_live(inputs, None)

    def _target_inputs(self, image_path: str, gt_file: str | None, use_example_gt: bool, traj_file: str | None,
                       checkpoint: str | None, upload: str | None) -> tuple:
        """What the target view draws from: the image, its size, class names, ground truth, and the run's trajectory
        (when it belongs to this image) or else the chosen checkpoint's config."""
        source = self.image_source(image_path, light=True)
        image_hw = (source.height, source.width)
        traj = self.trajectory(traj_file)
        if traj is not None and tuple(traj.image_size_hw) != image_hw:
            traj = None
        cfg = self.config(checkpoint, upload) if traj is None else None
        class_names = traj.class_names if traj is not None else cfg.class_names
        gt, _ = self.ground_truth(image_path, image_hw, gt_file, use_example_gt, class_names)
        return source, image_hw, class_names, gt, traj, cfg

    def target_boxes_update(self, image_path: str | None, gt_file: str | None, use_example_gt: bool,
                            traj_file: str | None, checkpoint: str | None, upload: str | None, min_radius: Any,
                            rho: Any, target_class: Any, score_threshold: Any) -> tuple:
        """New image or ground truth: the target figure and the profile-box choices (the figure not, when a newer
        target request of the session has come meanwhile)."""
        request = TargetRequest(self, {"image_path": image_path, "gt_file": gt_file, "use_example_gt": use_example_gt,
                                       "traj_file": traj_file, "checkpoint": checkpoint, "upload": upload,
                                       "min_radius": min_radius, "rho": rho, "target_class": target_class,
                                       "profile_box": 0, "score_threshold": score_threshold})
        if not image_path:
            figure, choices = message_figure("Pick an image (and ground truth) to see its heatmap target."), \
                gr.update(choices=[], value=None)
        else:
            source, image_hw, class_names, gt, traj, cfg = self._target_inputs(image_path, gt_file, use_example_gt,
                                                                               traj_file, checkpoint, upload)
            figure, choices = self._target(source, image_hw, class_names, gt, traj, cfg,
                                           number(score_threshold, 0.3, 0, 1, "Score threshold"), min_radius, rho,
                                           target_class, 0)
        if not request.latest():
            return gr.skip(), choices
        request.sent(())
        return figure, choices

