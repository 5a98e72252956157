"""Tests for diffdet.criterion: dynamic-k matching, set losses, heatmap losses."""
from __future__ import annotations

import pytest
import torch

from diffdet.config import TINY
from diffdet.criterion import DynamicKMatcher, SetCriterion, heatmap_focal_loss, heatmap_mse_loss, total_loss
from diffdet.heatmap import synthesize_heatmaps

K = TINY.num_classes
IMAGE_HW = (64, 96)


def make_target(boxes: list[list[float]], labels: list[int]) -> dict[str, torch.Tensor]:
    return {"boxes_xyxy": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "image_size_hw": torch.tensor(IMAGE_HW)}


def random_boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator) * torch.tensor([70.0, 44.0])
    wh = 4 + torch.rand(n, 2, generator=generator) * 20
    return torch.cat([xy, xy + wh], dim=1)  # (n, 4)


TARGETS = [
    make_target([[10, 10, 30, 40], [50, 5, 90, 30], [20, 45, 40, 60]], [0, 3, 9]),
    make_target([], []),
    make_target([[0, 0, 96, 64]], [5]),
]


def test_matcher_every_gt_matched_and_proposals_unique() -> None:
    generator = torch.Generator().manual_seed(0)
    matcher = DynamicKMatcher.from_config(TINY)
    logits = torch.randn(3, 20, K, generator=generator)
    boxes = torch.stack([random_boxes(20, generator) for _ in range(3)])
    for (prop_idx, gt_idx), target in zip(matcher(logits, boxes, TARGETS), TARGETS):
        assert prop_idx.unique().numel() == prop_idx.numel()  # a proposal serves one gt
        assert set(gt_idx.tolist()) == set(range(target["labels"].numel()))  # every gt served
    prop_idx, gt_idx = matcher(logits, boxes, TARGETS)[1]
    assert prop_idx.numel() == 0 and gt_idx.numel() == 0  # G = 0: all proposals background


def test_matcher_every_gt_even_with_few_proposals() -> None:
    """Five gts crowd around three good proposals: the fallback loop still gives each gt its own."""
    target = make_target([[10, 10, 20, 20], [11, 10, 21, 20], [10, 11, 20, 21], [12, 12, 22, 22], [60, 30, 80, 50]],
                         [0, 0, 1, 2, 3])
    boxes = torch.tensor([[10, 10, 20, 20], [11, 11, 21, 21], [12, 12, 22, 22], [0, 0, 2, 2], [90, 60, 95, 63],
                          [40, 0, 45, 5]], dtype=torch.float32)
    prop_idx, gt_idx = DynamicKMatcher().match_image(torch.zeros(6, K), boxes, target)
    assert sorted(gt_idx.tolist()) == [0, 1, 2, 3, 4] and prop_idx.unique().numel() == 5


def test_matcher_takes_the_perfect_proposal() -> None:
    generator = torch.Generator().manual_seed(1)
    target = make_target([[20, 12, 44, 50]], [4])
    boxes = random_boxes(30, generator)
    boxes[17] = target["boxes_xyxy"][0]
    logits = torch.full((30, K), -5.0)
    logits[17, 4] = 5.0
    prop_idx, gt_idx = DynamicKMatcher().match_image(logits, boxes, target)
    assert 17 in prop_idx.tolist() and gt_idx.tolist() == [0] * len(gt_idx)
    cost, _ = DynamicKMatcher().cost_matrix(logits, boxes, target)
    assert cost[:, 0].argmin() == 17


