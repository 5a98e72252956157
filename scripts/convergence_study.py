"""The convergence study (the paper's Fig. 3 and Table I), measured: baseline vs heatmap head, several seeds.

    python scripts/convergence_study.py --data data/renders --out runs/study

Three phases, each skipped where its results already exist, so the command can be stopped and run again:
1. train: for every seed, a run without the heatmap head (``baseline_seedN``) and one with it (``heatmap_seedN``),
   same preset, data, schedule and seed, then two heatmap-loss variants for ``--variant-seeds``: the focal-style loss
   (``focal_seedN``) and the paper's MSE at 100x its weight (``mse150_seedN``); AP on the held-out renders at every
   ``--eval-every`` iterations (``python -m diffdet train ... --resume``, so a killed run continues from its last
   checkpoint);
2. infer: the final heatmap-head models scored at 1 step, at 1 step with heatmap-guided proposals, and at 4 steps;
3. report: ``docs/convergence.png`` and ``.html`` (plot), and the tables between the markers of
   ``docs/convergence.md`` (the prose around them is kept).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diffdet.plot import build_figure, read_evals  # noqa: E402

ARMS = {"baseline": ["--use-heatmap", "false"], "heatmap": ["--use-heatmap", "true"],
        # variants: the focal-style heatmap loss instead of the paper's MSE (which heatmap loss works better), and
        # the MSE at 100x the paper's weight (does a term that carries more of the loss do more?)
        "focal": ["--use-heatmap", "true", "--heatmap-loss", "focal"],
        "mse150": ["--use-heatmap", "true", "--heatmap-weight", "150"]}
VARIANTS = {"focal": "focal x1.5", "mse150": "MSE x150"}
BEGIN, END = "<!-- study:begin -->", "<!-- study:end -->"
# The paper's Table I (ResNet-50, 15k iterations on real PROPS), from ../shared/REFERENCE.md.
PAPER_PER_CLASS = {
    "master_chef_can": (74.873, 80.74), "cracker_box": (72.318, 77.84), "sugar_box": (75.262, 79.01),
    "tomato_soup_can": (72.893, 76.05), "mustard_bottle": (72.541, 79.95), "tuna_fish_can": (44.210, 58.62),
    "gelatin_box": (55.481, 60.85), "potted_meat_can": (65.272, 70.77), "mug": (70.459, 75.43),
    "large_marker": (25.211, 34.40),
}
# The study's schedule (tiny preset on a CPU): short, so its 8 runs fit in about 2 h 40 min on 2 cores.
DEFAULT_TRAIN_ARGS = ["--lr", "1.5e-4", "--lr-steps", "540", "--warmup-iters", "50", "--min-size-train", "320", "352", "384"]
INFERENCE_SETTINGS = {  # name: (steps, heatmap_init)
    "1 step": (1, 0.0),
    "1 step, 50% proposals from heatmap peaks": (1, 0.5),
    "4 steps": (4, 0.0),
    "4 steps, 50% proposals from heatmap peaks": (4, 0.5),
}


def run_dir(out: Path, arm: str, seed: int) -> Path:
    return out / f"{arm}_seed{seed}"


def finished(run: Path, iters: int) -> bool:
    try:
        return any(row["iter"] == iters for row in read_evals(run))
    except ValueError:
        return False


def train_all(args: argparse.Namespace) -> None:
    timings_path = args.out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    # Arms interleaved per seed, so a study cut short still has paired runs; the variants last.
    plan = [(arm, seed) for seed in args.seeds for arm in ("baseline", "heatmap")]
    plan += [(arm, seed) for arm in VARIANTS for seed in args.variant_seeds]
    for arm, seed in plan:
        flags = ARMS[arm]
        run = run_dir(args.out, arm, seed)
        if finished(run, args.iters):
            continue
        command = [sys.executable, "-m", "diffdet", "train", "--config", args.config, "--data", str(args.data),
                   "--out", str(run), "--iters", str(args.iters), "--seed", str(seed), "--resume",
                   "--eval-every", str(args.eval_every), "--eval-images", str(args.eval_images),
                   "--checkpoint-every", str(args.checkpoint_every), "--workers", "1", "--log-every", "16",
                   *flags, *args.train_args]
        print("+", " ".join(command), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        timings[run.name] = timings.get(run.name, 0.0) + time.perf_counter() - start
        timings_path.write_text(json.dumps(timings, indent=1))


def infer_all(args: argparse.Namespace) -> dict[str, Any]:
    from diffdet.data import load_split
    from diffdet.evaluate import evaluate_model
    from diffdet.inference import SamplerOptions
    from diffdet.weights import load_checkpoint

    path = args.out / "inference.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    split = None
    for seed in args.seeds:
        run = run_dir(args.out, "heatmap", seed)
        if not finished(run, args.iters):
            continue
        for name, (steps, ratio) in INFERENCE_SETTINGS.items():
            if name in results.get(run.name, {}):
                continue
            model = load_checkpoint(run / "model.safetensors")
            if split is None:
                split = load_split(args.data, "props", "val", model.cfg.class_names)
                split.samples = split.samples[: args.eval_images]
            options = SamplerOptions.from_config(model.cfg, steps=steps, heatmap_init=ratio, record=False)
            start = time.perf_counter()
            scores = evaluate_model(model, split, options, seed=0)
            scores["seconds"] = time.perf_counter() - start
            results.setdefault(run.name, {})[name] = scores
            path.write_text(json.dumps(results, indent=1))
            print(f"{run.name} / {name}: AP {scores['AP']:.1f}", flush=True)
    return results


def _mean_sd(values: list[float]) -> str:
    arr = np.asarray(values, dtype=float)
    return f"{arr.mean():.1f} ± {arr.std(ddof=1):.1f}" if len(arr) > 1 else f"{arr.mean():.1f}"


def tables(args: argparse.Namespace, inference: dict[str, Any]) -> str:
    evals = {arm: {seed: read_evals(run_dir(args.out, arm, seed)) for seed in args.seeds + args.variant_seeds
                   if finished(run_dir(args.out, arm, seed), args.iters)} for arm in ARMS}
    seeds = sorted(set(evals["baseline"]) & set(evals["heatmap"]))
    if not seeds:
        raise SystemExit("no seed has both arms finished yet")
    iters = [row["iter"] for row in evals["baseline"][seeds[0]]]

    def metric(arm: str, seed: int, it: int, key: str = "AP") -> float:
        return next(r["eval"][key] for r in evals[arm][seed] if r["iter"] == it) or 0.0

    timings_path = args.out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    minutes = sum(timings.values()) / 60
    speeds = [v for arm in ARMS for seed in evals[arm] for v in iteration_speeds(run_dir(args.out, arm, seed))]
    lines = [f"Seeds: {', '.join(map(str, seeds))} ({len(seeds)} per arm). AP on the first {args.eval_images} "
             f"held-out renders, 1 DDIM step, pycocotools, 0-100; mean ± sample standard deviation over seeds "
             f"[min, max]. Wall time of the training runs as recorded: {minutes:.0f} min over {len(timings)} runs; "
             f"median training speed {1 / float(np.median(speeds)):.2f} s per iteration.", "",
             "### AP vs iteration", "",
             "| iteration | baseline AP | heatmap AP | difference (paired by seed) | baseline AP50 | heatmap AP50 |",
             "|---|---|---|---|---|---|"]
    for it in iters:
        base = [metric("baseline", s, it) for s in seeds]
        heat = [metric("heatmap", s, it) for s in seeds]
        diff = [h - b for h, b in zip(heat, base)]
        base50 = [metric("baseline", s, it, "AP50") for s in seeds]
        heat50 = [metric("heatmap", s, it, "AP50") for s in seeds]
        lines.append(f"| {it} | {_mean_sd(base)} [{min(base):.1f}, {max(base):.1f}] | {_mean_sd(heat)} "
                     f"[{min(heat):.1f}, {max(heat):.1f}] | {np.mean(diff):+.1f} [{min(diff):+.1f}, {max(diff):+.1f}] "
                     f"| {_mean_sd(base50)} | {_mean_sd(heat50)} |")
    last = iters[-1]
    lines += ["", f"### Per-class AP at iteration {last} (mean over seeds), beside the paper's Table I", "",
              "| class | ours, baseline | ours, heatmap | difference | paper, without | paper, with | paper difference |",
              "|---|---|---|---|---|---|---|"]
    ours_b, ours_h = [], []
    for name, (paper_b, paper_h) in PAPER_PER_CLASS.items():
        b = float(np.mean([metric_pc(evals["baseline"][s], last, name) for s in seeds]))
        h = float(np.mean([metric_pc(evals["heatmap"][s], last, name) for s in seeds]))
        ours_b.append(b)
        ours_h.append(h)
        lines.append(f"| {name} | {b:.1f} | {h:.1f} | {h - b:+.1f} | {paper_b:.1f} | {paper_h:.1f} | "
                     f"{paper_h - paper_b:+.1f} |")
    paper_b, paper_h = (float(np.mean(v)) for v in zip(*PAPER_PER_CLASS.values()))
    lines.append(f"| mean | {np.mean(ours_b):.1f} | {np.mean(ours_h):.1f} | {np.mean(ours_h) - np.mean(ours_b):+.1f} "
                 f"| {paper_b:.1f} | {paper_h:.1f} | {paper_h - paper_b:+.1f} |")
    variant_seeds = sorted(set(args.variant_seeds) & set(seeds))
    variants = [arm for arm in VARIANTS if variant_seeds and all(s in evals[arm] for s in variant_seeds)]
    if variants:
        arms = ["baseline", "heatmap", *variants]
        names = ["baseline (no heatmap)", "MSE x1.5 (paper)", *(VARIANTS[a] for a in variants)]
        lines += ["", f"### Heatmap loss variants (seed {', '.join(map(str, variant_seeds))}, same schedule)", "",
                  f"| iteration | {' | '.join(f'{n} AP' for n in names)} |", "|---" * (len(arms) + 1) + "|"]
        for it in iters:
            cells = [_mean_sd([metric(arm, s, it) for s in variant_seeds]) for arm in arms]
            lines.append(f"| {it} | {' | '.join(cells)} |")
        shares = [f"{np.mean([100 * heatmap_share(run_dir(args.out, arm, s), iters[-2]) for s in variant_seeds]):.2f}"
                  if arm != "baseline" else "-" for arm in arms]
        lines.append(f"| heatmap share of the loss after {iters[-2]}, % | {' | '.join(shares)} |")
    rows = [(name, [inference[run_dir(args.out, "heatmap", s).name][name] for s in seeds
                    if name in inference.get(run_dir(args.out, "heatmap", s).name, {})])
            for name in INFERENCE_SETTINGS]
    rows = [(name, found) for name, found in rows if found]
    if rows:
        lines += ["", f"### Heatmap-guided proposals at inference (heatmap-head models at iteration {last})", "",
                  "| sampling | AP | AP50 | AP75 | APs | seconds per image |", "|---|---|---|---|---|---|"]
        for name, found in rows:
            cells = [_mean_sd([r[k] or 0.0 for r in found]) for k in ("AP", "AP50", "AP75", "APs")]
            per_image = np.mean([r["seconds"] for r in found]) / args.eval_images
            lines.append(f"| {name} (n={len(found)}) | {' | '.join(cells)} | {per_image:.2f} |")
    return "\n".join(lines)


def metric_rows(run: Path) -> list[dict[str, Any]]:
    """Every row of a run's metrics.jsonl (training windows and evaluations), in file order."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def iteration_speeds(run: Path) -> list[float]:
    """Iterations per second of each logging window of a run, less the windows that contain an evaluation."""
    rows = metric_rows(run)
    eval_iters = {r["iter"] for r in rows if "eval" in r}
    speed_rows = [r for r in rows if "it_s" in r]
    return [r["it_s"] for previous, r in zip(speed_rows, speed_rows[1:]) if previous["iter"] not in eval_iters]


