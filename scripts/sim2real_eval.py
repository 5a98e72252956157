"""Score checkpoints on real photos and on held-out renders, the way issue "Real photos" asks: AP, AP50, AP75
(pycocotools), and what a user sees at score 0.3 (class-aware and any-class recall, precision, confusions,
boxes on no object), per class too, with class-wise and class-agnostic NMS.

    python scripts/sim2real_eval.py --checkpoint old=checkpoints/diffdet_tiny_props.safetensors \
        --checkpoint new=runs/sim2_ft/model.safetensors --data real-dev=../shared/real-dev \
        --data renders=data/sim2_a --steps 4 --json docs/sim2real.json

Each (checkpoint, data set, NMS) runs the project's one inference API (``diffdet.evaluate.detect_split``) with
seed 0; AP is ``coco_evaluate``, the operating point ``operating_point``. Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffdet.data import load_split  # noqa: E402
from diffdet.evaluate import coco_evaluate, detect_split, operating_point  # noqa: E402
from diffdet.inference import SamplerOptions  # noqa: E402
from diffdet.weights import load_checkpoint  # noqa: E402


def named(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def score(model, split, options: SamplerOptions, score_threshold: float, limit: int) -> dict:
    if limit:
        split.samples = split.samples[:limit]
    detections = detect_split(model, split, options, seed=0)
    ap = coco_evaluate(detections, split.samples, split.class_names)
    return {"ap": ap, "point": operating_point(detections, split.samples, score_threshold), "images": len(split)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=named, action="append", required=True, help="NAME=PATH, repeatable")
    parser.add_argument("--data", type=named, action="append", required=True,
                        help="NAME=PROPS folder (its val split), repeatable")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--nms", choices=("class", "agnostic", "both"), default="both")
    parser.add_argument("--limit", type=int, default=0, help="first N images of each set (0 = all)")
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args(argv)
    modes = {"class": [False], "agnostic": [True], "both": [False, True]}[args.nms]
    rows = []
    for ckpt_name, ckpt_path in args.checkpoint:
        model = load_checkpoint(ckpt_path)
        for data_name, data_path in args.data:
            for agnostic in modes:
                options = SamplerOptions.from_config(model.cfg, steps=args.steps, agnostic_nms=agnostic)
                split = load_split(data_path, "props", "val", model.cfg.class_names)
                result = score(model, split, options, args.score_threshold, args.limit)
                rows.append({"checkpoint": ckpt_name, "data": data_name, "agnostic_nms": agnostic,
                             "steps": args.steps, "class_names": list(model.cfg.class_names), **result})
                ap, pt = result["ap"], result["point"]
                print(f"{ckpt_name} on {data_name} ({'agnostic' if agnostic else 'class-wise'} NMS): "
                      f"AP {ap['AP']:.1f} AP50 {ap['AP50']:.1f} recall {pt['recall']} precision {pt['precision']}",
                      file=sys.stderr, flush=True)
    print(f"| checkpoint | data | NMS | AP | AP50 | AP75 | recall @{args.score_threshold} | recall, any class | "
          f"precision | confusions | on no object |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for r in rows:
        ap, pt = r["ap"], r["point"]
        print(f"| {r['checkpoint']} | {r['data']} ({r['images']} images) | "
              f"{'agnostic' if r['agnostic_nms'] else 'class-wise'} | {fmt(ap['AP'])} | {fmt(ap['AP50'])} | "
              f"{fmt(ap['AP75'])} | {fmt(pt['recall'])} | {fmt(pt['recall_any_class'])} | {fmt(pt['precision'])} | "
              f"{pt['confusions']} | {pt['background']} |")
    names = rows[0]["class_names"] if rows else []
    print("\n| class | " + " | ".join(f"{r['checkpoint']} {r['data']} {'agn' if r['agnostic_nms'] else 'cls'} AP / recall"
                                       for r in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for c, name in enumerate(names):
        cells = []
        for r in rows:
            ap = r["ap"]["per_class"].get(name)
            rec = r["point"]["per_class_recall"].get(c)
            cells.append(f"{fmt(ap)} / {fmt(rec)}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
