"""The DiffusionDet head: multi-level RoIAlign, time embedding, iterative dynamic-conv stages; the heatmap head.

Parameter names follow the reference checkpoints (``head.head_series.i.*``, ``head.time_mlp.*``) so the
converter only renames the backbone.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from diffdet.boxes import apply_deltas
from diffdet.config import DiffDetConfig


def sinusoidal_embedding(t: Tensor, dim: int) -> Tensor:
    """Transformer-style timestep embedding: (B,) -> (B, dim), [sin | cos] halves."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * -(math.log(10000.0) / (half - 1)))
    args = t.float()[:, None] * freqs[None]  # (B, dim/2)
    return torch.cat([args.sin(), args.cos()], dim=-1)  # (B, dim)


class SinusoidalEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        return sinusoidal_embedding(t, self.dim)


def roi_levels(boxes_xyxy: Tensor, canonical_size: float = 224.0, canonical_level: int = 4) -> Tensor:
    """FPN level per box: clamp(floor(4 + log2(sqrt(area) / 224 + 1e-8)), 2, 5) (FPN paper, eq. 1)."""
    area = ((boxes_xyxy[:, 2] - boxes_xyxy[:, 0]) * (boxes_xyxy[:, 3] - boxes_xyxy[:, 1])).clamp(min=0)
    level = torch.floor(canonical_level + torch.log2(area.sqrt() / canonical_size + 1e-8))
    return level.clamp(2, 5).to(torch.int64)


def multilevel_roi_align(features: list[Tensor], boxes_xyxy: Tensor, strides: tuple[int, ...],
                         output_size: int, sampling_ratio: int) -> Tensor:
    """RoIAlign (aligned=True) of each box from its own FPN level, with torchvision's ``roi_align`` per level.

    torchvision's MultiScaleRoIAlign uses aligned=False, so levels are mapped here. The head uses ``RoIPooler``,
    which gives the same numbers faster; this is its reference and its path for an adaptive sampling ratio (0).

    Args:
        features: [P2..P5], each (B, C, H_l, W_l); boxes_xyxy (Tensor[B, N, 4]) pixels of the padded input.
    Returns:
        Tensor[B * N, C, output_size, output_size].
    """
    batch, num_boxes = boxes_xyxy.shape[:2]
    flat = boxes_xyxy.reshape(-1, 4)  # (B*N, 4)
    batch_index = torch.arange(batch, device=flat.device, dtype=flat.dtype).repeat_interleave(num_boxes)
    rois = torch.cat([batch_index[:, None], flat], dim=1)  # (B*N, 5)
    levels = roi_levels(flat)
    channels = features[0].shape[1]
    out = features[0].new_zeros(rois.shape[0], channels, output_size, output_size)
    for level_index, (feature, stride) in enumerate(zip(features, strides)):
        idx = torch.nonzero(levels == level_index + 2).squeeze(1)
        if idx.numel() == 0:
            continue
        pooled = roi_align(feature, rois[idx].to(feature.dtype), output_size, spatial_scale=1.0 / stride,
                           sampling_ratio=sampling_ratio, aligned=True)
        out.index_copy_(0, idx, pooled.to(out.dtype))
    return out  # (B*N, C, S, S)


def _axis_taps(start: Tensor, length: Tensor, size: Tensor, bins: int, ratio: int) -> tuple[Tensor, Tensor]:
    """Bilinear taps of RoIAlign's sample points along one axis, with torchvision's edge rules.

    Args:
        start, length, size (Tensor[M]): box start and length in feature cells, the map's size along the axis.
    Returns:
        index (Tensor[M, bins, 2 * ratio], int64) and weight (Tensor[M, bins, 2 * ratio]): for every bin, the
        low/high cell of each of its ``ratio`` sample points. Points beyond [-1, size] weigh 0; points below 0
        read cell 0; points past the last cell read the last cell.
    """
    step = (length / bins)[:, None, None]  # (M, 1, 1) bin size
    bin_index = torch.arange(bins, device=start.device, dtype=start.dtype)[:, None]  # (bins, 1)
    sub = torch.arange(ratio, device=start.device, dtype=start.dtype) + 0.5  # (ratio,)
    # torchvision's order of operations, so the sample points round the same way.
    pos = (start[:, None, None] + bin_index * step + sub * step / ratio).flatten(1)  # (M, bins*ratio)
    last = (size - 1).to(pos.dtype)[:, None]
    inside = (pos >= -1.0) & (pos <= size[:, None])
    pos = pos.clamp(min=0)
    low = torch.minimum(pos.floor(), last)
    frac = torch.where(low < last, pos - low, torch.zeros_like(pos))
    high = torch.minimum(low + 1, last)
    weight = torch.stack([1 - frac, frac], dim=-1) * inside[..., None]  # (M, bins*ratio, 2)
    index = torch.stack([low, high], dim=-1).long()
    return index.view(-1, bins, 2 * ratio), weight.view(-1, bins, 2 * ratio)