def heatmap_share(run: Path, after: int) -> float:
    """Mean over the logging windows after iteration ``after`` of weight x loss_heatmap / loss_total."""
    weight = json.loads((run / "config.json").read_text())["heatmap_weight"]
    rows = metric_rows(run)
    shares = [weight * r["loss_heatmap"] / r["loss_total"] for r in rows if r["iter"] > after and "loss_heatmap" in r]
    if not shares:
        raise ValueError(f"{run}: no loss_heatmap logged after iteration {after}")
    return float(np.mean(shares))


def metric_pc(evals: list[dict[str, Any]], it: int, name: str) -> float:
    row = next(r for r in evals if r["iter"] == it)
    return row["eval"].get("per_class", {}).get(name) or 0.0


def report(args: argparse.Namespace, inference: dict[str, Any]) -> None:
    body = tables(args, inference)
    runs = [run_dir(args.out, arm, s) for arm in ("baseline", "heatmap") for s in args.seeds
            if finished(run_dir(args.out, arm, s), args.iters)]
    fig = build_figure(runs)
    docs = args.docs
    docs.mkdir(parents=True, exist_ok=True)
    fig.write_html(docs / "convergence.html", include_plotlyjs="cdn")
    fig.write_image(docs / "convergence.png", scale=1)
    doc = docs / "convergence.md"
    text = doc.read_text() if doc.exists() else f"# Convergence study\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")
    print(f"wrote {doc}, convergence.png and convergence.html beside it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data/renders")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/study")
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variant-seeds", type=int, nargs="*", default=[0],
                        help="seeds of the heatmap-loss variants (focal loss; MSE at 100x weight)")
    parser.add_argument("--iters", type=int, default=640)
    parser.add_argument("--eval-every", type=int, default=128)
    parser.add_argument("--eval-images", type=int, default=200)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where the report goes")
    parser.add_argument("--checkpoint-every", type=int, default=64)
    parser.add_argument("--phases", nargs="+", choices=("train", "infer", "report"), default=["train", "infer", "report"])
    parser.add_argument("train_args", nargs=argparse.REMAINDER,
                        help="after --: more `python -m diffdet train` flags, the same for every run")
    args = parser.parse_args()
    args.train_args = [a for a in args.train_args if a != "--"] or DEFAULT_TRAIN_ARGS
    args.out.mkdir(parents=True, exist_ok=True)
    if "train" in args.phases:
        train_all(args)
    inference = infer_all(args) if "infer" in args.phases else {}
    if "report" in args.phases:
        if not inference and (args.out / "inference.json").exists():
            inference = json.loads((args.out / "inference.json").read_text())
        report(args, inference)


if __name__ == "__main__":
    main()
