"""``python -m diffdet plot RUN_DIR... --out FILE.html|png``: AP vs iteration (the paper's Fig. 3) and per-class AP
(Table I) from the metrics files that training writes; runs that share a name up to a ``_seedN`` suffix are drawn
as their mean with a min-max band."""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def read_evals(run_dir: str | Path) -> list[dict[str, Any]]:
    """The evaluation rows of a run's metrics.jsonl (``{"iter", "eval": {...}}``), in iteration order."""
    path = Path(run_dir) / "metrics.jsonl" if Path(run_dir).is_dir() else Path(run_dir)
    if not path.is_file():
        raise ValueError(f"no metrics file at {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not JSON ({exc})") from exc
        if isinstance(row, dict) and isinstance(row.get("eval"), dict):
            rows.append(row)
    return sorted(rows, key=lambda r: r["iter"])


def group_name(run_dir: str | Path) -> str:
    return re.sub(r"[_-]seed\d+$", "", Path(run_dir).name)


def build_figure(run_dirs: list[str | Path], metric: str = "AP") -> Any:
    """Plotly figure: left, ``metric`` vs iteration per group (mean line, min-max band); right, last per-class AP."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    groups: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for run in run_dirs:
        evals = read_evals(run)
        if not evals:
            raise ValueError(f"{run} has no evaluation rows yet")
        groups[group_name(run)].append(evals)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45],
                        subplot_titles=(f"{metric} vs iteration", "per-class AP (last evaluation)"))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"]
    for g, (name, runs) in enumerate(groups.items()):
        colour = palette[g % len(palette)]
        iters = sorted(set.intersection(*[{r["iter"] for r in run} for run in runs]))
        values = np.array([[next(r["eval"][metric] for r in run if r["iter"] == it) or 0.0 for it in iters]
                           for run in runs], dtype=float)  # (runs, evals)
        label = f"{name} (n={len(runs)})"
        if len(runs) > 1:
            fig.add_trace(go.Scatter(x=iters + iters[::-1], y=list(values.max(0)) + list(values.min(0))[::-1],
                                     mode="lines", fill="toself", fillcolor=colour, opacity=0.2, line=dict(width=0),
                                     showlegend=False, hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Scatter(x=iters, y=values.mean(0), mode="lines+markers", name=label,
                                 line=dict(color=colour)), row=1, col=1)
        per_class = [run[-1]["eval"].get("per_class") or {} for run in runs]
        classes = list(per_class[0])
        means = [float(np.mean([pc.get(c) or 0.0 for pc in per_class])) for c in classes]
        fig.add_trace(go.Bar(x=classes, y=means, name=label, marker_color=colour, showlegend=False), row=1, col=2)
    fig.update_xaxes(title_text="iteration", row=1, col=1)
    fig.update_yaxes(title_text=f"{metric} (0-100)", row=1, col=1)
    fig.update_yaxes(title_text="AP (0-100)", row=1, col=2)
    fig.update_layout(barmode="group", width=1200, height=480, template="plotly_white")
    return fig


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffdet plot", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (or metrics.jsonl files)")
    parser.add_argument("--out", required=True, help="output .html or .png")
    parser.add_argument("--metric", default="AP", choices=("AP", "AP50", "AP75", "APs", "APm", "APl"))
    args = parser.parse_args(argv)
    try:
        fig = build_figure(args.runs, args.metric)
        out = Path(args.out)
        if out.suffix == ".html":
            fig.write_html(out, include_plotlyjs=True)
        elif out.suffix == ".png":
            try:
                fig.write_image(out)
            except Exception as exc:  # noqa: BLE001 - plotly's image export needs kaleido and a Chrome/Chromium
                raise ValueError(f"PNG export needs the kaleido package and a Chrome or Chromium browser ({exc}); "
                                 "write .html instead") from exc
        else:
            raise ValueError(f"--out must end in .html or .png, got {out.name}")
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {args.out}")
    return 0
