"""Where the inference time goes: torch.profiler per-op tables of props_r50 (random weights) at 640x480,
300 proposals, 1 and 4 DDIM steps, batch 1, and the cost of steps 2..S against step 1. Prints figures, asserts
nothing.

    python bench/profile_inference.py [--rows 15] [--device cuda]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from diffdet.config import get_preset  # noqa: E402
from diffdet.inference import SamplerOptions, sample  # noqa: E402
from diffdet.model import build_model  # noqa: E402
from bench_inference import timed  # noqa: E402  (this folder is on sys.path when run as a script)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(get_preset("props_r50")).to(device).eval()
    image = [np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, dtype {args.dtype}")

    # Paired medians: 1 step and 4 steps alternate, so a drifting machine load shifts both alike.
    one, four = [], []
    for _ in range(args.repeats):
        one.append(timed(lambda: sample(model, image, SamplerOptions(steps=1, num_proposals=300, record=False,
                                                                              dtype=args.dtype)), 1))
        four.append(timed(lambda: sample(model, image, SamplerOptions(steps=4, num_proposals=300, record=False,
                                                                               dtype=args.dtype)), 1))
    t1, t4 = statistics.median(one), statistics.median(four)
    later = (t4 - t1) / 3
    print(f"300 proposals, batch 1: 1 step {t1:.3f} s, 4 steps {t4:.3f} s; each of steps 2-4 costs {later:.3f} s = "
          f"{later / t1:.0%} of step 1 (target <= 40%)")

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for steps in (1, 4):
        options = SamplerOptions(steps=steps, num_proposals=300, record=False, dtype=args.dtype)
        sample(model, image, options)
        with profile(activities=activities) as prof:
            sample(model, image, options)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n### {steps} step(s): self CPU time by op, {total / 1e3:.0f} ms in all")
        print("| op | calls | self ms | share |")
        print("|---|---|---|---|")
        for e in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[: args.rows]:
            print(f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e3:.1f} | {e.self_cpu_time_total / total:.1%} |")


if __name__ == "__main__":
    main()