class NonFiniteError(ValueError):
    """The model produced (or was given) NaN or infinite boxes: its weights or inputs are not finite."""


def check_finite_boxes(boxes_xyxy: Tensor, stage: int) -> None:
    """Raise NonFiniteError unless every box about to be pooled by ``stage`` is finite.

    RoI pooling turns a NaN coordinate into a garbage feature-map index (an IndexError deep inside the gather, or
    silently wrong features); one reduction per stage says what is wrong instead.
    """
    if not bool(torch.isfinite(boxes_xyxy).all()):
        count = int((~torch.isfinite(boxes_xyxy)).any(dim=-1).sum())
        source = "the input boxes" if stage == 0 else f"head stage {stage - 1}"
        total = boxes_xyxy.shape[0] * boxes_xyxy.shape[1]
        raise NonFiniteError(f"the model produces non-finite boxes: {count} of {total} boxes from {source} are NaN "
                             "or infinite (non-finite weights or inputs; a diverged training run gives such weights)")


class RoIPooler:
    """RoIAlign (aligned=True, fixed sampling ratio) of each box from its own FPN level as one weighted gather.

    The FPN maps are laid out once, channels last, as the rows of one table; every output bin is then the
    weighted sum of the table rows its bilinear sample points touch (``F.embedding_bag``, mode "sum"). The
    numbers are torchvision's ``roi_align`` with the per-level mapping of ``roi_levels`` (see
    ``multilevel_roi_align``); on a CPU it is several times faster, and it returns the (M, S*S, C) layout that
    the dynamic convolution reads. Built once per head call: the features do not change between stages.
    """

    def __init__(self, features: list[Tensor], strides: tuple[int, ...], output_size: int, sampling_ratio: int) -> None:
        if sampling_ratio <= 0:
            raise ValueError("RoIPooler needs a fixed sampling ratio >= 1; use multilevel_roi_align for adaptive (0)")
        self.output_size, self.ratio, self.strides = output_size, sampling_ratio, strides
        self.batch, self.channels = features[0].shape[:2]
        # Rows: level-major, then image, then cell (y, x). (L,) sizes and first rows per level.
        self.table = torch.cat([f.permute(0, 2, 3, 1).reshape(-1, self.channels) for f in features])  # (R, C)
        device = features[0].device
        self.heights = torch.tensor([f.shape[2] for f in features], device=device)
        self.widths = torch.tensor([f.shape[3] for f in features], device=device)
        counts = self.heights * self.widths * self.batch
        self.level_start = torch.cumsum(counts, 0) - counts
        self.inv_strides = torch.tensor([1.0 / s for s in strides], device=device)
        self.level_shapes = [tuple(f.shape) for f in features]

    def feature_views(self) -> list[Tensor]:
        """The FPN maps as views into the table ([P2..P5], each (B, C, H_l, W_l), channels-last strides): the same
        values as the features the pooler was built from, so a caller may drop those and keep one copy."""
        views, start = [], 0
        for batch, channels, height, width in self.level_shapes:
            rows = batch * height * width
            views.append(self.table[start: start + rows].view(batch, height, width, channels).permute(0, 3, 1, 2))
            start += rows
        return views

    def __call__(self, boxes_xyxy: Tensor) -> Tensor:
        """boxes_xyxy (Tensor[B, N, 4]) pixels of the padded input -> Tensor[B * N, S * S, C]."""
        batch, num_boxes = boxes_xyxy.shape[:2]
        s, g = self.output_size, self.ratio
        with torch.no_grad():
            flat = boxes_xyxy.reshape(-1, 4).float()  # (M, 4)
            level = roi_levels(flat) - 2  # (M,) index into the level tables
            image = torch.arange(batch, device=flat.device).repeat_interleave(num_boxes)  # (M,)
            height, width, scale = self.heights[level], self.widths[level], self.inv_strides[level]
            x1, y1 = flat[:, 0] * scale - 0.5, flat[:, 1] * scale - 0.5
            x2, y2 = flat[:, 2] * scale - 0.5, flat[:, 3] * scale - 0.5
            iy, wy = _axis_taps(y1, y2 - y1, height, s, g)  # (M, S, 2g)
            ix, wx = _axis_taps(x1, x2 - x1, width, s, g)
            first = self.level_start[level] + image * height * width  # (M,) first row of the box's map
            rows = first[:, None, None, None, None] + iy[:, :, None, :, None] * width[:, None, None, None, None] \
                + ix[:, None, :, None, :]  # (M, S, S, 2g, 2g)
            weights = wy[:, :, None, :, None] * wx[:, None, :, None, :] / (g * g)
        taps = 4 * g * g
        pooled = F.embedding_bag(rows.reshape(-1, taps), self.table, per_sample_weights=weights.reshape(-1, taps)
                                 .to(self.table.dtype), mode="sum")  # (M*S*S, C)
        return pooled.view(batch * num_boxes, s * s, self.channels)


