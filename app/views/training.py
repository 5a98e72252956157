"""The training view: a run's loss, AP and per-class AP curves from its metrics file."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import plotly.graph_objects as go

from app.inputs import load_metrics
from app.plotting import PALETTE, make_figure, message_figure

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
        "xaxis2": {"domain": [0.67, 1], "anchor": "y2", "title": {"text": "iteration"}, "matches": "x"},
        "yaxis2": {"domain": [0.56, 1], "anchor": "x2", "title": {"text": "AP (%)"}, "rangemode": "tozero"},
        "xaxis3": {"domain": [0, 1], "anchor": "y3", "tickangle": -20},
        "yaxis3": {"domain": [0, 0.34], "anchor": "x3", "title": {"text": "AP (%) per class"}, "rangemode": "tozero"},
        # Three legends, one beside each panel (losses: a scrollable column; click to show per-stage terms).
        "legend": {"x": 0.37, "y": 1, "yanchor": "top", "font": small, "maxheight": 0.3, "tracegroupgap": 2},
        "legend2": {"x": 0.67, "y": 1.0, "yanchor": "bottom", "orientation": "h", "font": small},
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
                     # the total first: it is the boldest curve, and the legend box scrolls
                     "legendrank": 1 if key in totals else 1000,
                     "visible": "legendonly" if per_stage else True})
    shown = [y for t in data if t["visible"] is True for y in t["y"]]
    if shown and max(shown) / min(shown) >= 10:  # labels at the decades only: Plotly also labelled 2 and 5 in each
        layout["yaxis"].update(dtick=1, minor={"dtick": "D1", "showgrid": True, "gridcolor": "#f3f3f3"})  # (2,10,5,2,1)
    # AP in this run's red, as its per-class bars below; AP50 not in the paper's blue (one colour, one meaning)
    for key, colour in (("AP", "#E45756"), ("AP50", "#F58518"), ("AP75", "#54A24B")):
        pts = [(r["iter"], float(r["eval"][key]) * scale) for r in evals
               if isinstance(r["eval"].get(key), (int, float))]
        if pts:
            xs, ys = zip(*pts)
            data.append({"type": "scatter", "mode": "lines+markers", "x": list(xs), "y": list(ys), "name": key,
                         "line": {"color": colour}, "marker": {"size": 6 if len(pts) > 1 else 10},
                         "xaxis": "x2", "yaxis": "y2", "legend": "legend2",
                         "hovertemplate": f"{key} at iter %{{x}}: %{{y:.2f}}<extra></extra>"})
    last = next((r for r in reversed(evals) if isinstance(r["eval"].get("per_class"), dict)), None)
    annotations = []
    if last is not None:
        per_class = {k: float(v) * scale for k, v in last["eval"]["per_class"].items() if isinstance(v, (int, float))}
        names = list(per_class)
        data.append({"type": "bar", "x": names, "y": [per_class[n] for n in names],
                     "name": f"this run, iter {last['iter']} (its own validation set)",
                     "marker": {"color": "#E45756"},
                     "xaxis": "x3", "yaxis": "y3", "legend": "legend3"})
        known = [n for n in names if n in PAPER_PROPS_AP]
        if known:
            for j, (label, colour) in enumerate((("PROPS paper, R-50 without heatmap (real photos)", "#BAB0AC"),
                                                 ("PROPS paper, R-50 with heatmap (real photos)", "#4C78A8"))):
                data.append({"type": "bar", "x": known, "y": [PAPER_PROPS_AP[n][j] for n in known], "name": label,
                             "marker": {"color": colour}, "xaxis": "x3", "yaxis": "y3", "legend": "legend3"})
    else:
        annotations.append({"name": "per_class", "text": "no per-class AP in this file", "x": 0.5, "y": 0.2,
                            "xref": "paper", "yref": "paper", "showarrow": False, "font": {"color": "#6b7280"}})
    # (named by panel: a phone's stacked layout moves each note to the middle of its panel)
    if not evals:
        annotations.append({"name": "ap", "text": "no evaluation rows yet", "x": 0.78, "y": 0.8, "xref": "paper",
                            "yref": "paper", "showarrow": False, "font": {"color": "#6b7280"}})
    elif len({r["iter"] for r in evals}) == 1:  # three lone dots read as a broken chart (a fresh user's words)
        annotations.append({"name": "ap", "text": f"evaluated once, at iteration {evals[0]['iter']}:<br>"
                                                  "one point per metric, no curve",
                            "x": 0.835, "y": 0.62, "xanchor": "center", "yanchor": "bottom", "xref": "paper",
                            "yref": "paper", "showarrow": False,
                            "font": {"color": "#6b7280", "size": 11}})
    if not loss_keys:
        annotations.append({"name": "loss", "text": "no loss rows", "x": 0.22, "y": 0.8, "xref": "paper",
                            "yref": "paper", "showarrow": False, "font": {"color": "#6b7280"}})
    layout["annotations"] = annotations
    return make_figure(data, layout)


class TrainingHandlers:
    """The training view's handlers (mixed into ``app.explorer.Explorer``)."""

    def metrics_file(self, checkpoint: str | None) -> Path | None:
        """The shipped run's metrics: checkpoints/*metrics*.jsonl, preferring one named after the checkpoint."""
        files = sorted(self.checkpoint_dir.glob("*metrics*.jsonl")) if self.checkpoint_dir.is_dir() else []
        if not files:
            return None
        stem = Path(checkpoint).stem if checkpoint else ""
        for file in files:
            if stem and file.name.startswith(stem):
                return file
        return files[0]

    def training(self, metrics_upload: str | None, checkpoint: str | None) -> tuple[go.Figure, str]:
        """AP-vs-iteration and per-class AP from an uploaded metrics file or the shipped checkpoint's own."""
        path = Path(metrics_upload) if metrics_upload else self.metrics_file(checkpoint)
        if path is None:
            message = ("No metrics: no `*metrics*.jsonl` file ships next to the checkpoints. Upload a run's "
                       "metrics file (JSON lines with `iter`, `loss_*`, `lr` and `eval` rows) to plot it.")
            return message_figure("No metrics file to plot"), message
        rows = load_metrics(path)
        evals = [r for r in rows if isinstance(r.get("eval"), dict)]
        name = path.name
        summary = f"**{name}**: {len(rows) - len(evals)} training row(s), {len(evals)} evaluation row(s)"
        if evals:
            best = max(evals, key=lambda r: float(r["eval"].get("AP") or -1))
            ap = float(best["eval"].get("AP") or 0) * ap_scale(rows)
            summary += f"; best AP {ap:.1f} at iteration {best['iter']}"
        summary += ("\n\n**Not the same test.** This run's AP is measured on its own validation images (for the "
                    "shipped model: rendered scenes); the paper's bars are its Table I, measured on real PROPS photos "
                    "with a ResNet-50. A higher bar here does not mean this model beats the paper's on real photos.")
        return training_figure(rows, title=name), summary
