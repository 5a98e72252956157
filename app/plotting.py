"""Plotly building blocks shared by every view (no Gradio, no model): colours, the image as a JPEG data URI, image
axes, boxes as NaN-separated polylines, the display options, message figures.

Speed rules (measured with Gradio 6 and Plotly on a 2-core CPU): the image is a JPEG data URI in one ``go.Image``; boxes are one
``Scatter(mode="lines")`` per (position, class, opacity level) with rectangles separated by NaN gaps; hover comes from
a marker trace at the box centres; heatmaps are ``go.Heatmap`` at the model's stride. Figures are assembled from
plain dicts with Plotly's validation off (10x faster at a few hundred traces), so every key here is a real Plotly
attribute, checked by the tests through ``validate_figure``.

Coordinates are original-image pixels throughout: x right, y down (the y axis is reversed).
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb
from PIL import Image


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


def image_plot_height(width: int, height: int, columns: int = 1, low: int = 280, high: int = 600) -> int:
    """Plot-area height that shows an image of this aspect ratio at the typical plot width, within [low, high] px.
    ``high`` keeps a portrait photo's figure, caption to slider, inside a laptop screen (at 720 px with its margins
    and the sticky Play row it did not fit 900 px)."""
    return int(np.clip(TYPICAL_PLOT_WIDTH / columns * height / max(width, 1), low, high))


def class_colour(label: int) -> str:
    return PALETTE[int(label) % len(PALETTE)]


def relative_luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of a "#RRGGBB" colour, 0 (black) to 1 (white)."""
    srgb = np.asarray(hex_to_rgb(hex_colour), np.float64) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    return float(linear @ [0.2126, 0.7152, 0.0722])


LABEL_CONTRAST = 4.5  # WCAG AA for normal text: a label against its white outline


@lru_cache(maxsize=256)  # a pure function of the colour, asked per label and slider position
def text_on_white(hex_colour: str) -> str:
    """``hex_colour`` darkened (same hue, every channel scaled down) until its WCAG contrast against white is at
    least ``LABEL_CONTRAST``, for text the page draws with a white outline (``app.ui.CSS``; Plotly's
    ``textfont.shadow`` is CSS text-shadow, which Chromium does not draw on SVG text): a red label did not read on a
    reddish table, and on the outline the palette's yellow, pink and light grey would not."""
    rgb = np.asarray(hex_to_rgb(hex_colour), np.float64)
    colour, scale = hex_colour.upper(), 1.0
    while 1.05 / (relative_luminance(colour) + 0.05) < LABEL_CONTRAST:
        scale -= 0.02
        colour = "#" + "".join(f"{int(round(c * scale)):02X}" for c in rgb)
    return colour


def label_colour(label: int) -> str:
    """A class's label text colour: its box colour darkened to read on the labels' white outline
    (``text_on_white``)."""
    return text_on_white(class_colour(label))


def rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = hex_to_rgb(hex_colour)
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


def b64_bytes(array: np.ndarray) -> str:
    """An array's raw bytes (C order, its own dtype) as base64 text, for data the page decodes itself."""
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


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


def lines(xs: np.ndarray, ys: np.ndarray, colour: str, width: float, name: str = "", dash: str = "solid",
           axes: tuple[str, str] = ("x", "y"), **extra: Any) -> dict:
    return {"type": "scatter", "mode": "lines", "x": xs, "y": ys, "name": name, "showlegend": False,
            "hoverinfo": "skip", "line": {"color": colour, "width": width, "dash": dash},
            "xaxis": axes[0], "yaxis": axes[1], **extra}


def legend_key(name: str, colour: str, dash: str = "solid", symbol: str | None = None,
               group: str | None = None) -> dict:
    """An empty trace that only puts an entry in the legend; with ``group``, clicking it shows or hides every trace
    of that legend group (``legend_layout`` switches group clicks on)."""
    trace = {"type": "scatter", "x": [None], "y": [None], "name": name, "showlegend": True, "hoverinfo": "skip",
             "visible": True, "legendgroup": group or name}
    if symbol:
        trace.update(mode="markers", marker={"color": colour, "symbol": symbol, "size": 9})
    else:
        trace.update(mode="lines", line={"color": colour, "width": 3, "dash": dash})
    return trace


def legend_layout() -> dict:
    """A legend whose entries toggle their legend group (a layer)."""
    return {"orientation": "v", "x": 1.0, "xanchor": "left", "y": 1.0, "yanchor": "top", "itemclick": "toggle",
            "itemdoubleclick": "toggleothers", "groupclick": "togglegroup", "bgcolor": "rgba(255,255,255,0.8)",
            "font": {"size": 11}}




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



