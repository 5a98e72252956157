"""The results view: final detections coloured by their match with the ground truth, the detections table and
the image's COCO metrics."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from diffdet.trajectory import Trajectory

from diffdet.evaluate import Matching
from app.inputs import GroundTruth
from app.plotting import (
    FN_COLOUR, FP_COLOUR, GT_COLOUR, TP_COLOUR, ImageSource, ViewOptions, box_centres, class_colour,
    image_axes, image_plot_height, iou_strings, label_colour, label_strings, legend_key, legend_layout, lines,
    make_figure, placed_labels, rect_path, text_on_white,
)

def results_figure(
    image: ImageSource, boxes_xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
    status: np.ndarray | None = None, best_iou: np.ndarray | None = None, gt_boxes: np.ndarray | None = None,
    gt_labels: np.ndarray | None = None, gt_matched: np.ndarray | None = None, view: ViewOptions = ViewOptions(),
) -> go.Figure:
    """Final detections; with ground truth, true positives green, false positives red and missed ground truth
    (false negatives) dashed orange at IoU 0.5.

    Args:
        boxes_xyxy (np.ndarray[M, 4]), scores (M,), labels (M,): the detections drawn (already thresholded).
        status (M,): "TP" / "FP" / "ignored" (on a crowd region) per detection; best_iou (M,) its best IoU with a ground-truth box of any class.
        gt_boxes (G, 4), gt_labels (G,), gt_matched (G,) bool: ground truth and whether a detection found it.
    """
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    data = [image.trace()]
    have_gt = gt_boxes is not None and status is not None
    if have_gt:
        groups = [("TP", TP_COLOUR, "true positive"), ("FP", FP_COLOUR, "false positive"),
                  ("ignored", GT_COLOUR, "on a crowd region (ignored)")]
        for key, colour, name in groups:
            pick = status == key
            if pick.any():
                data.append(lines(*rect_path(boxes[pick]), colour, view.line_width, name=name, legendgroup=key))
            if key != "ignored" or pick.any():
                data.append(legend_key(name, colour, group=key))
        missed = ~np.asarray(gt_matched, bool)
        if missed.any():
            data.append(lines(*rect_path(gt_boxes[missed]), FN_COLOUR, view.line_width, name="missed", dash="dash",
                              legendgroup="FN"))
        if (~missed).any() and view.show_gt:
            data.append(lines(*rect_path(gt_boxes[~missed]), GT_COLOUR, 1, name="found gt", dash="dash",
                              legendgroup="gt"))
            data.append(legend_key("ground truth (found)", GT_COLOUR, dash="dash", group="gt"))
        data.append(legend_key("false negative (missed)", FN_COLOUR, dash="dash", group="FN"))
        if len(gt_boxes) and missed.any():
            centres = box_centres(gt_boxes[missed])
            data.append({"type": "scatter", "mode": "markers", "x": centres[:, 0], "y": centres[:, 1],
                         "showlegend": False, "name": "missed", "marker": {"size": 7, "color": FN_COLOUR},
                         "legendgroup": "FN",
                         "text": [f"missed {class_names[int(k)]}" for k in gt_labels[missed]],
                         "hovertemplate": "<b>%{text}</b> (false negative)<extra></extra>"})
    else:
        for label in np.unique(labels):
            pick = labels == label
            data.append(lines(*rect_path(boxes[pick]), class_colour(label), view.line_width,
                              name=class_names[int(label)], legendgroup=class_names[int(label)]))
            data.append(legend_key(class_names[int(label)], class_colour(label)))
    if len(boxes):
        names = [str(class_names[int(k)]) for k in labels]
        if view.show_labels or view.show_scores:
            colours = ([text_on_white({"TP": TP_COLOUR, "ignored": GT_COLOUR}.get(s, FP_COLOUR)) for s in status]
                       if have_gt else [label_colour(k) for k in labels])
            texts = label_strings(names, scores, view.show_labels, view.show_scores)
            placement = placed_labels(boxes, texts, scores, image.width)  # no colliding labels; hover names the rest
            pick = placement.index
            data.append({"type": "scatter", "mode": "text", "x": placement.x, "y": placement.y,
                         "text": [texts[i] for i in pick], "textposition": placement.position, "hoverinfo": "skip",
                         "showlegend": False, "name": "labels",
                         "textfont": {"color": [colours[i] for i in pick], "size": 11, "weight": 600}})
        centres = box_centres(boxes)
        iou_text = iou_strings(best_iou, len(boxes))
        rows = [[names[i], float(scores[i]), iou_text[i], str(status[i]) if have_gt else "no ground truth", i]
                for i in range(len(boxes))]
        data.append({"type": "scatter", "mode": "markers", "x": centres[:, 0], "y": centres[:, 1],
                     "customdata": rows, "showlegend": False, "name": "detections",
                     "marker": {"size": 7, "color": "rgba(255,255,255,0.6)"},
                     "hovertemplate": ("<b>#%{customdata[4]} %{customdata[0]}</b> %{customdata[1]:.3f}<br>"
                                       "%{customdata[3]} · best IoU %{customdata[2]}<extra></extra>")})
    xaxis, yaxis = image_axes(image.width, image.height)
    layout = {"xaxis": xaxis, "yaxis": yaxis, "height": image_plot_height(image.width, image.height) + 16,
              "legend": legend_layout(),
              "margin": {"l": 8, "r": 8, "t": 8, "b": 8}}
    return make_figure(data, layout)


class ResultsHandlers:
    """The results view's handlers (mixed into ``app.explorer.Explorer``)."""

    @staticmethod
    def _metrics_markdown(ap: dict | None, matching: Matching, threshold: float, class_names: Sequence[str],
                          gt: GroundTruth) -> str:
        lines = [f"**At IoU 0.5, score ≥ {threshold:.2f}:** {matching.tp} true positive(s), {matching.fp} false "
                 f"positive(s), {matching.fn} missed of {len(gt)} ground-truth box(es)"
                 + (f"; {matching.ignored} on crowd regions, ignored as pycocotools does." if matching.ignored else ".")]
        if ap is not None:
            fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
            lines.append(f"**COCO AP of this image** (all {''}detections, pycocotools): AP {fmt(ap['AP'])} · "
                         f"AP50 {fmt(ap['AP50'])} · AP75 {fmt(ap['AP75'])}")
            per_class = {k: v for k, v in ap["per_class"].items() if v is not None}
            if per_class:
                lines.append("Per class: " + " · ".join(f"{k} {v:.1f}" for k, v in per_class.items()))
        return "\n\n".join(lines)

    @staticmethod
    def _table(traj: Trajectory, keep: np.ndarray, matching: Matching | None, ious: np.ndarray | None) -> Any:
        det = traj.detections
        index = np.flatnonzero(keep)
        frame = pd.DataFrame({
            "#": index,
            "class": [traj.class_names[int(k)] for k in det.labels[keep]],
            "score": np.round(det.scores[keep].astype(float), 3),
            "x1": np.round(det.boxes_xyxy[keep, 0].astype(float), 1),
            "y1": np.round(det.boxes_xyxy[keep, 1].astype(float), 1),
            "x2": np.round(det.boxes_xyxy[keep, 2].astype(float), 1),
            "y2": np.round(det.boxes_xyxy[keep, 3].astype(float), 1),
            "from step": det.step[keep].astype(int) + 1,
        })
        if matching is not None:
            frame["match @0.5"] = list(matching.status)
            frame["best IoU"] = np.round(ious.astype(float), 3) if ious is not None else np.nan
            colours = {"TP": "background-color: #d9f2d9", "FP": "background-color: #f9d6d5",
                       "ignored": "background-color: #e8e8e8"}
            return frame.style.map(lambda v: colours.get(v, ""), subset=["match @0.5"]).format(
                {"score": "{:.3f}", "x1": "{:.1f}", "y1": "{:.1f}", "x2": "{:.1f}", "y2": "{:.1f}", "best IoU": "{:.3f}"})
        return frame
