"""Centre-heatmap targets (the PROPS paper's auxiliary head) and peak decoding.

``synthesize_heatmap`` is the one implementation of the target: training calls it per image and the app's
radius / rho sliders call it live. Coordinates: a heatmap cell (i, j) covers image pixels
[j * stride, (j + 1) * stride) x [i * stride, (i + 1) * stride), so the cell centre sits at pixel
((j + 0.5) * stride, (i + 0.5) * stride). Radii are in cells, as in the paper.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_radius(boxes_xyxy: Tensor, stride: float, min_radius: float, rho: float) -> Tensor:
    """r = max(min_radius, min(w, h) * rho), with w, h the box size in heatmap cells.

    Args:
        boxes_xyxy (Tensor[G, 4]): pixels. Returns Tensor[G] in cells.
    """
    wh = (boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]) / stride  # (G, 2)
    return torch.clamp(wh.min(dim=1).values * rho, min=min_radius)


def synthesize_heatmap(
    boxes_xyxy: Tensor,
    labels: Tensor,
    num_classes: int,
    grid_hw: tuple[int, int],
    stride: float,
    min_radius: float = 4.0,
    rho: float = 0.5,
) -> Tensor:
    """Per-class gaussian centre maps for one image.

    For each box, G(x, y) = exp(-((x - xc)^2 + (y - yc)^2) / (2 r^2)) on the grid, r from ``gaussian_radius``;
    each object's map is divided by its own maximum (so it peaks at exactly 1.0 in the cell nearest its centre);
    boxes of one class merge by element-wise max.

    Args:
        boxes_xyxy (Tensor[G, 4]): boxes in pixels of the image the grid covers.
        labels (Tensor[G]): class ids in [0, num_classes).
        grid_hw: (H, W) of the heatmap grid; stride: pixels per cell.
    Returns:
        Tensor[K, H, W] float32 in [0, 1].
    """
    if boxes_xyxy.ndim != 2 or boxes_xyxy.shape[-1] != 4:
        raise ValueError(f"boxes_xyxy must have shape (G, 4), got {tuple(boxes_xyxy.shape)}")
    if labels.shape != boxes_xyxy.shape[:1]:
        raise ValueError(f"labels must have shape ({boxes_xyxy.shape[0]},), got {tuple(labels.shape)}")
    if min_radius <= 0 or rho < 0:
        raise ValueError(f"min_radius must be > 0 and rho >= 0, got {min_radius}, {rho}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got {labels.tolist()}")
    height, width = grid_hw
    device = boxes_xyxy.device
    heatmap = torch.zeros(num_classes, height * width, device=device)
    if boxes_xyxy.shape[0] == 0:
        return heatmap.view(num_classes, height, width)
    boxes = boxes_xyxy.float()
    centres = (boxes[:, :2] + boxes[:, 2:]) / (2 * stride) - 0.5  # (G, 2) in cell-index units
    radius = gaussian_radius(boxes, stride, min_radius, rho)  # (G,)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    ys = torch.arange(height, device=device, dtype=torch.float32)
    # The gaussian is separable: build per-axis factors, then one outer product per object.
    gx = torch.exp(-((xs[None] - centres[:, :1]) ** 2) / (2 * radius[:, None] ** 2))  # (G, W)
    gy = torch.exp(-((ys[None] - centres[:, 1:]) ** 2) / (2 * radius[:, None] ** 2))  # (G, H)
    gx = gx / gx.amax(dim=1, keepdim=True).clamp(min=1e-12)
    gy = gy / gy.amax(dim=1, keepdim=True).clamp(min=1e-12)
    per_object = (gy[:, :, None] * gx[:, None, :]).view(-1, height * width)  # (G, H*W)
    index = labels.to(device=device, dtype=torch.int64)[:, None].expand_as(per_object)
    heatmap.scatter_reduce_(0, index, per_object, reduce="amax", include_self=True)
    return heatmap.view(num_classes, height, width)  # (K, H, W)


def synthesize_heatmaps(
    boxes_xyxy: list[Tensor], labels: list[Tensor], num_classes: int, grid_hw: tuple[int, int], stride: float,
    min_radius: float = 4.0, rho: float = 0.5,
) -> Tensor:
    """Batched ``synthesize_heatmap``: lists of per-image boxes and labels -> Tensor[B, K, H, W]."""
    return torch.stack([
        synthesize_heatmap(b, l, num_classes, grid_hw, stride, min_radius, rho) for b, l in zip(boxes_xyxy, labels)
    ])


def decode_peaks(heatmap: Tensor, stride: float, max_peaks: int = 100, min_score: float = 0.05) -> dict[str, Tensor]:
    """Local maxima of a probability heatmap (3x3 max-pool suppression), best first, one per plateau.

    A saturated head predicts exactly equal values over several neighbouring cells (sigmoid rounds to 1.0 in
    float32); a plain ``pooled == heatmap`` test would call each of them a peak. Ties are broken by position (the
    first cell in raster order wins) with a float64 key whose position increments add up to less than 1e-9, far
    below any difference between predicted values that matters.

    Args:
        heatmap (Tensor[K, H, W]): probabilities in [0, 1] (sigmoid of the head's logits).
    Returns:
        dict with ``centres_xy`` (Tensor[M, 2], pixels of the cell centres), ``scores`` (Tensor[M]),
        ``labels`` (Tensor[M]), ``cells`` (Tensor[M, 2] int64, (row, column) of the peak cell); M <= max_peaks,
        only peaks with score >= min_score.
    """
    if heatmap.ndim != 3:
        raise ValueError(f"heatmap must have shape (K, H, W), got {tuple(heatmap.shape)}")
    num_classes, height, width = heatmap.shape
    order = torch.arange(height * width, 0, -1, device=heatmap.device, dtype=torch.float64).view(1, height, width)
    key = heatmap.double() + order * (1e-9 / (height * width))  # (K, H, W): ties rank by raster position
    pooled = F.max_pool2d(key[None], kernel_size=3, stride=1, padding=1)[0]
    peaks = torch.where(pooled == key, heatmap, torch.zeros_like(heatmap)).flatten()  # (K*H*W,)
    scores, index = peaks.topk(min(max_peaks, peaks.numel()))
    keep = scores >= min_score
    scores, index = scores[keep], index[keep]
    labels = index // (height * width)
    cell = index % (height * width)
    cells = torch.stack([cell // width, cell % width], dim=-1)  # (M, 2) row, column
    centres = (cells.flip(-1).float() + 0.5) * stride  # (M, 2) x, y
    return {"centres_xy": centres, "scores": scores, "labels": labels, "cells": cells}


def _decay_distance(profile: Tensor, start: Tensor, level: Tensor, direction: int) -> Tensor:
    """Distance in cells from ``start`` along each row of ``profile`` (M, L) to where it first falls below
    ``level`` (M,), linearly interpolated between the two cells around the crossing; to the border when it never
    does."""
    length = profile.shape[1]
    positions = torch.arange(length, device=profile.device)[None]  # (1, L)
    ahead = (positions - start[:, None]) * direction > 0
    below = ahead & (profile < level[:, None])
    if direction > 0:
        first = torch.where(below, positions, length).amin(dim=1)  # (M,)
    else:
        first = torch.where(below, positions, -1).amax(dim=1)
    found = (first >= 0) & (first < length)
    crossing = first.clamp(0, length - 1)
    previous = (crossing - direction).clamp(0, length - 1)
    v_below = profile.gather(1, crossing[:, None])[:, 0]
    v_above = profile.gather(1, previous[:, None])[:, 0]
    fraction = ((v_above - level) / (v_above - v_below).clamp(min=1e-6)).clamp(0, 1)
    to_border = (length - 0.5 - start if direction > 0 else start + 0.5).float()
    inside = (previous - start).abs().float() + fraction
    return torch.where(found, inside, to_border)


def peak_sigmas(heatmap: Tensor, peaks: dict[str, Tensor]) -> Tensor:
    """Width of each peak's blob: the gaussian sigma (in cells) along x and y read off the heatmap.

    A gaussian falls to exp(-1/2) of its peak one sigma away, so sigma along an axis is the mean distance, left and
    right (up and down), from the peak cell to where the peak's class map falls below ``exp(-1/2) * peak``. The
    targets of ``synthesize_heatmap`` have sigma = max(min_radius, rho * min(w, h) / stride), so a box's short
    side is about ``sigma * stride / rho`` where the blob is wider than ``min_radius``.

    Args:
        heatmap (Tensor[K, H, W]): probabilities; peaks: ``decode_peaks`` output (``labels``, ``cells``, ``scores``).
    Returns:
        Tensor[M, 2]: (sigma_x, sigma_y) in cells, >= 0.5.
    """
    if peaks["scores"].numel() == 0:
        return heatmap.new_zeros(0, 2)
    labels, rows, cols = peaks["labels"], peaks["cells"][:, 0], peaks["cells"][:, 1]
    level = peaks["scores"] * math.exp(-0.5)  # (M,)
    along_x = heatmap[labels, rows]  # (M, W)
    along_y = heatmap[labels, :, cols]  # (M, H)
    sigma_x = (_decay_distance(along_x, cols, level, 1) + _decay_distance(along_x, cols, level, -1)) / 2
    sigma_y = (_decay_distance(along_y, rows, level, 1) + _decay_distance(along_y, rows, level, -1)) / 2
    return torch.stack([sigma_x, sigma_y], dim=-1).clamp(min=0.5)