def make_outputs(num_stages: int, noise: float, seed: int, n: int = 12) -> dict[str, torch.Tensor]:
    """Proposal g < G copies gt g, jittered by ``noise`` pixels, with class logit 4 - noise; the rest are the
    same random background boxes (logits -4) for every ``noise``, so only the distance to the targets changes."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.full((num_stages, len(TARGETS), n, K), -4.0)
    boxes = torch.stack([random_boxes(n, generator) for _ in TARGETS]).expand(num_stages, -1, -1, -1).clone()
    for b, target in enumerate(TARGETS):
        g = target["labels"].numel()
        jitter = torch.randn(num_stages, g, 4, generator=generator)
        boxes[:, b, :g] = target["boxes_xyxy"] + noise * jitter
        logits[:, b, torch.arange(g), target["labels"]] = 4.0 - noise
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_losses_keys_finite_and_decrease() -> None:
    criterion = SetCriterion(TINY)
    far = criterion(make_outputs(TINY.num_stages, 8.0, seed=2), TARGETS)
    near = criterion(make_outputs(TINY.num_stages, 1.0, seed=2), TARGETS)
    stage_keys = {"loss_ce", "loss_bbox", "loss_giou"}
    expected = stage_keys | {f"{k}_{i}" for k in stage_keys for i in range(TINY.num_stages - 1)}
    assert set(far) == expected and set(criterion.weight_dict) == expected | {"loss_heatmap"}
    for key in expected:
        assert torch.isfinite(far[key]) and far[key] > 0 and near[key] < far[key], key
    assert criterion.total_loss(near) < criterion.total_loss(far)


def test_no_deep_supervision_and_empty_batch() -> None:
    cfg = TINY.replace(deep_supervision=False, use_heatmap=False)
    criterion = SetCriterion(cfg)
    assert set(criterion.weight_dict) == {"loss_ce", "loss_bbox", "loss_giou"}
    outputs = make_outputs(cfg.num_stages, 1.0, seed=3)
    empty = [TARGETS[1]] * 3
    losses = criterion(outputs, empty)
    assert set(losses) == {"loss_ce", "loss_bbox", "loss_giou"}
    assert losses["loss_bbox"] == 0 and losses["loss_ce"] > 0  # every proposal pushed towards background


def test_gradients_finite_after_backward() -> None:
    criterion = SetCriterion(TINY)
    outputs = make_outputs(TINY.num_stages, 3.0, seed=4)
    logits = outputs["pred_logits"].requires_grad_()
    boxes = outputs["pred_boxes"].requires_grad_()
    heatmap_logits = torch.zeros(len(TARGETS), K, 16, 24, requires_grad=True)
    losses = criterion({"pred_logits": logits, "pred_boxes": boxes, "heatmap_logits": heatmap_logits,
                        "heatmap_stride": 4}, TARGETS)
    assert "loss_heatmap" in losses
    total = criterion.total_loss(losses)
    total.backward()
    for tensor in (logits, boxes, heatmap_logits):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", ["mse", "focal"])
def test_heatmap_loss_lower_for_exact_target(variant: str) -> None:
    criterion = SetCriterion(TINY.replace(heatmap_loss=variant))
    stride, grid_hw = 4, (16, 24)
    target = synthesize_heatmaps([t["boxes_xyxy"] for t in TARGETS], [t["labels"] for t in TARGETS], K, grid_hw,
                                 stride, TINY.min_radius, TINY.rho)
    # logits whose sigmoid is the target (clamped away from 0 and 1)
    exact = torch.logit(target.clamp(1e-4, 1 - 1e-4))
    zeros = torch.zeros_like(exact)
    loss_exact = criterion.heatmap_loss(exact, stride, TARGETS)
    loss_zeros = criterion.heatmap_loss(zeros, stride, TARGETS)
    assert torch.isfinite(loss_exact) and loss_exact < loss_zeros
    assert loss_exact < 0.05 * loss_zeros


def test_heatmap_loss_functions() -> None:
    target = torch.zeros(1, 2, 5, 5)
    target[0, 1, 2, 2] = 1.0
    assert heatmap_mse_loss(torch.zeros_like(target), target) == pytest.approx((0.25 * 49 + 0.25) / 50)
    # a confident, correct prediction costs almost nothing; large logits stay finite
    confident = torch.where(target > 0, torch.tensor(30.0), torch.tensor(-30.0))
    assert heatmap_focal_loss(confident, target, num_objects=1) < 1e-6
    assert torch.isfinite(heatmap_focal_loss(-confident, target, num_objects=1))


def test_bad_inputs_raise() -> None:
    criterion = SetCriterion(TINY)
    outputs = make_outputs(TINY.num_stages, 1.0, seed=5)
    with pytest.raises(ValueError, match="pred_logits must be"):
        criterion({"pred_logits": outputs["pred_logits"][0], "pred_boxes": outputs["pred_boxes"]}, TARGETS)
    with pytest.raises(ValueError, match="targets for a batch of 3"):
        criterion(outputs, TARGETS[:2])
    with pytest.raises(ValueError, match="without a weight"):
        total_loss({"loss_other": torch.tensor(1.0)}, criterion.weight_dict)
