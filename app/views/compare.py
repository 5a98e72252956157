"""The A/B view: two runs of the same image side by side, one slider scrubbing both."""
from __future__ import annotations

from typing import Any, Sequence

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from diffdet.trajectory import Trajectory

from app.controls import Display, file_key
from app.evaluation import image_ap, stage_ious
from app.plotting import ImageSource, ViewOptions, image_axes, image_plot_height, make_figure
from app.views.denoising import _panel, _slider, _slot_traces, _slots, aligned_positions

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
    active = max(len(p) for p in pos_lists) - 1
    opening = aligned_positions(pos_lists)[active]
    flat: list[dict] = []
    slotted = []
    for (static, (roles, slots), axes), local in zip(panels, opening):
        flat.extend(static)
        slotted.append((list(range(len(flat), len(flat) + len(roles))), slots))
        flat.extend(_slot_traces(slots[local], roles, axes))
    slider = _slider(slotted, pos_lists, active)
    layout.update({"height": image_plot_height(image.width, image.height, columns=2) + 40 + 70, "sliders": [slider],
                   "showlegend": False, "margin": {"l": 8, "r": 8, "t": 40, "b": 70}})
    return make_figure(flat, layout)


class CompareHandlers:
    """The compare view's handlers (mixed into ``app.explorer.Explorer``)."""

    def compare(self, image_path: str | None, gt_file: str | None, use_example_gt: bool, checkpoint: str | None,
                upload: str | None, proposals: Any, steps: Any, eta: Any, seed: Any, renewal: Any,
                renewal_threshold: Any, ensemble: Any, nms: Any, nms_iou: Any, heatmap_init: Any,
                score_threshold: Any, classes: Any, show_labels: Any, show_scores: Any, line_width: Any, stage: Any,
                show_gt: Any, show_tracks: Any, seed_b: Any, steps_b: Any, eta_b: Any, heatmap_b: Any,
                renewal_b: Any) -> tuple[go.Figure, str]:
        """Run A (the main settings) and B (the same with B's seed, steps, eta, heatmap ratio and renewal) and show
        them side by side with one slider."""
        common = (proposals, steps, eta, renewal, renewal_threshold, ensemble, nms, nms_iou, heatmap_init)
        image, traj_a, cfg, shown, sec_a, _ = self._run(image_path, checkpoint, upload, common, seed)
        options_b = (proposals, steps_b, eta_b, renewal_b, renewal_threshold, ensemble, nms, nms_iou, heatmap_b)
        _, traj_b, _, _, sec_b, _ = self._run(image_path, checkpoint, upload, options_b, seed_b)
        display = Display.from_controls(score_threshold, classes, show_labels, show_scores, line_width, stage,
                                        show_gt, show_tracks)
        view = display.view(traj_a.class_names, traj_a.num_stages)
        gt, notes = self.ground_truth(image_path, traj_a.image_size_hw, gt_file, use_example_gt, traj_a.class_names)
        for note in notes:
            gr.Warning(note)
        gt_boxes = gt.boxes_xyxy if gt is not None and len(gt) else None
        source = self._image_sources.get(file_key(image_path) + (False,), lambda: ImageSource.from_array(image))

        def describe(traj: Trajectory) -> str:
            s = traj.settings
            return (f"seed {s.get('seed', '?')}, {traj.num_steps} step(s), eta {s['eta']:g}, "
                    f"heatmap {s['heatmap_init']:g}, renewal {'on' if s['box_renewal'] else 'off'}")

        titles = ["A", "B"]
        figure = compare_figure([traj_a, traj_b], titles, source, view, gt_boxes,
                                  [stage_ious(traj_a, gt_boxes, view.stage), stage_ious(traj_b, gt_boxes, view.stage)])
        rows = ["| | settings | detections ≥ threshold | AP | AP50 |", "|---|---|---|---|---|"]
        for title, traj in zip(titles, (traj_a, traj_b)):
            count = int((traj.detections.scores >= display.score_threshold).sum())
            ap = (image_ap(traj, gt.boxes_xyxy, gt.labels, gt.crowd_boxes_xyxy, gt.crowd_labels)
                  if gt_boxes is not None else None)
            fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
            rows.append(f"| **{title}** | {describe(traj)} | {count} | {fmt(ap and ap['AP'])} | "
                        f"{fmt(ap and ap['AP50'])} |")
        return figure, "\n".join(rows)