class DynamicConv(nn.Module):
    """Per-box dynamic interaction: each box's feature generates two matrices applied to its RoI features."""

    def __init__(self, cfg: DiffDetConfig) -> None:
        super().__init__()
        d, r = cfg.hidden_dim, cfg.dim_dynamic
        self.hidden_dim, self.dim_dynamic = d, r
        self.dynamic_layer = nn.Linear(d, 2 * d * r)
        self.norm1 = nn.LayerNorm(r)
        self.norm2 = nn.LayerNorm(d)
        self.out_layer = nn.Linear(d * cfg.pooler_resolution**2, d)
        self.norm3 = nn.LayerNorm(d)

    # Boxes per chunk on a CPU: the per-box intermediates ((M, S*S, D) and (M, 2*D*r)) of ~128 boxes stay in the
    # caches; 8 x 300 boxes in one piece spend their time streaming them through memory (bench/RESULTS.md).
    # Up to ``chunk_above`` boxes (one image's proposals) run in one piece, where chunks measured slower.
    chunk_boxes, chunk_above = 128, 512

    def forward(self, box_features: Tensor, roi_features: Tensor) -> Tensor:
        """box_features (M, D), roi_features (M, S*S, D) -> (M, D), on a CPU in chunks when M > ``chunk_above``."""
        if box_features.shape[0] <= self.chunk_above or box_features.device.type != "cpu":
            return self._interact(box_features, roi_features)
        return torch.cat([self._interact(b, r) for b, r in zip(box_features.split(self.chunk_boxes),
                                                                 roi_features.split(self.chunk_boxes))])

    def _interact(self, box_features: Tensor, roi_features: Tensor) -> Tensor:
        d, r = self.hidden_dim, self.dim_dynamic
        params = self.dynamic_layer(box_features)  # (M, 2*D*r)
        w1 = params[:, : d * r].view(-1, d, r)  # (M, D, r)
        w2 = params[:, d * r:].view(-1, r, d)  # (M, r, D)
        x = F.relu(self.norm1(torch.bmm(roi_features, w1)))  # (M, S*S, r)
        x = F.relu(self.norm2(torch.bmm(x, w2)))  # (M, S*S, D)
        return F.relu(self.norm3(self.out_layer(x.flatten(1))))  # (M, D)


