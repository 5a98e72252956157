"""Entry point of DiffusionDet Explorer, locally and on Hugging Face Spaces: ``python app.py [--host H] [--port P]``.

Honours GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (the flags win). DIFFDET_CHECKPOINT_DIR and DIFFDET_EXAMPLES_DIR
(or --checkpoint-dir / --examples-dir) point the app at other folders (default: checkpoints/ and examples/ next to
this file). ``python app.py --help`` lists the flags without loading the model.
"""
from __future__ import annotations

import os

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a CPU shared with other processes
# (a Spaces CPU box, a CI runner) spinning threads made a 4-step run 6.4 s instead of 0.36 s (measured, 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {port}")
    return port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python app.py", description="DiffusionDet Explorer: watch random boxes "
                                     "turn into detections (a Gradio app; open the printed URL in a browser).")
    parser.add_argument("--host", help="address to listen on (default: GRADIO_SERVER_NAME, else 127.0.0.1; "
                        "0.0.0.0 serves other machines)")
    parser.add_argument("--port", type=port_number, help="port (default: GRADIO_SERVER_PORT, else 7860 or the "
                        "next free one)")
    parser.add_argument("--checkpoint-dir", type=Path, help="folder of *.safetensors checkpoints (default: "
                        "DIFFDET_CHECKPOINT_DIR, else checkpoints/)")
    parser.add_argument("--examples-dir", type=Path, help="folder of example images (default: DIFFDET_EXAMPLES_DIR, "
                        "else examples/)")
    return parser.parse_args(argv)


# parsed before torch and gradio load, so that --help and a bad flag answer at once
ARGS = parse_args(None if __name__ == "__main__" else [])  # imported (Spaces, reload mode): every flag unset

from app.explorer import Explorer  # noqa: E402
from app.ui import build_demo, launch  # noqa: E402


def make_explorer() -> Explorer:
    return Explorer(
        checkpoint_dir=ARGS.checkpoint_dir or os.environ.get("DIFFDET_CHECKPOINT_DIR", ROOT / "checkpoints"),
        examples_dir=ARGS.examples_dir or os.environ.get("DIFFDET_EXAMPLES_DIR", ROOT / "examples"),
    )


explorer = make_explorer()
demo = build_demo(explorer)  # module-level, as Spaces and `gradio app.py` reload mode expect

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    explorer.preload()
    flags = {key: value for key, value in (("server_name", ARGS.host), ("server_port", ARGS.port)) if value}
    launch(demo, explorer, **flags)
