"""The paper's inference claim, measured: does a heatmap let the detector do with fewer proposals and steps?

"Given a heat-map, the model only denoises boxes in regions with large values": if so, proposals drawn from the
heatmap (``SamplerOptions.heatmap_init``, ``diffdet.inference.HeatmapGuide``) should reach the AP of random
proposals with fewer of them, and so in less time. This script scores both initialisations over a grid of
proposal counts and DDIM steps on each data set (pycocotools AP through the project's one inference API), times
every setting round-robin at batch 1 (``retime``), and writes the AP-vs-time frontier.

    python scripts/heatmap_frontier.py --data renders=data/sim2_a --data real-dev=../shared/real-dev \
        --limit 60 --json docs/heatmap_frontier.json --plot docs/heatmap_frontier.png

Times are medians of per-image wall times at batch 1 on the machine that runs it (say which, and what else ran).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffdet.data import load_split, read_image_rgb  # noqa: E402
from diffdet.evaluate import coco_evaluate, detect_split  # noqa: E402
from diffdet.inference import DEFAULT_CHECKPOINT, SamplerOptions, sample  # noqa: E402
from diffdet.weights import load_checkpoint  # noqa: E402

INITS = {"random": 0.0, "heatmap": 1.0}  # name: heatmap_init


def named(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (time, AP) points no other point beats on both (less time and more AP), by time."""
    front, best = [], float("-inf")
    for t, ap in sorted(points, key=lambda p: (p[0], -p[1])):
        if ap > best:
            front.append((t, ap))
            best = ap
    return front


def figure(rows: list[dict]):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    sets = list(dict.fromkeys(r["data"] for r in rows))
    fig = make_subplots(rows=1, cols=len(sets), subplot_titles=[f"{s}: AP vs seconds per image" for s in sets])
    colours = {"random": "#1f77b4", "heatmap": "#d62728"}
    for col, name in enumerate(sets, 1):
        for init, colour in colours.items():
            sel = [r for r in rows if r["data"] == name and r["init"] == init]
            fig.add_trace(go.Scatter(
                x=[r["seconds"] for r in sel], y=[r["AP"] for r in sel], mode="markers", name=f"{init} init",
                legendgroup=init, showlegend=col == 1, marker=dict(color=colour, size=7, opacity=0.6),
                text=[f"{r['proposals']} proposals, {r['steps']} step(s)" for r in sel],
                hovertemplate="%{text}<br>%{x:.3f} s, AP %{y:.1f}<extra></extra>"), row=1, col=col)
            front = pareto([(r["seconds"], r["AP"]) for r in sel])
            fig.add_trace(go.Scatter(x=[p[0] for p in front], y=[p[1] for p in front], mode="lines",
                                     line=dict(color=colour), name=f"{init} frontier", legendgroup=init,
                                     showlegend=False, hoverinfo="skip"), row=1, col=col)
        fig.update_xaxes(title_text="seconds per image (batch 1)", type="log", row=1, col=col)
        fig.update_yaxes(title_text="AP (pycocotools)", row=1, col=col)
    fig.update_layout(width=520 * len(sets), height=430, margin=dict(l=60, r=20, t=50, b=50),
                      legend=dict(orientation="h", y=-0.2))
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--data", type=named, action="append", required=True, help="NAME=PROPS folder (val split)")
    parser.add_argument("--proposals", type=int, nargs="+", default=[10, 20, 50, 100, 300])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--limit", type=int, default=0, help="first N images of each set (0 = all)")
    parser.add_argument("--time-images", type=int, default=5, help="round-robin timing rounds (one image each)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None, help=".html or .png (kaleido)")
    parser.add_argument("--retime", default=None, metavar="JSON",
                        help="re-measure only the times of a previous --json, round-robin over the settings "
                             "(--time-images rounds), so load drift hits all alike; writes --json")
    args = parser.parse_args(argv)
    model = load_checkpoint(args.checkpoint)
    if args.retime:
        rows = retime(model, json.loads(Path(args.retime).read_text())["rows"], dict(args.data), args.time_images)
        report(rows, args)
        return 0
    rows = []
    for data_name, data_path in args.data:
        split = load_split(data_path, "props", "val", model.cfg.class_names)
        if args.limit:
            split.samples = split.samples[: args.limit]
        for steps in args.steps:
            for num in args.proposals:
                for init, ratio in INITS.items():
                    options = SamplerOptions.from_config(model.cfg, steps=steps, num_proposals=num,
                                                         heatmap_init=ratio, record=False)
                    ap = coco_evaluate(detect_split(model, split, options, seed=0), split.samples, split.class_names)
                    row = {"data": data_name, "images": len(split), "init": init, "proposals": num, "steps": steps,
                           "AP": ap["AP"], "AP50": ap["AP50"], "AP75": ap["AP75"]}
                    rows.append(row)
                    print(f"{data_name} {init:>7} {num:>4} proposals {steps} step(s): AP {row['AP']:.1f} "
                          f"AP50 {row['AP50']:.1f}", file=sys.stderr, flush=True)
    # Times after all the AP runs, round-robin over the settings (the same measurement as --retime).
    rows = retime(model, rows, dict(args.data), args.time_images)
    report(rows, args)
    return 0


def retime(model, rows: list[dict], data: dict[str, str], rounds: int) -> list[dict]:
    """The rows with ``seconds`` measured again, round-robin: each round times every setting once (on the
    round's image of its set), so a machine whose load drifts slows all settings alike; the median of ``rounds``."""
    images = {}
    for name, path in data.items():
        split = load_split(path, "props", "val", model.cfg.class_names)
        images[name] = [read_image_rgb(s.image_path, exif=s.exif) for s in split.samples[:rounds]]
    options = [SamplerOptions.from_config(model.cfg, steps=row["steps"], num_proposals=row["proposals"],
                                          heatmap_init=INITS[row["init"]], record=False) for row in rows]
    for row, opts in zip(rows, options):  # warm-up
        sample(model, images[row["data"]][:1], opts)
    times: list[list[float]] = [[] for _ in rows]
    for round_index in range(rounds):
        for row, opts, spent in zip(rows, options, times):
            image = images[row["data"]][round_index % len(images[row["data"]])]
            start = time.perf_counter()
            sample(model, [image], opts)
            spent.append(time.perf_counter() - start)
    for row, spent in zip(rows, times):
        row["seconds"] = statistics.median(spent)
        print(f"{row['data']} {row['init']:>7} {row['proposals']:>4} proposals {row['steps']} step(s): "
              f"{row['seconds']:.3f} s", file=sys.stderr, flush=True)
    return rows


def report(rows: list[dict], args: argparse.Namespace) -> None:
    """Markdown table on stdout; --json and --plot files."""
    print("| data | steps | proposals | random AP | heatmap AP | random s | heatmap s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["init"] != "random":
            continue
        h = next(x for x in rows if x["init"] == "heatmap" and all(x[k] == r[k] for k in ("data", "steps", "proposals")))
        print(f"| {r['data']} ({r['images']} images) | {r['steps']} | {r['proposals']} | {r['AP']:.1f} | {h['AP']:.1f} | "
              f"{r['seconds']:.3f} | {h['seconds']:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(args.checkpoint), "rows": rows}, indent=1))
    if args.plot:
        fig = figure(rows)
        if args.plot.endswith(".html"):
            fig.write_html(args.plot, include_plotlyjs="cdn")
        else:
            fig.write_image(args.plot, scale=1)


if __name__ == "__main__":
    raise SystemExit(main())
