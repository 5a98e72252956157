"""Entry point of DiffusionDet Explorer, locally and on Hugging Face Spaces: ``python app.py``.

Honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT. DIFFDET_CHECKPOINT_DIR and DIFFDET_EXAMPLES_DIR point the app at
other folders (default: checkpoints/ and examples/ next to this file).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from app.handlers import Explorer
from app.ui import build_demo, launch

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
