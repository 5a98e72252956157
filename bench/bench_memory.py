"""Peak resident memory of inference: props_r50 (random weights) at 640x480, 300 proposals, 1 step, batch 1 and
batch 8, each in a fresh process, by phase (model built, first call, second call). Prints figures, asserts nothing.
Linux only: reads VmHWM from /proc/self/status and resets it through /proc/self/clear_refs.

    python bench/bench_memory.py
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def child(batch: int) -> None:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    from diffdet.config import get_preset
    from diffdet.inference import SamplerOptions, sample
    from diffdet.model import build_model

    torch.manual_seed(0)
    model = build_model(get_preset("props_r50")).eval()
    built = status_mib("VmRSS")
    images = [np.random.default_rng(i).integers(0, 256, (480, 640, 3), dtype=np.uint8) for i in range(batch)]
    options = SamplerOptions(steps=1, num_proposals=300)
    peaks = []
    for _ in range(2):
        reset_peak()
        sample(model, images, options)
        peaks.append(status_mib("VmHWM"))
    gb = max(peaks) * 2 ** 20 / 1e9
    print(f"batch {batch}: model built {built / 1024:.2f} GiB; peak RSS first call {peaks[0] / 1024:.2f} GiB, second "
          f"call {peaks[1] / 1024:.2f} GiB (+{(max(peaks) - built) / 1024:.2f} GiB over the built model) = {gb:.2f} GB; "
          f"target {'1.6' if batch == 1 else '2.0'} GB")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
        return
    for batch in (1, 8):
        subprocess.run([sys.executable, __file__, "--child", str(batch)], check=True)


if __name__ == "__main__":
    main()
