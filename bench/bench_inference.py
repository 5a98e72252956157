"""Inference speed of the core on this machine: prints figures, asserts nothing.

Per-image latency of props_r50 (random weights; speed does not depend on them) at 640x480 for 100/300/500
proposals x 1/4 steps, batch 1 and batch 8, with and without trajectory recording; the tiny preset; heatmap
target synthesis. Comparisons are ratios taken in the same run.

    python bench/bench_inference.py [--quick] [--device cuda]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffdet.config import get_preset  # noqa: E402
from diffdet.heatmap import synthesize_heatmap  # noqa: E402
from diffdet.inference import SamplerOptions, sample  # noqa: E402
from diffdet.model import build_model  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer configurations and repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(8)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}")

    torch.manual_seed(0)
    model = build_model(get_preset("props_r50")).to(device).eval()
    proposals = (300,) if args.quick else (100, 300, 500)
    steps_list = (1,) if args.quick else (1, 4)
    print("\nprops_r50, 640x480, seconds per image (median)")
    print(f"{'proposals':>9} {'steps':>5} {'b1 rec':>8} {'b1 norec':>9} {'overhead':>8} {'b8 rec':>8} {'b8/b1':>6}")
    for num in proposals:
        for steps in steps_list:
            rec = SamplerOptions(steps=steps, num_proposals=num)
            norec = SamplerOptions(steps=steps, num_proposals=num, record=False)
            b1 = timed(lambda: sample(model, images[:1], rec), args.repeats)
            b1_plain = timed(lambda: sample(model, images[:1], norec), args.repeats)
            b8 = timed(lambda: sample(model, images, rec), max(1, args.repeats - 1)) / 8
            print(f"{num:>9} {steps:>5} {b1:>8.3f} {b1_plain:>9.3f} {b1 / b1_plain - 1:>7.1%} {b8:>8.3f} {b8 / b1:>6.2f}")

    tiny = build_model(get_preset("tiny")).to(device).eval()
    for steps in (1, 4):
        t = timed(lambda: sample(tiny, images[:1], SamplerOptions(steps=steps)), args.repeats)
        print(f"tiny preset, 640x480 input, {steps} step(s), batch 1: {t:.3f} s")

    boxes = torch.tensor(rng.uniform(0, 400, (10, 2)), dtype=torch.float32)
    boxes = torch.cat([boxes, boxes + torch.tensor(rng.uniform(20, 200, (10, 2)), dtype=torch.float32)], dim=1)
    labels = torch.arange(10)
    t = timed(lambda: synthesize_heatmap(boxes, labels, 10, (120, 160), 4.0), 200)
    print(f"target synthesis, 10 boxes, 10 classes, stride-4 grid 120x160: {t * 1000:.2f} ms")


if __name__ == "__main__":
    main()
