"""Entry point of DiffusionDet Explorer, locally and on Hugging Face Spaces: ``python app.py``.

Honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT. DIFFDET_CHECKPOINT_DIR and DIFFDET_EXAMPLES_DIR point the app at
other folders (default: checkpoints/ and examples/ next to this file).
"""
from __future__ import annotations

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a CPU shared with other processes
# (a Spaces CPU box, a CI runner) spinning threads made a 4-step run 6.4 s instead of 0.36 s (measured, 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from app.explorer import Explorer  # noqa: E402
from app.ui import build_demo, launch  # noqa: E402

ROOT = Path(__file__).resolve().parent


def make_explorer() -> Explorer:
    return Explorer(
        checkpoint_dir=os.environ.get("DIFFDET_CHECKPOINT_DIR", ROOT / "checkpoints"),
        examples_dir=os.environ.get("DIFFDET_EXAMPLES_DIR", ROOT / "examples"),
    )


explorer = make_explorer()
demo = build_demo(explorer)  # module-level, as Spaces and `gradio app.py` reload mode expect

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    explorer.preload()
    launch(demo, explorer)
