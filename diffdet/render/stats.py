"""Box statistics of a PROPS-format data set beside those measured on real PROPS photographs, so that how well the
renders match real scenes is measured, not guessed: ``python -m diffdet render-stats --data DIR [--split train]``.

The real figures were measured on the real PROPS photos at 640x480 (they are held back; see docs/sim2real.md).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from diffdet.config import PROPS_CLASSES, ArgumentParser, int_range

# Measured on real PROPS photographs (640x480): sqrt(box area) percentiles, per-class median box w x h,
# box-centre 5th-95th percentiles, objects per image.
REAL_PROPS = {
    "sqrt_area_px": {"p10": 64.0, "p50": 103.0, "p90": 170.0},
    "centre_x_px": {"p5": 50.0, "p95": 545.0},
    "centre_y_px": {"p5": 75.0, "p95": 380.0},
    "median_wh_px": {"cracker_box": (199, 232), "sugar_box": (160, 118), "master_chef_can": (114, 162),
                     "mustard_bottle": (80, 182), "tomato_soup_can": (64, 111), "mug": (93, 105),
                     "potted_meat_can": (95, 102), "gelatin_box": (85, 74), "tuna_fish_can": (68, 82),
                     "large_marker": (82, 55)},
    "objects_per_image": "all ten in most images",
}


def box_statistics(records: Sequence[Sequence[Any]], width: int = 640, height: int = 480,
                   class_names: Sequence[str] = PROPS_CLASSES) -> dict[str, Any]:
    """Statistics of PROPS-format ``records`` (``[[path, [{"name", "xyxy"}, ...]], ...]``), boxes scaled to 640x480.

    Returns {"images", "boxes", "sqrt_area_px": {p10, p50, p90}, "centre_x_px": {p5, p95}, "centre_y_px": {p5,
    p95}, "median_wh_px": {class: (w, h)}, "objects_per_image": {p10, p50, "share_with_all": fraction of images
    with every class}}. Raises ``ValueError`` when there are no boxes.
    """
    sx, sy = 640.0 / width, 480.0 / height
    rows, per_image, full = [], [], 0
    for _, objects in records:
        names = set()
        for obj in objects:
            x1, y1, x2, y2 = obj["xyxy"]
            rows.append((obj["name"], (x2 - x1) * sx, (y2 - y1) * sy, (x1 + x2) / 2 * sx, (y1 + y2) / 2 * sy))
            names.add(obj["name"])
        per_image.append(len(objects))
        full += names >= set(class_names)
    if not rows:
        raise ValueError("no boxes in the data set")
    w = np.array([r[1] for r in rows])
    h = np.array([r[2] for r in rows])
    cx = np.array([r[3] for r in rows])
    cy = np.array([r[4] for r in rows])
    side = np.sqrt(w * h)
    pct = lambda a, qs: {f"p{q}": round(float(np.percentile(a, q)), 1) for q in qs}  # noqa: E731
    median_wh = {}
    for name in class_names:
        sel = [i for i, r in enumerate(rows) if r[0] == name]
        if sel:
            median_wh[name] = (round(float(np.median(w[sel]))), round(float(np.median(h[sel]))))
    return {"images": len(records), "boxes": len(rows), "sqrt_area_px": pct(side, (10, 50, 90)),
            "centre_x_px": pct(cx, (5, 95)), "centre_y_px": pct(cy, (5, 95)), "median_wh_px": median_wh,
            "objects_per_image": {**pct(np.array(per_image), (10, 50)),
                                  "share_with_all": round(full / max(len(records), 1), 3)}}


def format_comparison(stats: dict[str, Any], real: dict[str, Any] = REAL_PROPS) -> str:
    """A Markdown table: each statistic of ``stats`` beside the real PROPS figure."""
    def trio(d: dict[str, float], keys: Sequence[str]) -> str:
        return " / ".join(f"{d[k]:g}" for k in keys)

    lines = ["| statistic | real PROPS | this set |", "|---|---|---|",
             f"| sqrt(box area) px, p10 / p50 / p90 | {trio(real['sqrt_area_px'], ('p10', 'p50', 'p90'))} | "
             f"{trio(stats['sqrt_area_px'], ('p10', 'p50', 'p90'))} |",
             f"| box centre x px, p5 - p95 | {trio(real['centre_x_px'], ('p5', 'p95'))} | "
             f"{trio(stats['centre_x_px'], ('p5', 'p95'))} |",
             f"| box centre y px, p5 - p95 | {trio(real['centre_y_px'], ('p5', 'p95'))} | "
             f"{trio(stats['centre_y_px'], ('p5', 'p95'))} |",
             f"| objects per image, p10 / p50; share with all ten | {real['objects_per_image']} | "
             f"{trio(stats['objects_per_image'], ('p10', 'p50'))}; "
             f"{stats['objects_per_image']['share_with_all']:.0%} |"]
    for name, (rw, rh) in real["median_wh_px"].items():
        ours = stats["median_wh_px"].get(name)
        lines.append(f"| median w x h px, {name} | {rw} x {rh} | {f'{ours[0]} x {ours[1]}' if ours else '-'} |")
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    """``python -m diffdet render-stats --data DIR [--split train] [--json OUT]``."""
    parser = ArgumentParser(prog="python -m diffdet render-stats",
                                     description="Box statistics of a PROPS-format set beside real PROPS photos.")
    parser.add_argument("--data", required=True, help="PROPS-format folder (train.json / val.json)")
    parser.add_argument("--split", default="train", choices=("train", "val"))
    parser.add_argument("--width", type=int_range(1, 100000), default=640, help="image width the boxes refer to")
    parser.add_argument("--height", type=int_range(1, 100000), default=480, help="image height the boxes refer to")
    parser.add_argument("--json", default=None, help="also write the statistics to this JSON file")
    args = parser.parse_args(argv)
    path = Path(args.data) / f"{args.split}.json"
    try:
        records = json.loads(path.read_text())
        stats = box_statistics(records, args.width, args.height)
    except FileNotFoundError:
        parser.error(f"not found: {path}")
    except (ValueError, TypeError, KeyError) as exc:
        parser.error(f"{path}: {exc}")
    print(format_comparison(stats))
    if args.json:
        Path(args.json).write_text(json.dumps(stats, indent=1))
    return 0
