"""Box formats and the box-delta parametrisation shared by the head, the sampler and the losses.

Formats are named in variables: ``boxes_xyxy`` in image pixels (x1, y1, x2, y2), ``boxes_cxcywh`` normalised
to [0, 1] of the (unpadded) image size unless a name says otherwise.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_convert

# DiffusionDet's head clamps dw/dh at log(100000 / 16) = 8.74, so exp() grows a box by at most 6250x. This is
# DiffusionDet's own constant, not detectron2's generic Box2BoxTransform default log(1000 / 16) = 4.14: with the
# latter a 2-px box with dw = 5 would come out 125 px wide instead of the reference's 297 px.
DELTA_SCALE_CLAMP = math.log(100000.0 / 16)


def image_whwh(image_sizes_hw: Tensor) -> Tensor:
    """(B, 2) image heights/widths -> (B, 4) multipliers (w, h, w, h) for normalised xyxy boxes."""
    h, w = image_sizes_hw[:, 0], image_sizes_hw[:, 1]
    return torch.stack([w, h, w, h], dim=-1).to(torch.float32)  # (B, 4)


def cxcywh01_to_xyxy(boxes_cxcywh: Tensor, whwh: Tensor) -> Tensor:
    """Normalised cxcywh (..., 4) -> pixel xyxy (..., 4); ``whwh`` broadcasts against the boxes."""
    return box_convert(boxes_cxcywh, "cxcywh", "xyxy") * whwh


def xyxy_to_cxcywh01(boxes_xyxy: Tensor, whwh: Tensor) -> Tensor:
    """Pixel xyxy (..., 4) -> normalised cxcywh (..., 4)."""
    return box_convert(boxes_xyxy / whwh, "xyxy", "cxcywh")


def apply_deltas(deltas: Tensor, boxes_xyxy: Tensor, weights: tuple[float, float, float, float]) -> Tensor:
    """Move boxes by predicted deltas (dx, dy, dw, dh), the R-CNN parametrisation.

    Args:
        deltas (Tensor[M, 4]): raw head outputs.
        boxes_xyxy (Tensor[M, 4]): reference boxes in pixels.
        weights: divisors of (dx, dy, dw, dh); the reference uses (2, 2, 1, 1). dw and dh are clamped at
            ``DELTA_SCALE_CLAMP`` after the division, as DiffusionDet's head does.
    Returns:
        Tensor[M, 4]: absolute xyxy boxes in pixels.
    """
    boxes = boxes_xyxy.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0] / wx
    dy = deltas[:, 1] / wy
    dw = (deltas[:, 2] / ww).clamp(max=DELTA_SCALE_CLAMP)
    dh = (deltas[:, 3] / wh).clamp(max=DELTA_SCALE_CLAMP)
    pred_ctr_x = dx * widths + ctr_x
    pred_ctr_y = dy * heights + ctr_y
    pred_w = torch.exp(dw) * widths
    pred_h = torch.exp(dh) * heights
    return torch.stack(
        [pred_ctr_x - 0.5 * pred_w, pred_ctr_y - 0.5 * pred_h, pred_ctr_x + 0.5 * pred_w, pred_ctr_y + 0.5 * pred_h],
        dim=-1,
    )  # (M, 4)


def check_boxes_xyxy(boxes_xyxy: Tensor, name: str = "boxes_xyxy") -> None:
    """Raise ValueError unless ``boxes_xyxy`` is a finite (..., 4) tensor with x1 <= x2 and y1 <= y2."""
    if boxes_xyxy.ndim < 1 or boxes_xyxy.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (..., 4), got {tuple(boxes_xyxy.shape)}")
    if boxes_xyxy.numel() == 0:
        return
    if not torch.isfinite(boxes_xyxy).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (boxes_xyxy[..., 2] < boxes_xyxy[..., 0]).any() or (boxes_xyxy[..., 3] < boxes_xyxy[..., 1]).any():
        raise ValueError(f"{name} has boxes with x2 < x1 or y2 < y1")
