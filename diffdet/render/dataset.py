"""Writing a rendered data set in the PROPS Detection format, and the ``python -m diffdet render`` command.

Output: ``OUT/train.json`` and ``OUT/val.json``, each a list of
``[image_path_relative_to_OUT, [{"name": class_name, "xyxy": [x1, y1, x2, y2], "visibility": v,
"visible_xyxy": [...], "amodal_xyxy": [...]}, ...]]``, boxes in pixels with ``0 <= x1 < x2 <= W``,
``0 <= y1 < y2 <= H``; ``xyxy`` is the amodal box by default (``--box visible`` for visible extents).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import cv2

from diffdet.config import ArgumentParser, float_range, int_range, nonnegative_int, positive_int, unit_float
from diffdet.render.assets import find_ycb_meshes
from diffdet.render.renderer import BOX_MODES, SceneRenderer
from diffdet.render.scene import POOL_SIZES, sample_scene, scene_rng
from diffdet.render.textures import TEXTURE_SIZE
CHECKPOINT_EVERY = 50  # images between rewrites of the split's json


def _write_json(path: Path, records: list[Any]) -> None:
    """Replace ``path`` atomically, so a reader never sees half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(records))
    tmp.replace(path)


def render_dataset(meshes: Mapping[str, str | Path], out_dir: str | Path, num_train: int, num_val: int,
                   seed: int = 0, split_scenes: bool = False, min_visibility: float = 0.1, width: int = 640,
                   height: int = 480, texture_size: int = TEXTURE_SIZE, progress: bool = True,
                   box: str = "amodal", distractors: bool = True) -> dict[str, Any]:
    """Render ``num_train`` + ``num_val`` scenes into ``out_dir`` in the PROPS Detection format.

    meshes: class name -> textured mesh path (e.g. from ``find_ycb_meshes``). Validation scenes come from their own
    random stream; with ``split_scenes`` they also use their own pools of table, floor and wall textures.
    ``box``: "amodal" (default, PROPS's convention) or "visible"; ``distractors``: add non-PROPS objects.
    Returns {"train": n, "val": n, "seconds": s, "images_per_s": r, "boxes": b}.
    """
    from tqdm import tqdm

    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ValueError(f"expected a positive number of images, got {num_train} train + {num_val} val")
    if not 0.0 <= min_visibility <= 1.0:
        raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility}")
    if box not in BOX_MODES:
        raise ValueError(f"box must be one of {BOX_MODES}, got {box!r}")
    if width < 32 or height < 32:
        raise ValueError(f"image size too small: {width}x{height}")
    out = Path(out_dir)
    start, n_boxes = time.perf_counter(), 0
    with SceneRenderer(meshes, width, height, seed=seed, texture_size=texture_size) as renderer:
        for split, count in (("train", num_train), ("val", num_val)):
            pool = "val" if split == "val" and split_scenes else "train"
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            records = []
            for i in tqdm(range(count), desc=f"render {split}", unit="img", disable=not progress):
                spec = sample_scene(scene_rng(seed, split, i), renderer.assets, width, height, POOL_SIZES[pool],
                                    renderer.distractors(pool) if distractors else None)
                image, objects = renderer.render(spec, pool=pool, min_visibility=min_visibility, box=box)
                rel = f"images/{split}/{i:06d}.jpg"
                cv2.imwrite(str(out / rel), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, spec.post["jpeg_quality"]])
                records.append([rel, objects])
                n_boxes += len(objects)
                if len(records) % CHECKPOINT_EVERY == 0:  # an interrupted run keeps a valid, shorter set
                    _write_json(out / f"{split}.json", records)
            _write_json(out / f"{split}.json", records)
    seconds = time.perf_counter() - start
    summary = {"train": num_train, "val": num_val, "seconds": round(seconds, 1), "boxes": n_boxes,
               "images_per_s": round((num_train + num_val) / seconds, 2)}
    (out / "render_config.json").write_text(json.dumps(
        {"seed": seed, "split_scenes": split_scenes, "min_visibility": min_visibility, "box": box,
         "distractors": distractors, "width": width,
         "height": height, "classes": list(meshes), **summary}, indent=1))
    return summary


def cli(argv: list[str]) -> int:
    """``python -m diffdet render --ycb DIR --out DIR --num N --seed S [--val-fraction F | --num-val M]
    [--split-scenes] [--min-visibility V] [--box amodal|visible] [--no-distractors] [--width W --height H]``."""
    parser = ArgumentParser(prog="python -m diffdet render", description="Render PROPS look-alike scenes from the YCB meshes.")
    parser.add_argument("--ycb", required=True, help="folder of YCB models: NNN_<class>/textured.obj (google_16k)")
    parser.add_argument("--out", required=True, help="output folder: train.json, val.json, images/")
    parser.add_argument("--num", type=positive_int, required=True, help="total number of images (train + val)")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--val-fraction", type=float_range(0.0, 0.99), default=0.15, help="share of --num rendered as val")
    parser.add_argument("--num-val", type=nonnegative_int, default=None, help="number of val images (overrides the fraction)")
    parser.add_argument("--split-scenes", action="store_true",
                        help="val also uses its own table/floor/wall textures (a harder, disjoint-look split)")
    parser.add_argument("--min-visibility", type=unit_float, default=0.1, help="drop objects less visible than this")
    parser.add_argument("--box", choices=BOX_MODES, default="amodal",
                        help="box convention: amodal (whole object, hidden parts included; PROPS) or visible")
    parser.add_argument("--no-distractors", action="store_true", help="no non-PROPS objects in the scenes")
    parser.add_argument("--width", type=int_range(32, 8192), default=640)
    parser.add_argument("--height", type=int_range(32, 8192), default=480)
    parser.add_argument("--texture-size", type=int_range(16, 8192), default=TEXTURE_SIZE, help="YCB textures are downscaled to it")
    args = parser.parse_args(argv)
    num_val = round(args.num * args.val_fraction) if args.num_val is None else args.num_val
    if not 0 <= num_val <= args.num:
        parser.error(f"--num-val must be in [0, --num={args.num}], got {num_val}")
    try:
        meshes = find_ycb_meshes(args.ycb)
        summary = render_dataset(meshes, args.out, args.num - num_val, num_val, seed=args.seed,
                                 split_scenes=args.split_scenes, min_visibility=args.min_visibility,
                                 box=args.box, distractors=not args.no_distractors,
                                 width=args.width, height=args.height, texture_size=args.texture_size)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {summary['train']} train + {summary['val']} val images ({summary['boxes']} boxes) to {args.out} "
          f"in {summary['seconds']} s ({summary['images_per_s']} images/s)")
    return 0
