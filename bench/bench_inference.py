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
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffdet.config import get_preset  # noqa: E402
from diffdet.head import RoIPooler, multilevel_roi_align  # noqa: E402
from diffdet.heatmap import synthesize_heatmap  # noqa: E402
from diffdet.inference import SamplerOptions, native_bfloat16, sample  # noqa: E402
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
    parser.add_argument("--pairs", type=int, default=20, help="paired runs for the recording overhead")
    parser.add_argument("--bfloat16", choices=("auto", "always", "never"), default="auto",
                        help="time bfloat16 against float32: auto = only where the device runs it natively")
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

    # The batch-8 target (per image <= half of batch 1) against this device's compute ceiling: the work per image
    # is the same at any batch size, so halving the time needs twice batch 1's arithmetic rate.
    gemm = torch.randn(2048, 2048, device=device)
    t_gemm = timed(lambda: gemm @ gemm, 10)
    ceiling = 2 * 2048 ** 3 / t_gemm / 1e9
    plain = SamplerOptions(steps=1, num_proposals=300, record=False)
    rates = {}
    for batch in (1, 8):
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            sample(model, images[:batch], plain)
        seconds = timed(lambda: sample(model, images[:batch], plain), max(1, args.repeats - 1))
        rates[batch] = (counter.get_total_flops() / batch / 1e9, seconds / batch)
    flop, t1 = rates[1]
    print(f"compute ceiling: fp32 GEMM 2048^3 {ceiling:.0f} GFLOP/s; 300 proposals, 1 step: {flop:.1f} GFLOP per "
          f"image; batch 1 runs at {flop / t1:.0f} GFLOP/s ({flop / t1 / ceiling:.0%} of the GEMM rate), batch 8 at "
          f"{rates[8][0] / rates[8][1]:.0f}; batch 8 at half of batch 1 per image needs {2 * flop / t1:.0f} GFLOP/s")

    # Recording overhead at the target setting, as the median of paired runs (recording, plain) taken back to back,
    # so slow drifts of a shared machine cancel out.
    rec, norec = SamplerOptions(steps=1, num_proposals=300), SamplerOptions(steps=1, num_proposals=300, record=False)
    ratios = []
    for _ in range(args.pairs):
        start = time.perf_counter()
        sample(model, images[:1], rec)
        middle = time.perf_counter()
        sample(model, images[:1], norec)
        ratios.append((middle - start) / (time.perf_counter() - middle))
    q1, q2, q3 = np.percentile(ratios, [25, 50, 75])
    print(f"recording overhead, 300 proposals, 1 step, {args.pairs} paired runs: median {q2 - 1:+.1%} "
          f"(quartiles {q1 - 1:+.1%} .. {q3 - 1:+.1%})")

    # Precision: bfloat16 autocast against float32 at the target setting, paired runs.
    native = native_bfloat16(device)
    if args.bfloat16 == "always" or (args.bfloat16 == "auto" and native):
        ratios = []
        for _ in range(max(1, args.repeats)):
            start = time.perf_counter()
            sample(model, images[:1], SamplerOptions(steps=1, num_proposals=300, record=False))
            middle = time.perf_counter()
            sample(model, images[:1], SamplerOptions(steps=1, num_proposals=300, record=False, dtype="bfloat16"))
            ratios.append((time.perf_counter() - middle) / (middle - start))
        print(f"bfloat16 / float32 time, 300 proposals, 1 step, batch 1 ({'native' if native else 'EMULATED'}): "
              f"{statistics.median(ratios):.2f} (target <= 0.6)")
    else:
        print(f"bfloat16: not timed ({device} has no native bfloat16; --bfloat16 always times the emulation)")

    # RoI pooling of one head stage (300 boxes, 256 channels): torchvision's roi_align per level vs the gather pooler.
    feats = [torch.randn(1, 256, 480 // s, 640 // s, device=device) for s in (4, 8, 16, 32)]
    centres = torch.tensor(rng.uniform(0, 1, (1, 300, 2)) * [640, 480], dtype=torch.float32, device=device)
    sizes = torch.tensor(rng.uniform(10, 250, (1, 300, 2)), dtype=torch.float32, device=device)
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)
    with torch.inference_mode():
        t_tv = timed(lambda: multilevel_roi_align(feats, boxes, (4, 8, 16, 32), 7, 2), 10)
        t_table = timed(lambda: RoIPooler(feats, (4, 8, 16, 32), 7, 2), 10)
        pooler = RoIPooler(feats, (4, 8, 16, 32), 7, 2)
        t_pool = timed(lambda: pooler(boxes), 10)
    print(f"RoI pooling, 300 boxes, one stage: torchvision roi_align per level {t_tv * 1000:.1f} ms, "
          f"RoIPooler {t_pool * 1000:.1f} ms (+ {t_table * 1000:.1f} ms once per head call): {t_tv / t_pool:.1f}x")

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
