"""Training throughput of the train command on this machine: prints figures, asserts nothing.

Runs ``python -m diffdet train`` for a few iterations per preset on the shipped example scenes (640x480 renders,
kept at 640x480: one train size, no crops), from random weights (speed does not depend on them), and reports
images/s over the second half of the iterations (the first half warms up) and the process's peak resident memory.

    python bench/bench_train.py [--device cuda] [--amp]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# preset: (batch on a CPU, iterations on a CPU)
PRESETS = {"tiny": (4, 16), "props_r50": (2, 6)}


def example_dataset(folder: Path) -> Path:
    """The examples as a PROPS-format folder with the same scenes in train and val."""
    data = folder / "PROPS-Detection-Dataset"
    data.mkdir(parents=True)
    entries = json.loads((ROOT / "examples" / "props.json").read_text())
    for rel, _ in entries:
        shutil.copy(ROOT / "examples" / rel, data / rel)
    for split in ("train", "val"):
        (data / f"{split}.json").write_text(json.dumps(entries))
    return data


def run(preset: str, batch: int, iters: int, data: Path, out: Path, device: str, amp: bool) -> tuple[float, float]:
    """(images/s over the second half of the iterations, peak resident memory in GiB) of one training run."""
    half = max(1, iters // 2)
    command = [sys.executable, "-m", "diffdet", "train", "--config", preset, "--data", str(data), "--out", str(out),
               "--iters", str(2 * half), "--batch", str(batch), "--no-pretrained", "--workers", "0",
               "--log-every", str(half), "--eval-every", "0", "--checkpoint-every", str(10 * iters),
               "--min-size-train", "480", "--max-size-train", "640", "--crop-prob", "0", "--device", device]
    if amp:
        command.append("--amp")
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()  # drained before waiting: a full pipe would stall the run
    _, status, usage = os.wait4(process.pid, 0)  # the child's own resource usage (peak memory)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{preset}: train failed\n{stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    timed_rows = [r for r in rows if "img_s" in r]
    return timed_rows[-1]["img_s"], usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (CUDA only)")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--batch", type=int, default=None, help="one batch size for every preset")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = example_dataset(Path(tmp))
        print(f"train command, 640x480 renders, device {args.device}{' (amp)' if args.amp else ''}")
        print(f"{'preset':>10} {'batch':>5} {'img/s':>7} {'s/iter':>7} {'peak RSS GiB':>12}")
        for preset in args.presets:
            batch, iters = PRESETS[preset]
            batch = args.batch or batch
            img_s, peak = run(preset, batch, iters, data, Path(tmp) / preset, args.device, args.amp)
            print(f"{preset:>10} {batch:>5} {img_s:>7.2f} {batch / img_s:>7.2f} {peak:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