def label_strings(names: list[str], scores: np.ndarray, show_labels: bool, show_scores: bool) -> list[str]:
    if show_labels and show_scores:
        return [f"{n} {s:.2f}" for n, s in zip(names, scores)]
    if show_labels:
        return list(names)
    return [f"{s:.2f}" for s in scores]


def iou_strings(ious: np.ndarray | None, count: int) -> list[str]:
    if ious is None:
        return ["no ground truth"] * count
    return [f"{v:.2f}" for v in ious]



def message_figure(text: str, height: int = 320) -> go.Figure:
    """An empty figure that says why it is empty."""
    return make_figure([], {
        "height": height, "xaxis": {"visible": False}, "yaxis": {"visible": False},
        "annotations": [{"text": text, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper", "showarrow": False,
                         "font": {"size": 14, "color": "#6b7280"}}],
    })


LABEL_FONT_PX = 11
LABEL_CHAR_PX = 6.8      # average width of a bold 11 px character (measured on the Chromium screenshots)
LABEL_DRAWN_WIDTH = 520  # px the image is at least drawn at on a laptop; narrower screens get fewer labels
LABEL_BORDER_PX = 3      # screen px between a label's end and the image's right (or, inside a box, top) border


class LabelPlacement(NamedTuple):
    """Where ``placed_labels`` draws labels: ``index`` (np.ndarray[M] int64, best score first: the page drops later
    labels that overlap earlier ones where the image is drawn narrower than assumed) the boxes labelled, ``x``
    and ``y`` (np.ndarray[M]) each label's anchor in image pixels on its box's top edge (clamped into the image; a
    label drawn inside its box is anchored ``LABEL_BORDER_PX`` screen px below that edge),
    ``position`` (M Plotly ``textposition`` values): "top right" from the box's left edge, or "top left" from its
    right edge for a label that would otherwise run past the image's right border; "bottom ..." instead of "top ..."
    for a label drawn just inside its box because there is no room above it (a box at the image's top edge)."""

    index: np.ndarray
    x: np.ndarray
    y: np.ndarray
    position: list[str]


def placed_labels(boxes_xyxy: np.ndarray, texts: Sequence[str], scores: np.ndarray, image_width: int,
                  max_labels: int = 15) -> LabelPlacement:
    """The labels drawn: best score first, each label (above its box's top-left corner, or above its top-right
    corner where it would run past the image's right border) kept only if it does not overlap a label already kept,
    at most ``max_labels``. The rest are left to the hover. Label sizes are estimated in image pixels for an image
    drawn ``LABEL_DRAWN_WIDTH`` px wide. A label that would stick out above the image (the denoising view's caption
    is there) goes just inside its box's top edge instead: a box on the image's top edge was left unlabelled, often
    the largest object in view."""
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    px = max(image_width, 1) / LABEL_DRAWN_WIDTH  # image pixels per screen pixel
    height = (LABEL_FONT_PX + 4) * px
    kept: dict[int, tuple[float, float, str]] = {}
    rects: list[tuple[float, float, float, float]] = [(-np.inf, -np.inf, np.inf, 0.0)]  # above the image
    for i in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        x1, y1, x2 = float(boxes[i, 0]), max(float(boxes[i, 1]), 0.0), float(boxes[i, 2])
        width = (len(texts[i]) * LABEL_CHAR_PX + 4) * px
        right = x1 + width > image_width and x2 - width >= 0
        left_edge = x2 - width if right else x1
        inside = y1 < height  # no room above the box
        top = y1 if inside else y1 - height
        rect = (left_edge, top, left_edge + width, top + height)
        if any(rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3] and r[1] < rect[3] for r in rects):
            continue
        # a label ending at the image border ends LABEL_BORDER_PX inside it: its last glyph's halo was clipped there
        vertical, y = ("bottom", y1 + LABEL_BORDER_PX * px) if inside else ("top", y1)  # inside: clear of the caption
        kept[int(i)] = ((min(x2, image_width - LABEL_BORDER_PX * px), y, f"{vertical} left") if right
                        else (x1, y, f"{vertical} right"))
        rects.append(rect)
        if len(kept) >= max_labels:
            break
    index = np.array(list(kept), np.int64)  # in the order kept: best score first
    return LabelPlacement(index, np.array([kept[i][0] for i in index], np.float32),
                          np.array([kept[i][1] for i in index], np.float32), [kept[i][2] for i in index])