def _mlp_blocks(d: int, count: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(count):
        layers += [nn.Linear(d, d, bias=False), nn.LayerNorm(d), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class RCNNStage(nn.Module):
    """One refinement stage: self-attention over boxes, dynamic conv with RoI features, FFN, time scale/shift,
    then class logits and box deltas."""

    def __init__(self, cfg: DiffDetConfig) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.cfg = cfg
        self.self_attn = nn.MultiheadAttention(d, cfg.num_heads, dropout=cfg.dropout, batch_first=True)
        self.inst_interact = DynamicConv(cfg)
        self.linear1 = nn.Linear(d, cfg.dim_feedforward)
        self.linear2 = nn.Linear(cfg.dim_feedforward, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.block_time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(4 * d, 2 * d))
        self.cls_module = _mlp_blocks(d, cfg.num_cls_layers)
        self.reg_module = _mlp_blocks(d, cfg.num_reg_layers)
        self.class_logits = nn.Linear(d, cfg.num_classes)
        self.bboxes_delta = nn.Linear(d, 4)

    def forward(self, pool: Callable[[Tensor], Tensor], boxes_xyxy: Tensor, box_features: Tensor | None,
                time_emb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            pool: boxes (B, N, 4) -> RoI features (B*N, S*S, D) of the image features (see ``DynamicHead.pooler``).
            boxes_xyxy (Tensor[B, N, 4]): current boxes, pixels; box_features (Tensor[B, N, D]) or None at stage 0;
            time_emb (Tensor[B, 4D]).
        Returns:
            logits (B, N, K), new boxes_xyxy (B, N, 4), box_features (B, N, D).
        """
        batch, num_boxes = boxes_xyxy.shape[:2]
        d = self.cfg.hidden_dim
        roi = pool(boxes_xyxy)  # (B*N, S*S, D)
        if box_features is None:
            box_features = roi.mean(dim=1).view(batch, num_boxes, d)  # (B, N, D)
        attn, _ = self.self_attn(box_features, box_features, box_features, need_weights=False)
        x = self.norm1(box_features + self.dropout(attn))  # (B, N, D)
        x = x.reshape(batch * num_boxes, d)  # (B*N, D)
        x = self.norm2(x + self.dropout(self.inst_interact(x, roi)))
        x = self.norm3(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))
        obj_features = x
        scale, shift = self.block_time_mlp(time_emb).repeat_interleave(num_boxes, dim=0).chunk(2, dim=1)  # (B*N, D) x2
        fc = x * (scale + 1) + shift
        logits = self.class_logits(self.cls_module(fc))  # (B*N, K)
        deltas = self.bboxes_delta(self.reg_module(fc))  # (B*N, 4)
        new_boxes = apply_deltas(deltas, boxes_xyxy.reshape(-1, 4), self.cfg.bbox_weights)
        return (logits.view(batch, num_boxes, -1), new_boxes.view(batch, num_boxes, 4),
                obj_features.view(batch, num_boxes, d))


class DynamicHead(nn.Module):
    """Time embedding + ``num_stages`` RCNN stages; boxes are detached between stages."""

    def __init__(self, cfg: DiffDetConfig, strides: tuple[int, ...]) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.strides = strides
        self.pooler_resolution, self.sampling_ratio = cfg.pooler_resolution, cfg.sampling_ratio
        self.time_mlp = nn.Sequential(SinusoidalEmbedding(d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, 4 * d))
        self.head_series = nn.ModuleList(RCNNStage(cfg) for _ in range(cfg.num_stages))
        self._reset_parameters(cfg.prior_prob)

    def _reset_parameters(self, prior_prob: float) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        bias = -math.log((1 - prior_prob) / prior_prob)
        for stage in self.head_series:
            nn.init.constant_(stage.class_logits.bias, bias)

    def pooler(self, features: list[Tensor]) -> Callable[[Tensor], Tensor]:
        """boxes (B, N, 4) -> RoI features (B*N, S*S, D): aligned RoIAlign from each box's FPN level."""
        res, ratio = self.pooler_resolution, self.sampling_ratio
        if ratio > 0:
            return RoIPooler(features, self.strides, res, ratio)
        return lambda boxes: multilevel_roi_align(features, boxes, self.strides, res, ratio).flatten(2).transpose(1, 2)

    def forward(self, features: list[Tensor], boxes_xyxy: Tensor, t: Tensor,
                pool: Callable[[Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """features [P2..P5]; boxes_xyxy (B, N, 4) pixels; t (B,) -> logits (L, B, N, K), boxes (L, B, N, 4).
        ``pool``: ``self.pooler(features)`` built by the caller, to reuse across calls on the same features."""
        time_emb = self.time_mlp(t)  # (B, 4D)
        pool = pool if pool is not None else self.pooler(features)
        all_logits, all_boxes = [], []
        box_features = None
        for k, stage in enumerate(self.head_series):
            check_finite_boxes(boxes_xyxy, k)
            logits, boxes, box_features = stage(pool, boxes_xyxy, box_features, time_emb)
            all_logits.append(logits)
            all_boxes.append(boxes)
            boxes_xyxy = boxes.detach()
        return torch.stack(all_logits), torch.stack(all_boxes)


class HeatmapHead(nn.Module):
    """The PROPS paper's head: conv3x3 (C -> 64) -> ReLU -> conv1x1 (64 -> K), logits of per-class centre maps."""

    def __init__(self, cfg: DiffDetConfig) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            nn.Conv2d(cfg.fpn_channels, cfg.heatmap_channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(cfg.heatmap_channels, cfg.num_classes, 1),
        )
        # Start with low probabilities everywhere, as for the class logits: most cells are background.
        nn.init.constant_(self.layer[2].bias, -math.log((1 - cfg.prior_prob) / cfg.prior_prob))

    def forward(self, feature: Tensor) -> Tensor:
        return self.layer(feature)  # (B, K, H_l, W_l)
