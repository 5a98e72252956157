"""Training losses: the dynamic-k matcher of DiffusionDet and the set criterion, heatmap term included.

Model-output contract (what ``SetCriterion.forward`` reads):
    ``pred_logits`` (Tensor[L, B, N, K]): raw class logits of every head stage (sigmoid focal, no background);
    ``pred_boxes`` (Tensor[L, B, N, 4]): absolute xyxy in pixels of the padded input batch;
    optional ``heatmap_logits`` (Tensor[B, K, Hh, Wh]) with ``heatmap_stride`` (int, pixels per cell).
Targets: one dict per image with ``boxes_xyxy`` (Tensor[G, 4], pixels), ``labels`` (Tensor[G] int64) and
``image_size_hw`` (Tensor[2], the unpadded size, by which boxes are normalised for the L1 cost and loss).

Every stage is matched on its own (deep supervision); the last stage's terms are ``loss_ce``, ``loss_bbox``,
``loss_giou``, stage i < L - 1 adds ``loss_ce_i`` etc.; ``weight_dict`` names every term.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_iou, generalized_box_iou, sigmoid_focal_loss

from diffdet.config import DiffDetConfig
from diffdet.heatmap import synthesize_heatmaps

# Matching penalties of the reference: a proposal whose centre is not inside both the box and its centre
# region costs +100; one inside neither (for any ground truth) +10000, i.e. it is only ever a last resort.
NOT_IN_BOX_AND_CENTRE_COST = 100.0
OUTSIDE_COST = 10000.0
CENTRE_RADIUS = 2.5  # centre region: the gt centre +- 2.5 x the gt box size
TAKEN_COST = 100000.0  # added to proposals already taken when some ground truth is still unmatched


def _image_whwh(image_size_hw: Tensor) -> Tensor:
    h, w = image_size_hw.float().unbind(-1)
    return torch.stack([w, h, w, h])  # (4,)


class DynamicKMatcher(nn.Module):
    """SimOTA-style dynamic-k assignment of proposals to ground truth, the DiffusionDet matcher.

    cost = class_weight * focal_cost + l1_weight * L1(normalised xyxy) - giou_weight * GIoU
           + 100 unless the proposal centre is inside both the gt box and its centre region
           + 10000 if it is inside neither for every gt.
    Each gt takes its k cheapest proposals, k = max(1, int(sum of its top-``ota_k`` IoUs)); a proposal taken
    by several gts keeps the cheapest; while some gt has no proposal, it takes its cheapest free one.
    """

    def __init__(self, class_weight: float = 2.0, l1_weight: float = 5.0, giou_weight: float = 2.0,
                 focal_alpha: float = 0.25, focal_gamma: float = 2.0, ota_k: int = 5) -> None:
        super().__init__()
        if ota_k < 1:
            raise ValueError(f"ota_k must be >= 1, got {ota_k}")
        self.class_weight, self.l1_weight, self.giou_weight = class_weight, l1_weight, giou_weight
        self.focal_alpha, self.focal_gamma, self.ota_k = focal_alpha, focal_gamma, ota_k

    @classmethod
    def from_config(cls, cfg: DiffDetConfig) -> "DynamicKMatcher":
        return cls(cfg.class_weight, cfg.l1_weight, cfg.giou_weight, cfg.focal_alpha, cfg.focal_gamma, cfg.ota_k)

    @torch.no_grad()
    def forward(
        self, pred_logits: Tensor, pred_boxes_xyxy: Tensor, targets: list[dict[str, Tensor]],
    ) -> list[tuple[Tensor, Tensor]]:
        """Match one stage.

        Args:
            pred_logits (Tensor[B, N, K]); pred_boxes_xyxy (Tensor[B, N, 4]) pixels; targets as the module doc.
        Returns:
            per image ``(proposal_idx (Tensor[M] int64), gt_idx (Tensor[M] int64))``, proposals ascending;
            M = 0 when the image has no ground truth.
        """
        if pred_logits.ndim != 3 or pred_boxes_xyxy.shape != (*pred_logits.shape[:2], 4):
            raise ValueError(f"expected pred_logits (B, N, K) and pred_boxes (B, N, 4), got "
                             f"{tuple(pred_logits.shape)} and {tuple(pred_boxes_xyxy.shape)}")
        if len(targets) != pred_logits.shape[0]:
            raise ValueError(f"got {len(targets)} targets for a batch of {pred_logits.shape[0]}")
        return [self.match_image(logits, boxes, target)
                for logits, boxes, target in zip(pred_logits, pred_boxes_xyxy, targets)]

    def cost_matrix(self, logits: Tensor, boxes_xyxy: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(cost (Tensor[N, G]), IoU (Tensor[N, G])) for one image; N proposals, G ground truths."""
        tgt_boxes = target["boxes_xyxy"].to(boxes_xyxy)  # (G, 4)
        tgt_labels = target["labels"].long()  # (G,)
        boxes = boxes_xyxy.float()

        prob = logits.float().sigmoid()[:, tgt_labels]  # (N, G)
        alpha, gamma = self.focal_alpha, self.focal_gamma
        neg_cost = (1 - alpha) * prob ** gamma * -(1 - prob + 1e-8).log()
        pos_cost = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
        cost_class = pos_cost - neg_cost  # (N, G)

        whwh = _image_whwh(target["image_size_hw"]).to(boxes)
        cost_l1 = torch.cdist(boxes / whwh, tgt_boxes / whwh, p=1)  # (N, G)
        cost_giou = -generalized_box_iou(boxes, tgt_boxes)  # (N, G)

        centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2)
        tgt_centres = (tgt_boxes[:, :2] + tgt_boxes[:, 2:]) / 2  # (G, 2)
        tgt_wh = tgt_boxes[:, 2:] - tgt_boxes[:, :2]  # (G, 2)
        in_box = ((centres[:, None] > tgt_boxes[None, :, :2]) & (centres[:, None] < tgt_boxes[None, :, 2:])).all(-1)
        offset = (centres[:, None] - tgt_centres[None]).abs()  # (N, G, 2)
        in_centre = (offset < CENTRE_RADIUS * tgt_wh[None]).all(-1)  # (N, G)
        in_any = in_box.any(1) | in_centre.any(1)  # (N,)

        cost = (self.class_weight * cost_class + self.l1_weight * cost_l1 + self.giou_weight * cost_giou
                + NOT_IN_BOX_AND_CENTRE_COST * (~(in_box & in_centre)).float())
        cost = cost + OUTSIDE_COST * (~in_any).float()[:, None]
        return cost, box_iou(boxes, tgt_boxes)

    def match_image(self, logits: Tensor, boxes_xyxy: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Match one image: logits (Tensor[N, K]), boxes_xyxy (Tensor[N, 4]) -> (proposal_idx, gt_idx)."""
        device = logits.device
        num_props, num_gt = logits.shape[0], target["labels"].numel()
        if num_gt == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=device)
            return empty, empty.clone()
        cost, ious = self.cost_matrix(logits, boxes_xyxy, target)

        # 1. dynamic k per gt from the sum of its top-k IoUs, then its k cheapest proposals.
        topk_ious = ious.topk(min(self.ota_k, num_props), dim=0).values  # (k, G)
        dynamic_ks = topk_ious.sum(0).int().clamp(min=1, max=num_props)  # (G,)
        matching = torch.zeros_like(cost, dtype=torch.bool)  # (N, G)
        for gt_idx in range(num_gt):
            pos = cost[:, gt_idx].topk(int(dynamic_ks[gt_idx]), largest=False).indices
            matching[pos, gt_idx] = True
        matching = self._keep_cheapest(matching, cost)

        # 2. every gt gets a proposal: each unmatched gt takes its cheapest free proposal. Each round matches at
        # least one more gt, so the loop ends; it stops early only if proposals run out (G > N).
        cost = cost.clone()
        while not matching.any(0).all():
            free = ~matching.any(1)  # (N,)
            if not free.any():
                break
            cost[~free] += TAKEN_COST
            for gt_idx in torch.nonzero(~matching.any(0)).flatten().tolist():
                matching[cost[:, gt_idx].argmin(), gt_idx] = True
            matching = self._keep_cheapest(matching, cost)

        proposal_idx = torch.nonzero(matching.any(1)).flatten()  # (M,)
        gt_idx = matching[proposal_idx].float().argmax(1)  # (M,)
        return proposal_idx, gt_idx

    @staticmethod
    def _keep_cheapest(matching: Tensor, cost: Tensor) -> Tensor:
        """A proposal matched to several gts keeps only its cheapest one."""
        multiple = matching.sum(1) > 1  # (N,)
        if multiple.any():
            cheapest = cost[multiple].argmin(1)
            matching[multiple] = False
            matching[torch.nonzero(multiple).flatten(), cheapest] = True
        return matching


def _num_boxes(targets: list[dict[str, Tensor]], device: torch.device) -> float:
    """Ground-truth boxes in the batch, averaged over processes when distributed, at least 1."""
    num = torch.tensor(float(sum(t["labels"].numel() for t in targets)), device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(num)
        num = num / dist.get_world_size()
    return max(num.item(), 1.0)


def heatmap_mse_loss(heatmap_logits: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between sigmoid(logits) and the target maps, both (B, K, H, W) in [0, 1].

    On probabilities, not raw logits as the PROPS authors did: on logits the target's zero background asks for
    logit 0 (p = 0.5) and dominates the loss.
    """
    return F.mse_loss(heatmap_logits.float().sigmoid(), target)


def heatmap_focal_loss(heatmap_logits: Tensor, target: Tensor, num_objects: float, alpha: float = 2.0,
                       beta: float = 4.0) -> Tensor:
    """CenterNet penalty-reduced pixel focal loss, summed and divided by the number of objects.

    Cells where the target is exactly 1 (each object's peak) are positives: -(1 - p)^alpha log p; the rest
    are negatives down-weighted near centres: -(1 - y)^beta p^alpha log(1 - p).
    """
    logits = heatmap_logits.float()
    prob = logits.sigmoid()
    positive = target.eq(1.0)
    pos_loss = (1 - prob) ** alpha * F.logsigmoid(logits)  # log p, stable for large |logits|
    neg_loss = (1 - target) ** beta * prob ** alpha * F.logsigmoid(-logits)  # log(1 - p)
    loss = -torch.where(positive, pos_loss, neg_loss).sum()
    return loss / max(num_objects, 1.0)


class SetCriterion(nn.Module):
    """Focal classification, L1 and GIoU box losses on every head stage, plus the heatmap loss.

    ``forward`` returns unweighted terms; ``total_loss`` applies ``weight_dict``. Classification, L1 and GIoU
    are summed over matched proposals and divided by the number of ground-truth boxes in the batch (at least 1,
    averaged over processes when torch.distributed is initialised), as the reference.
    """

    def __init__(self, cfg: DiffDetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.matcher = DynamicKMatcher.from_config(cfg)
        stage_weights = {"loss_ce": cfg.class_weight, "loss_bbox": cfg.l1_weight, "loss_giou": cfg.giou_weight}
        self.weight_dict: dict[str, float] = dict(stage_weights)
        if cfg.deep_supervision:
            for stage in range(cfg.num_stages - 1):
                self.weight_dict.update({f"{k}_{stage}": w for k, w in stage_weights.items()})
        if cfg.use_heatmap:
            self.weight_dict["loss_heatmap"] = cfg.heatmap_weight

    def forward(self, outputs: dict[str, Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Unweighted loss terms, keyed as ``weight_dict``; ``loss_heatmap`` when cfg.use_heatmap and the outputs
        carry ``heatmap_logits``."""
        pred_logits, pred_boxes = outputs["pred_logits"], outputs["pred_boxes"]
        if pred_logits.ndim != 4 or pred_logits.shape[-1] != self.num_classes:
            raise ValueError(f"pred_logits must be (L, B, N, {self.num_classes}), got {tuple(pred_logits.shape)}")
        if pred_boxes.shape != (*pred_logits.shape[:3], 4):
            raise ValueError(f"pred_boxes must be {(*pred_logits.shape[:3], 4)}, got {tuple(pred_boxes.shape)}")
        if len(targets) != pred_logits.shape[1]:
            raise ValueError(f"got {len(targets)} targets for a batch of {pred_logits.shape[1]}")
        num_boxes = _num_boxes(targets, pred_logits.device)
        num_stages = pred_logits.shape[0]

        losses: dict[str, Tensor] = {}
        stages = range(num_stages) if self.cfg.deep_supervision else [num_stages - 1]
        for stage in stages:
            suffix = "" if stage == num_stages - 1 else f"_{stage}"
            indices = self.matcher(pred_logits[stage], pred_boxes[stage], targets)
            stage_losses = self.stage_losses(pred_logits[stage], pred_boxes[stage], targets, indices, num_boxes)
            losses.update({k + suffix: v for k, v in stage_losses.items()})
        if self.cfg.use_heatmap and "heatmap_logits" in outputs:
            losses["loss_heatmap"] = self.heatmap_loss(outputs["heatmap_logits"], int(outputs["heatmap_stride"]),
                                                       targets)
        return losses

    def total_loss(self, losses: dict[str, Tensor]) -> Tensor:
        """Weighted sum of ``forward``'s terms with ``weight_dict``."""
        return total_loss(losses, self.weight_dict)

    def stage_losses(self, pred_logits: Tensor, pred_boxes_xyxy: Tensor, targets: list[dict[str, Tensor]],
                     indices: list[tuple[Tensor, Tensor]], num_boxes: float) -> dict[str, Tensor]:
        """loss_ce, loss_bbox, loss_giou of one stage: pred_logits (B, N, K), pred_boxes_xyxy (B, N, 4)."""
        target_classes = torch.zeros_like(pred_logits)  # (B, N, K) one-hot of matched proposals
        src_boxes, tgt_boxes, whwh = [], [], []
        for b, ((prop_idx, gt_idx), target) in enumerate(zip(indices, targets)):
            if prop_idx.numel() == 0:
                continue
            target_classes[b, prop_idx, target["labels"][gt_idx].long()] = 1.0
            src_boxes.append(pred_boxes_xyxy[b, prop_idx])  # (M, 4)
            tgt_boxes.append(target["boxes_xyxy"][gt_idx].to(pred_boxes_xyxy))  # (M, 4)
            whwh.append(_image_whwh(target["image_size_hw"]).to(pred_boxes_xyxy).expand(prop_idx.numel(), 4))

        loss_ce = sigmoid_focal_loss(pred_logits.float(), target_classes, alpha=self.cfg.focal_alpha,
                                     gamma=self.cfg.focal_gamma, reduction="sum") / num_boxes
        if not src_boxes:
            zero = pred_boxes_xyxy.sum() * 0.0  # keeps the graph connected for DDP
            return {"loss_ce": loss_ce, "loss_bbox": zero, "loss_giou": zero}
        src = torch.cat(src_boxes).float()  # (M, 4)
        tgt = torch.cat(tgt_boxes).float()  # (M, 4)
        scale = torch.cat(whwh).float()  # (M, 4)
        loss_bbox = F.l1_loss(src / scale, tgt / scale, reduction="sum") / num_boxes
        loss_giou = (1 - torch.diag(generalized_box_iou(src, tgt))).sum() / num_boxes
        return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}

    def heatmap_loss(self, heatmap_logits: Tensor, stride: int, targets: list[dict[str, Tensor]]) -> Tensor:
        """Heatmap term for heatmap_logits (B, K, Hh, Wh) on a grid of ``stride`` pixels per cell."""
        if heatmap_logits.ndim != 4 or heatmap_logits.shape[1] != self.num_classes:
            raise ValueError(f"heatmap_logits must be (B, {self.num_classes}, H, W), got {tuple(heatmap_logits.shape)}")
        if stride < 1:
            raise ValueError(f"heatmap_stride must be >= 1, got {stride}")
        device = heatmap_logits.device
        target = synthesize_heatmaps(
            [t["boxes_xyxy"].to(device) for t in targets], [t["labels"].to(device) for t in targets],
            self.num_classes, tuple(heatmap_logits.shape[-2:]), stride, self.cfg.min_radius, self.cfg.rho,
        )  # (B, K, Hh, Wh)
        if self.cfg.heatmap_loss == "mse":
            return heatmap_mse_loss(heatmap_logits, target)
        return heatmap_focal_loss(heatmap_logits, target, _num_boxes(targets, device))


def total_loss(losses: dict[str, Tensor], weight_dict: dict[str, float]) -> Tensor:
    """Weighted sum of the terms named in ``weight_dict``; an unknown term raises ValueError."""
    unknown = sorted(set(losses) - set(weight_dict))
    if unknown:
        raise ValueError(f"loss terms without a weight: {unknown}")
    return sum(weight_dict[k] * v for k, v in losses.items())
