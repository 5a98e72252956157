"""The one inference API: batched DDIM sampling over boxes that records its whole trajectory.

The app, the CLI (``python -m diffdet predict``), evaluation and the benchmarks all call ``sample`` (or the
``Detector`` wrapper). Per image it returns a ``Trajectory``: every step's and stage's boxes, scores and labels,
which slots were renewed or drawn from the heatmap, the predicted heatmap and the final detections.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image, nms

from diffdet.boxes import cxcywh01_to_xyxy, image_whwh, xyxy_to_cxcywh01
from diffdet.config import DiffDetConfig
from diffdet.diffusion import (boxes_to_signal, cosine_alphas_cumprod, ddim_step, ddim_time_pairs, renew_boxes,
                               signal_to_boxes)
from diffdet.head import RoIPooler
from diffdet.heatmap import decode_peaks, peak_sigmas
from diffdet.images import image_to_tensor, read_image_rgb
from diffdet.model import DiffusionDet, resize_for_model
from diffdet.trajectory import Detections, Trajectory
from diffdet.weights import load_checkpoint

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "diffdet_tiny_props.safetensors"
HEATMAP_CENTRE_JITTER = 0.02  # std of the noise added to heatmap peak centres, in image fractions


@dataclass(frozen=True)
class SamplerOptions:
    """Settings of one sampling run; ``from_config`` takes the checkpoint's defaults."""

    steps: int = 1                   # DDIM steps S
    eta: float = 1.0                 # DDIM stochasticity (0 = deterministic)
    box_renewal: bool = True         # replace boxes scoring below renewal_threshold with fresh ones between steps
    renewal_threshold: float = 0.5
    ensemble: bool = True            # with S > 1, pool every step's candidates before NMS
    ensemble_last_step: bool = True  # pool the last step too; False reproduces the reference, which drops it by mistake
    nms: bool = True                 # NMS on the pooled candidates (class-wise unless agnostic_nms)
    agnostic_nms: bool = False       # one NMS over all classes: overlapping boxes of different classes compete
    nms_iou: float = 0.5
    score_threshold: float = 0.0     # drop final detections below this score
    num_proposals: int | None = None  # None: the config's value
    heatmap_init: float = 0.0        # up to this fraction of proposals start on heatmap peaks (HeatmapGuide)
    max_detections: int = 100
    record: bool = True              # keep every step's and stage's outputs in the trajectory
    dtype: str = "float32"           # network precision: float32, bfloat16 / float16 autocast, or auto (see autocast_dtype)

    @classmethod
    def from_config(cls, cfg: DiffDetConfig, **overrides: object) -> "SamplerOptions":
        base = cls(steps=cfg.sampling_steps, eta=cfg.eta, box_renewal=cfg.box_renewal,
                   renewal_threshold=cfg.renewal_threshold, ensemble=cfg.use_ensemble, nms_iou=cfg.nms_iou,
                   score_threshold=cfg.score_threshold, max_detections=cfg.max_detections)
        return replace(base, **overrides)

    def validate(self, cfg: DiffDetConfig) -> None:
        if not 1 <= self.steps <= cfg.timesteps:
            raise ValueError(f"steps must be in 1..{cfg.timesteps}, got {self.steps}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {self.eta}")
        if self.num_proposals is not None and not 1 <= self.num_proposals <= 5000:
            raise ValueError(f"num_proposals must be in 1..5000, got {self.num_proposals}")
        if not 0.0 <= self.heatmap_init <= 1.0:
            raise ValueError(f"heatmap_init must be in [0, 1], got {self.heatmap_init}")
        if self.heatmap_init > 0 and not cfg.use_heatmap:
            raise ValueError("heatmap_init > 0 needs a model with a heatmap head (this checkpoint has none)")
        for name in ("renewal_threshold", "nms_iou", "score_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


DTYPES = ("float32", "bfloat16", "float16", "auto")


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 natively: a CUDA GPU that supports it, or a CPU whose oneDNN build reports
    bfloat16 support (AVX-512 or AMX). On a CPU without it, bfloat16 is emulated and runs many times slower than
    float32 (measured on an AVX2-only CPU: a 512^3 GEMM 17x slower, a 3x3 convolution about 100x; bench/RESULTS.md)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a build without oneDNN
            return False
    return False


def autocast_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a ``SamplerOptions.dtype`` on ``device``; None means plain float32.

    ``auto`` is bfloat16 where the device runs it natively (``native_bfloat16``), float32 elsewhere. ``float16``
    needs CUDA (ValueError on other devices). ``bfloat16`` on a CPU without native support runs, with a warning,
    because it is slow there.
    """
    if dtype == "auto":
        dtype = "bfloat16" if native_bfloat16(device) else "float32"
    if dtype == "float32":
        return None
    if dtype == "float16" and device.type != "cuda":
        raise ValueError("dtype float16 needs a CUDA device; on a CPU use bfloat16 (or auto)")
    if dtype == "bfloat16" and not native_bfloat16(device):
        warnings.warn(f"bfloat16 on this {device.type} is emulated (no native support): expect it to run many times "
                      "slower than float32; dtype 'auto' picks float32 here", RuntimeWarning, stacklevel=3)
    return getattr(torch, dtype)


def _proposal_signal(num: int, num_from_heatmap: int, guide: "HeatmapGuide | None", scale: float,
                     generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Fresh proposals for one image in signal space: N(0, I), except that the first ``num_from_heatmap`` slots
    are boxes at heatmap peaks sized from their blobs (``HeatmapGuide.boxes``).
    Returns (signal (N, 4), from_heatmap (N,))."""
    signal = torch.randn(num, 4, generator=generator)  # (N, 4)
    from_heatmap = torch.zeros(num, dtype=torch.bool)
    count = guide.slots(num_from_heatmap) if guide is not None else 0
    if count:
        signal[:count] = boxes_to_signal(guide.boxes(count, generator), scale)
        from_heatmap[:count] = True
    return signal, from_heatmap


@dataclass
class HeatmapGuide:
    """Heatmap-guided proposals of one image: boxes centred on the heatmap's peaks, sized from their blobs.

    The paper says the heatmap lets the model "only denoise boxes in regions with large values"; this is how the
    sampler puts proposals there.
    - Peaks: ``decode_peaks``, then one peak per blob: a trained head predicts a broad, slightly bumpy plateau over
      each object, with several local maxima; a peak inside a stronger peak's blob (its one-sigma box overlaps the
      stronger one's by IoU > ``BLOB_IOU``, any class) is dropped (``torchvision.ops.nms``).
    - Sizes: a target blob has sigma = rho * min(w, h) / stride, so the theory reads a side as
      ``sigma * stride / rho``. The predicted blobs are not round: they stretch with the object, so sigma is read
      per axis (``peak_sigmas``) and gives the box's width and height, times ``SIZE_SCALE`` = 1.2, which is where
      the shipped model's blobs put the boxes (median true side / (sigma * stride) = 2.4-2.5 on its training
      renders, against 1 / rho = 2).
    - Slots: slot k goes to peak ``k % P`` (peaks best first), for at most ``MAX_PER_PEAK`` slots per peak
      (``slots``); the other slots stay noise and cover what the heatmap missed. One box per peak measured best on
      the shipped model's validation renders (30 images, 1 step, AP at 50 / 300 proposals: 66.3 / 71.5 with one
      per peak, 62.6 / 70.5 with two, 61.6 / 71.0 with three (the extra boxes at 1.0 and 1.5 times the size),
      61.6 / 65.7 with every slot from peaks; random 62.5 / 71.5). Centres and sizes get a little noise
      (``CENTRE_JITTER`` of the image, ``SIZE_JITTER`` log-normal) so renewed slots differ.

    Attributes:
        centres_xy (Tensor[P, 2]): peak centres, pixels of the model input; sizes_wh (Tensor[P, 2]) box
        sizes read from the blobs (before ``SIZE_SCALE``), in those pixels; image_wh (Tensor[2]) the model input's (w, h).
    """

    centres_xy: Tensor
    sizes_wh: Tensor
    image_wh: Tensor
    SIZE_SCALE = 1.2
    BLOB_IOU = 0.3
    MAX_PER_PEAK = 1
    CENTRE_JITTER = HEATMAP_CENTRE_JITTER
    SIZE_JITTER = 0.1

    @classmethod
    def from_heatmap(cls, heatmap: Tensor, stride: float, rho: float, image_wh: Tensor, max_peaks: int = 100,
                     min_score: float = 0.1) -> "HeatmapGuide":
        """Peaks of a (K, H, W) probability heatmap, one per blob, and their box sizes (see the class)."""
        peaks = decode_peaks(heatmap, stride, max_peaks=max_peaks, min_score=min_score)
        sigma_px = peak_sigmas(heatmap, peaks) * stride  # (P, 2)
        blobs = torch.cat([peaks["centres_xy"] - sigma_px, peaks["centres_xy"] + sigma_px], dim=-1)
        keep = nms(blobs.float(), peaks["scores"].float(), cls.BLOB_IOU)  # best first
        sizes = sigma_px[keep] / max(rho, 1e-3)
        return cls(peaks["centres_xy"][keep].cpu().float(), sizes.cpu().float(), image_wh.cpu().float())

    def __len__(self) -> int:
        return int(self.centres_xy.shape[0])

    def slots(self, requested: int) -> int:
        """How many of ``requested`` heatmap slots this image fills: at most ``MAX_PER_PEAK`` per peak; the rest
        stay noise, which covers what the heatmap missed."""
        return min(requested, self.MAX_PER_PEAK * len(self))

    def boxes(self, count: int, generator: torch.Generator) -> Tensor:
        """``count`` proposals as normalised cxcywh (Tensor[count, 4], in [0, 1])."""
        peak = torch.arange(count) % len(self)
        centres = self.centres_xy[peak] / self.image_wh + torch.randn(count, 2, generator=generator) * self.CENTRE_JITTER
        sizes = self.sizes_wh[peak] * self.SIZE_SCALE / self.image_wh
        sizes = sizes * torch.exp(torch.randn(count, 2, generator=generator) * self.SIZE_JITTER)
        return torch.cat([centres.clamp(0, 1), sizes.clamp(1e-3, 1)], dim=-1)


def _step_candidates(logits: Tensor, boxes_xyxy: Tensor, top: int) -> tuple[Tensor, Tensor, Tensor]:
    """One step's candidates for one image: the ``top`` best (box, class) pairs of (N, K) sigmoid scores."""
    scores = logits.sigmoid().flatten()  # (N*K,)
    num_classes = logits.shape[-1]
    best, index = scores.topk(min(top, scores.numel()))
    return boxes_xyxy[index // num_classes], best, index % num_classes


@torch.inference_mode()
def sample(model: DiffusionDet, images: list[np.ndarray | Tensor], options: SamplerOptions | None = None,
           seed: int | list[int] = 0, amp: bool = False) -> list[Trajectory]:
    """Detect objects in a batch of images by DDIM sampling over boxes.

    Args:
        model: a DiffusionDet in eval mode (on any device).
        images: B images, each (H, W, 3) uint8 RGB array or (3, H, W) tensor in 0-255; sizes may differ.
        options: sampler settings (defaults from the model's config).
        seed: one seed for every image, or one per image. Each image draws its noise from its own CPU generator,
            so an image's result does not depend on the rest of the batch (exactly so for same-size images; mixed
            sizes share one padded batch, which moves border features slightly) nor on the device.
        amp: autocast the network on CUDA in bfloat16 (the same as ``options.dtype = "bfloat16"`` there; kept for
            older callers). Otherwise ``options.dtype`` sets the precision (``autocast_dtype``).
    Returns:
        One Trajectory per image, boxes in that image's own pixels.
    """
    cfg = model.cfg
    options = options or SamplerOptions.from_config(cfg)
    options.validate(cfg)
    if not images:
        raise ValueError("images must be a non-empty list")
    seeds = [seed] * len(images) if isinstance(seed, int) else list(seed)
    if len(seeds) != len(images):
        raise ValueError(f"got {len(seeds)} seeds for {len(images)} images")
    device = model.device
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    num = options.num_proposals or cfg.num_proposals
    num_from_heatmap = round(options.heatmap_init * num)
    scale = cfg.snr_scale
    dtype = "bfloat16" if amp and device.type == "cuda" else options.dtype
    cast = autocast_dtype(dtype, device)
    autocast = torch.autocast(device.type, dtype=cast) if cast is not None else nullcontext()

    # 1. Resize each image for the model and remember the factors back to its own pixels.
    tensors = [image_to_tensor(im) for im in images]
    orig_hw = [tuple(int(v) for v in t.shape[-2:]) for t in tensors]
    resized, factors = zip(*(resize_for_model(t, cfg.min_size_test, cfg.max_size_test) for t in tensors))
    batch, sizes_hw = model.preprocess(list(resized))
    whwh = image_whwh(sizes_hw)  # (B, 4)
    back = torch.tensor([[fx, fy, fx, fy] for fx, fy in factors], device=device)  # (B, 4) model input / original
    # Final boxes are multiplied by original / model-input size, as detectron2's detector_postprocess does.
    to_orig = torch.tensor([[ow / r.shape[-1], oh / r.shape[-2]] * 2 for (oh, ow), r in zip(orig_hw, resized)],
                           device=device)  # (B, 4)

    # 2. Features once; the heatmap (and its peaks when proposals are drawn from it).
    with autocast:
        # Channels-last activations: oneDNN's convolutions run about 20% faster this way on a CPU (bench/).
        # On a CPU the backbone runs image by image (same speed, a fraction of the peak memory at batch 8).
        features = model.features(batch.contiguous(memory_format=torch.channels_last),
                                   chunk=1 if device.type == "cpu" else None)
        heat_logits = model.heatmap_logits(features)
        pool = model.head.pooler(features)  # the RoI table, laid out once per image batch, not once per step
        if isinstance(pool, RoIPooler):  # keep one copy of the maps: the table's views replace the features
            features = pool.feature_views()
    heat = heat_logits.float().sigmoid() if heat_logits is not None else None  # (B, K, Hh, Wh)
    stride = model.heatmap_stride
    images_wh = sizes_hw.flip(1).cpu().float()  # (B, 2) model-input sizes as (w, h)
    guides: list[HeatmapGuide | None] = [None] * len(images)
    if heat is not None and num_from_heatmap:
        guides = [HeatmapGuide.from_heatmap(heat[i], stride, cfg.rho, images_wh[i]) for i in range(len(images))]

    # 3. Initial proposals x_T.
    drawn = [_proposal_signal(num, num_from_heatmap, guides[i], scale, g) for i, g in enumerate(generators)]
    # The signal is kept in float64 between steps, as in the reference (its DDIM update promotes to the float64
    # schedule); the network sees float32 boxes.
    x = torch.stack([d[0] for d in drawn]).to(device, torch.float64)  # (B, N, 4)
    from_heatmap = torch.stack([d[1] for d in drawn])  # (B, N), updated as slots are renewed

    # 4. The DDIM loop: predict x0, record, collect candidates, step, renew.
    # The float64 schedule on the CPU: the DDIM coefficients are read from it as Python floats (no device sync),
    # whatever dtype or device the model's own buffer was moved to.
    alphas_cumprod = cosine_alphas_cumprod(cfg.timesteps, cfg.cosine_s)
    pairs = ddim_time_pairs(cfg.timesteps, options.steps)
    pooled = options.ensemble and len(pairs) > 1
    rec: dict[str, list[Tensor]] = {k: [] for k in ("boxes_in", "boxes", "logits", "renewed", "from_heatmap")}
    candidates: list[list[tuple[Tensor, Tensor, Tensor, int]]] = [[] for _ in images]
    for step, (t, t_next) in enumerate(pairs):
        boxes_in = cxcywh01_to_xyxy(signal_to_boxes(x, scale), whwh[:, None]).float()  # (B, N, 4)
        time_batch = torch.full((len(images),), t, device=device, dtype=torch.int64)
        with autocast:
            out = model(features, boxes_in, time_batch, pool=pool)
        logits = out["pred_logits"].float()  # (L, B, N, K)
        boxes = out["pred_boxes"].float()  # (L, B, N, 4)
        pred_x0 = boxes_to_signal(xyxy_to_cxcywh01(boxes[-1], whwh[:, None]), scale).clamp(-scale, scale)
        best_score = logits[-1].sigmoid().amax(dim=-1)  # (B, N)
        last = step == len(pairs) - 1
        # With the ensemble every step is a candidate source (the last one only if ensemble_last_step);
        # without it, only the last step.
        collect = (options.ensemble_last_step or not last) if pooled else last
        if collect:
            for i in range(len(images)):
                b, s, c = _step_candidates(logits[-1, i], boxes[-1, i], num)
                candidates[i].append((b, s, c, step))
        renewed = torch.zeros_like(best_score, dtype=torch.bool)
        if t_next >= 0:
            noise = torch.stack([torch.randn(num, 4, generator=g) for g in generators]).to(device)
            x = ddim_step(x, pred_x0, t, t_next, alphas_cumprod, options.eta, noise)
            if options.box_renewal:
                keep = best_score > options.renewal_threshold  # (B, N)
                fresh = [_proposal_signal(num, num_from_heatmap, guides[i], scale, g) for i, g in enumerate(generators)]
                x = renew_boxes(x, keep, torch.stack([f[0] for f in fresh]).to(device, x.dtype))
                renewed = ~keep
                fresh_from_heatmap = torch.stack([f[1] for f in fresh])  # (B, N)
        if options.record:
            rec["boxes_in"].append(boxes_in)
            rec["boxes"].append(boxes)
            rec["logits"].append(logits)
            rec["renewed"].append(renewed)
            rec["from_heatmap"].append(from_heatmap.to(device))
        if options.box_renewal and t_next >= 0:
            from_heatmap = torch.where(renewed.cpu(), fresh_from_heatmap, from_heatmap)

    # 5. Per image: pool, NMS, threshold, back to the image's own pixels.
    return [
        _finish_image(i, cfg, options, candidates[i], rec, heat, stride, orig_hw[i], back[i], to_orig[i], sizes_hw[i],
                      pairs, num, num_from_heatmap, guides[i], seeds[i])
        for i in range(len(images))
    ]


def postprocess_detections(boxes_xyxy: Tensor, scores: Tensor, labels: Tensor, to_orig: Tensor,
                           orig_hw: tuple[int, int], options: SamplerOptions) -> tuple[Tensor, Tensor]:
    """The final detections among pooled candidates, best first, in the reference's order of operations.

    1. NMS at ``options.nms_iou`` on the UNCLIPPED boxes, class-wise (``batched_nms``) or, with ``agnostic_nms``,
       over all classes; without NMS, all candidates by decreasing score.
    2. Rescale to the original image (multiply by ``to_orig``), clip to it and drop empty boxes (width or height 0),
       as detectron2's ``detector_postprocess``. Clipping first would make boxes that hang over the border overlap
       more (or less) and change what NMS suppresses.
    3. Drop scores below ``options.score_threshold``; keep at most ``options.max_detections``.

    Args:
        boxes_xyxy (Tensor[C, 4]): candidates in model-input pixels; scores (Tensor[C]); labels (Tensor[C]) int.
        to_orig (Tensor[4]): (w, h, w, h) factors from model-input to original pixels.
        orig_hw: the original image's (height, width).
    Returns:
        keep (Tensor[M]) int64 indices into the candidates, best first; boxes_xyxy (Tensor[M, 4]) of those
        candidates in original-image pixels, 0 <= x1 < x2 <= W, 0 <= y1 < y2 <= H.
    """
    if not options.nms:
        keep = scores.argsort(descending=True)
    elif options.agnostic_nms:
        keep = nms(boxes_xyxy, scores, options.nms_iou)
    else:
        keep = batched_nms(boxes_xyxy, scores, labels, options.nms_iou)
    boxes = clip_boxes_to_image(boxes_xyxy[keep] * to_orig, orig_hw)  # (M, 4)
    final = ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & (scores[keep] >= options.score_threshold))
    final = final.nonzero().squeeze(1)[: options.max_detections]
    return keep[final], boxes[final]


def _finish_image(i: int, cfg: DiffDetConfig, options: SamplerOptions, candidates: list, rec: dict[str, list[Tensor]],
                  heat: Tensor | None, stride: int, orig_hw: tuple[int, int], back: Tensor, to_orig: Tensor,
                  size_hw: Tensor, pairs: list[tuple[int, int]], num: int, num_from_heatmap: int,
                  guide: HeatmapGuide | None, seed: int) -> Trajectory:
    boxes = torch.cat([c[0] for c in candidates])  # (C, 4) model-input pixels, unclipped
    scores = torch.cat([c[1] for c in candidates])
    labels = torch.cat([c[2] for c in candidates])
    steps = torch.cat([torch.full_like(c[1], c[3], dtype=torch.int64) for c in candidates])
    keep, final_boxes = postprocess_detections(boxes, scores, labels, to_orig, orig_hw, options)
    detections = Detections(final_boxes.cpu().numpy(), scores[keep].cpu().numpy(), labels[keep].cpu().numpy(),
                            steps[keep].cpu().numpy())

    heatmap, heat_stride = None, 0.0
    if heat is not None:
        h, w = (int(v) for v in size_hw)
        heatmap = heat[i, :, : -(-h // stride), : -(-w // stride)].cpu().numpy()
        heat_stride = float(stride / back[:2].mean())
    settings = asdict(options)
    settings.update(seed=int(seed), num_proposals=num,
                    num_from_heatmap=guide.slots(num_from_heatmap) if guide is not None else 0,
                    heatmap_peaks=0 if guide is None else len(guide))
    traj = Trajectory(image_size_hw=orig_hw, class_names=cfg.class_names, times=pairs, detections=detections,
                      heatmap=heatmap, heatmap_stride=heat_stride, settings=settings)
    if options.record:
        scale_back = back.view(1, 1, 1, 4)
        stage_boxes = torch.stack([b[:, i] for b in rec["boxes"]]) / scale_back  # (S, L, N, 4)
        probs = torch.stack([lg[:, i] for lg in rec["logits"]]).sigmoid()  # (S, L, N, K)
        stage_scores, stage_labels = probs.max(dim=-1)
        traj.boxes_xyxy = stage_boxes.cpu().numpy()
        traj.scores = stage_scores.cpu().numpy()
        traj.labels = stage_labels.cpu().numpy()
        traj.boxes_in_xyxy = (torch.stack([b[i] for b in rec["boxes_in"]]) / back).cpu().numpy()  # (S, N, 4)
        traj.renewed = torch.stack([r[i] for r in rec["renewed"]]).cpu().numpy()
        traj.from_heatmap = torch.stack([f[i] for f in rec["from_heatmap"]]).cpu().numpy()
    return traj


class Detector:
    """A model on a device with ``predict``; ``Detector.from_checkpoint(path)`` is the usual way in."""

    def __init__(self, model: DiffusionDet, device: str | torch.device | None = None, amp: bool = False,
                 dtype: str | None = None) -> None:
        """``dtype`` (one of ``DTYPES``), when given, replaces the ``dtype`` of every options passed to ``predict``;
        ``amp`` is bfloat16 autocast on CUDA (older spelling)."""
        device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.model = model.to(device).eval()
        self.device = device
        self.amp = amp
        self.dtype = dtype

    @classmethod
    def from_checkpoint(cls, path: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device | None = None,
                        amp: bool = False, dtype: str | None = None) -> "Detector":
        return cls(load_checkpoint(path), device=device, amp=amp, dtype=dtype)

    @property
    def config(self) -> DiffDetConfig:
        return self.model.cfg

    def predict(self, images: list[np.ndarray | Tensor], options: SamplerOptions | None = None,
                seed: int | list[int] = 0) -> list[Trajectory]:
        if self.dtype is not None:
            options = replace(options or SamplerOptions.from_config(self.config), dtype=self.dtype)
        return sample(self.model, images, options, seed=seed, amp=self.amp)


def coco_results(traj: Trajectory, image_id: int, category_ids: Sequence[int | None] | None = None) -> list[dict]:
    """COCO results entries for one image: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

    ``category_ids[label]`` is the id of the model's class ``label`` in the user's ground truth (see
    ``coco_category_ids``); detections of a class the ground truth lacks (None) are left out. Without it the ids
    are the documented default, 1-based: ``category_id = label + 1``, i.e. the position in the model's class list
    plus one, as in the ``categories`` list written beside the results.
    """
    det = traj.detections
    out = []
    for (x1, y1, x2, y2), s, c in zip(det.boxes_xyxy, det.scores, det.labels):
        category_id = int(c) + 1 if category_ids is None else category_ids[int(c)]
        if category_id is None:
            continue
        out.append({"image_id": image_id, "category_id": int(category_id),
                    "bbox": [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2),
                             round(float(y2 - y1), 2)], "score": round(float(s), 5)})
    return out


def default_categories(class_names: Sequence[str]) -> list[dict]:
    """The ``categories`` list matching ``coco_results``' default ids: ``[{"id": k + 1, "name": class_names[k]}]``."""
    return [{"id": k + 1, "name": name} for k, name in enumerate(class_names)]


class CocoGroundTruthIds:
    """Image and category ids of a user's COCO ground-truth file, so that results score against it as they are.

    ``category_ids[label]``: the file's id of the category named like the model's class ``label`` (None when the
    file has no such category); ``image_id(path)`` the id of the image entry with the same file name.
    """

    def __init__(self, path: str | Path, class_names: Sequence[str]) -> None:
        try:
            data = json.loads(Path(path).read_text())
            categories = {str(c["name"]): int(c["id"]) for c in data["categories"]}
            images = [(str(im["file_name"]), int(im["id"])) for im in data["images"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--coco-gt {path}: not a COCO annotation file with images and categories ({exc})") \
                from None
        shared = [name for name in class_names if name in categories]
        if not shared:
            raise ValueError(f"--coco-gt {path}: no category is named like a model class. File categories: "
                             f"{sorted(categories)}; model classes: {list(class_names)}")
        self.path = Path(path)
        self.missing = [name for name in class_names if name not in categories]
        self.category_ids: list[int | None] = [categories.get(name) for name in class_names]
        self.categories = [{"id": i, "name": n} for n, i in sorted(categories.items(), key=lambda item: item[1])]
        self._by_path = {os.path.normpath(name): image_id for name, image_id in images}
        self._by_name: dict[str, list[int]] = {}
        for name, image_id in images:
            self._by_name.setdefault(Path(name).name, []).append(image_id)

    def image_id(self, image_path: str | Path) -> int:
        """The file's id of this image: its ``file_name`` equal to the path as given, or to its base name when
        that is unique in the file. ValueError naming the image otherwise."""
        exact = self._by_path.get(os.path.normpath(str(image_path)))
        if exact is not None:
            return exact
        ids = self._by_name.get(Path(image_path).name, [])
        if len(ids) == 1:
            return ids[0]
        reason = "several entries share its file name" if ids else "no image entry has its file name"
        raise ValueError(f"{image_path}: cannot find its image id in --coco-gt {self.path} ({reason})")


def add_sampler_flags(parser: argparse.ArgumentParser) -> None:
    """The NMS and ensemble flags shared by ``predict`` and ``eval`` (None = the SamplerOptions default)."""
    parser.add_argument("--agnostic-nms", action="store_true",
                        help="one NMS over all classes (overlapping boxes of different classes compete)")
    parser.add_argument("--ensemble-last-step", action=argparse.BooleanOptionalAction, default=None,
                        help="pool the last DDIM step into the ensemble (default); --no-ensemble-last-step "
                             "reproduces the reference DiffusionDet, which drops it")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="network precision: float32 (default), bfloat16 or float16 (CUDA) autocast, or auto "
                             "(bfloat16 where the device runs it natively, else float32)")


def sampler_flag_overrides(args: argparse.Namespace) -> dict[str, object]:
    """SamplerOptions overrides from the flags of ``add_sampler_flags``."""
    overrides: dict[str, object] = {"agnostic_nms": bool(args.agnostic_nms), "dtype": args.dtype}
    if args.ensemble_last_step is not None:
        overrides["ensemble_last_step"] = bool(args.ensemble_last_step)
    return overrides


def cli(argv: list[str]) -> int:
    from tqdm import tqdm

    from diffdet.config import ArgumentParser, int_range, nonnegative_int, positive_int, unit_float

    parser = ArgumentParser(
        prog="python -m diffdet predict", description="Run the detector on images.",
        epilog="Exit status: 0 when every image was processed, 1 when some images could not be read (each is named "
               "on stderr and skipped; the others are written), 2 for bad arguments or an unusable checkpoint.")
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="a .safetensors checkpoint")
    parser.add_argument("--images", nargs="+", required=True, help="image files")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--steps", type=int_range(1, 1000), default=None, help="DDIM steps (default: the checkpoint's)")
    parser.add_argument("--proposals", type=int_range(1, 5000), default=None, help="number of proposals")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--eta", type=unit_float, default=None)
    parser.add_argument("--heatmap-init", type=unit_float, default=0.0,
                        help="fraction of proposals drawn from heatmap peaks")
    parser.add_argument("--score-threshold", type=unit_float, default=0.3,
                        help="threshold of the printed table and JSON")
    parser.add_argument("--batch-size", type=positive_int, default=1)
    parser.add_argument("--trajectory", choices=("npz", "json", "none"), default="npz")
    parser.add_argument("--coco-gt", default=None, metavar="FILE",
                        help="a COCO ground-truth file: results then carry its image and category ids (matched by "
                             "file name and class name), so they score against it directly")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first unreadable image (exit 1)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA (the same as --dtype bfloat16 there)")
    add_sampler_flags(parser)
    args = parser.parse_args(argv)
    try:
        detector = Detector.from_checkpoint(args.checkpoint, device=args.device, amp=args.amp)
        overrides = {"num_proposals": args.proposals, "heatmap_init": args.heatmap_init,
                     "score_threshold": args.score_threshold, "record": args.trajectory != "none",
                     **sampler_flag_overrides(args)}
        if args.steps is not None:
            overrides["steps"] = args.steps
        if args.eta is not None:
            overrides["eta"] = args.eta
        options = SamplerOptions.from_config(detector.config, **overrides)
        options.validate(detector.config)
        names = detector.config.class_names
        gt_ids = CocoGroundTruthIds(args.coco_gt, names) if args.coco_gt else None
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    if gt_ids is not None and gt_ids.missing:
        print(f"note: --coco-gt has no category for model class(es) {gt_ids.missing}; their detections are left "
              "out of detections.json", file=sys.stderr)
    out = Path(args.out)
    (out / "trajectories").mkdir(parents=True, exist_ok=True)
    results, images_info, rows, failed = [], [], [], []
    start = time.perf_counter()
    paths = [Path(p) for p in args.images]
    pending: list[tuple[int, Path, np.ndarray]] = []

    def run_pending() -> None:
        trajectories = detector.predict([a for _, _, a in pending], options, seed=args.seed)
        for (position, path, _), traj in zip(pending, trajectories):
            image_id = gt_ids.image_id(path) if gt_ids is not None else position
            images_info.append({"id": image_id, "file_name": str(path), "height": traj.image_size_hw[0],
                                "width": traj.image_size_hw[1]})
            results.extend(coco_results(traj, image_id, gt_ids.category_ids if gt_ids is not None else None))
            if args.trajectory == "npz":
                traj.save_npz(out / "trajectories" / f"{position:05d}_{path.stem}.npz")
            elif args.trajectory == "json":
                traj.to_json(out / "trajectories" / f"{position:05d}_{path.stem}.json")
            top = ", ".join(f"{names[c]} {s:.2f}" for c, s in zip(traj.detections.labels[:4],
                                                                    traj.detections.scores[:4]))
            rows.append((path.name, len(traj.detections), top))
        pending.clear()

    try:
        for position, path in enumerate(tqdm(paths, desc="images", unit="image")):
            try:
                if gt_ids is not None:
                    gt_ids.image_id(path)  # an image the ground truth does not list is refused before the work
                pending.append((position, path, read_image_rgb(path)))
            except ValueError as exc:
                failed.append({"file_name": str(path), "error": str(exc)})
                # tqdm.write keeps the message on its own line, clear of the progress bar.
                tqdm.write(f"skipped {exc}" if str(exc).startswith(str(path)) else f"skipped {path}: {exc}",
                           file=sys.stderr)
                if args.fail_fast:
                    break
                continue
            if len(pending) == args.batch_size:
                run_pending()
        if pending:
            run_pending()
    except ValueError as exc:  # the model itself failed (e.g. non-finite weights): not one image's fault
        parser.exit(2, f"error: {exc}\n")
    elapsed = time.perf_counter() - start
    categories = gt_ids.categories if gt_ids is not None else default_categories(names)
    (out / "detections.json").write_text(json.dumps(results))
    (out / "images.json").write_text(json.dumps({"images": images_info, "categories": categories,
                                                 "failed": failed}))
    if rows:
        width = max(len(r[0]) for r in rows)
        print(f"{'image':<{width}}  dets  top detections")
        for name, count, top in rows:
            print(f"{name:<{width}}  {count:>4}  {top}")
    print(f"{len(rows)} image(s) in {elapsed:.2f} s; wrote {out / 'detections.json'} and {out / 'trajectories'}")
    if failed:
        print(f"{len(failed)} of {len(paths)} image(s) could not be read; see the messages above "
              f"(also listed under 'failed' in {out / 'images.json'})", file=sys.stderr)
        return 1
    return 0
