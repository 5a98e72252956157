"""How a checkpoint trained on renders might fare on real photos: AP on held-out renders under photo-like shifts.

No real PROPS photo can be reached from here, so this measures the model's sensitivity to the differences a
camera brings that the renders may not cover: stronger JPEG, defocus blur, sensor noise, under-exposure, a warm
white balance, a soft (upscaled) image, and a closer camera (centre crop scaled back to 640x480, so objects
look 1.4x larger, as in PROPS frames shot nearer the table). Each shift is applied to the same images; boxes
follow the crop.

    python scripts/photo_shift.py --checkpoint checkpoints/diffdet_tiny_props.safetensors --data data/renders \
        --images 100 [--steps 1] [--out shift.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from diffdet.data import load_split, read_image_rgb  # noqa: E402
from diffdet.evaluate import coco_evaluate  # noqa: E402
from diffdet.inference import SamplerOptions, sample  # noqa: E402
from diffdet.weights import load_checkpoint  # noqa: E402

Shift = Callable[[np.ndarray, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _pixels(fn: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> Shift:
    return lambda image, boxes, rng: (fn(image, rng), boxes)


def jpeg(quality: int) -> Shift:
    def apply(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]
    return _pixels(apply)


def zoom(factor: float) -> Shift:
    """Centre crop of 1/factor of each side, scaled back to the full size; boxes cropped, tiny remnants dropped."""
    def apply(image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        h, w = image.shape[:2]
        ch, cw = round(h / factor), round(w / factor)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        crop = cv2.resize(image[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        moved = (boxes - [x0, y0, x0, y0]).clip(0, [cw, ch, cw, ch]) * [w / cw, h / ch, w / cw, h / ch]
        return crop, moved
    return apply


SHIFTS: dict[str, Shift | None] = {
    "none (renders as rendered)": None,
    "JPEG quality 30": jpeg(30),
    "defocus blur (gaussian sigma 2 px)": _pixels(lambda im, rng: cv2.GaussianBlur(im, (0, 0), 2.0)),
    "sensor noise (sigma 12 of 255)": _pixels(
        lambda im, rng: np.clip(im + rng.normal(0, 12, im.shape), 0, 255).astype(np.uint8)),
    "under-exposed (x0.55, gamma 1.3)": _pixels(
        lambda im, rng: np.clip(255 * (im / 255.0 * 0.55) ** 1.3, 0, 255).astype(np.uint8)),
    "warm white balance (R x1.15, B x0.8)": _pixels(
        lambda im, rng: np.clip(im * np.array([1.15, 1.0, 0.8]), 0, 255).astype(np.uint8)),
    "soft (half size, upscaled)": _pixels(
        lambda im, rng: cv2.resize(cv2.resize(im, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                                   (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR)),
    "closer camera (1.4x centre zoom)": zoom(1.4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/diffdet_tiny_props.safetensors")
    parser.add_argument("--data", default="data/renders")
    parser.add_argument("--images", type=int, default=100, help="first N validation images")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the results JSON here")
    args = parser.parse_args()
    model = load_checkpoint(args.checkpoint)
    split = load_split(args.data, "props", "val", model.cfg.class_names)
    samples = split.samples[: args.images]
    originals = [read_image_rgb(s.image_path).permute(1, 2, 0).numpy() for s in samples]  # (H, W, 3) RGB
    options = SamplerOptions.from_config(model.cfg, steps=args.steps, record=False)
    results = {}
    print(f"{'shift':<40} {'AP':>6} {'AP50':>6} {'APs':>6}")
    for name, shift in SHIFTS.items():
        rng = np.random.default_rng(0)
        detections, truth = [], []
        for s, image in zip(samples, originals):
            boxes = s.boxes_xyxy.astype(np.float64)
            if shift is not None:
                image, boxes = shift(image, boxes, rng)
            keep = ((boxes[:, 2] - boxes[:, 0]) >= 4) & ((boxes[:, 3] - boxes[:, 1]) >= 4)
            truth.append({"image_id": s.image_id, "boxes_xyxy": boxes[keep], "labels": s.labels[keep],
                          "size_hw": image.shape[:2]})
            det = sample(model, [np.ascontiguousarray(image)], options, seed=0)[0].detections
            detections.append({"image_id": s.image_id, "boxes_xyxy": det.boxes_xyxy, "scores": det.scores,
                               "labels": det.labels})
        results[name] = coco_evaluate(detections, truth, split.class_names)
        r = results[name]
        print(f"{name:<40} {r['AP']:>6.1f} {r['AP50']:>6.1f} {r['APs'] or 0:>6.1f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"checkpoint": args.checkpoint, "images": len(samples),
                                              "steps": args.steps, "results": results}, indent=1))


if __name__ == "__main__":
    main()
