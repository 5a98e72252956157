"""One frozen configuration dataclass for the whole project, with named presets.

Every number the model, the sampler, the losses and the trainer read lives here, with the reason for its
value. Checkpoints store the config as JSON so that a model rebuilds exactly (``to_dict`` / ``from_dict``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Callable, NoReturn

# PROPS Detection class order (ids 0-9), as published.
PROPS_CLASSES: tuple[str, ...] = (
    "master_chef_can", "cracker_box", "sugar_box", "tomato_soup_can", "mustard_bottle",
    "tuna_fish_can", "gelatin_box", "potted_meat_can", "mug", "large_marker",
)

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)

@dataclass(frozen=True)
class Range:
    """An interval of allowed numbers (each bound closed or open, None = unbounded); non-finite values never fit."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "finite"


POSITIVE = Range(0, None, low_open=True)
AT_LEAST_ONE = Range(1)
NON_NEGATIVE = Range(0)
UNIT = Range(0, 1)
FINITE = Range()

# The allowed values of every numeric field (each element of a tuple field); checked when a config is built and by
# the command line's argparse types, so `--lr -1` is a one-line argparse error, never a crash later.
FIELD_RANGES: dict[str, Range] = {
    "frozen_stages": Range(0, 5), "fpn_channels": AT_LEAST_ONE, "pixel_mean": FINITE, "pixel_std": POSITIVE,
    "size_divisibility": AT_LEAST_ONE, "num_proposals": Range(1, 10000), "num_stages": Range(1, 100),
    "hidden_dim": AT_LEAST_ONE, "num_heads": AT_LEAST_ONE, "dim_feedforward": AT_LEAST_ONE,
    "dim_dynamic": AT_LEAST_ONE, "pooler_resolution": Range(1, 64), "sampling_ratio": Range(0, 16),
    "num_cls_layers": Range(0, 16), "num_reg_layers": Range(0, 16), "dropout": Range(0, 1, high_open=True),
    "prior_prob": Range(0, 1, low_open=True, high_open=True), "bbox_weights": POSITIVE,
    "timesteps": Range(1, 100000), "cosine_s": Range(0, 1), "snr_scale": POSITIVE, "sampling_steps": AT_LEAST_ONE,
    "eta": UNIT, "renewal_threshold": UNIT, "nms_iou": UNIT, "score_threshold": UNIT, "max_detections": AT_LEAST_ONE,
    "heatmap_level": Range(2, 5), "heatmap_channels": AT_LEAST_ONE, "min_radius": NON_NEGATIVE, "rho": NON_NEGATIVE,
    "class_weight": NON_NEGATIVE, "l1_weight": NON_NEGATIVE, "giou_weight": NON_NEGATIVE, "focal_alpha": UNIT,
    "focal_gamma": NON_NEGATIVE, "ota_k": AT_LEAST_ONE, "heatmap_weight": NON_NEGATIVE, "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE, "batch_size": AT_LEAST_ONE, "max_iter": AT_LEAST_ONE, "lr_steps": NON_NEGATIVE,
    "warmup_iters": NON_NEGATIVE, "warmup_factor": UNIT, "clip_grad_norm": NON_NEGATIVE,
    "min_size_train": AT_LEAST_ONE, "max_size_train": AT_LEAST_ONE, "crop_prob": UNIT, "crop_resize": AT_LEAST_ONE,
    "crop_size": AT_LEAST_ONE, "min_size_test": AT_LEAST_ONE, "max_size_test": AT_LEAST_ONE,
    "eval_every": NON_NEGATIVE, "checkpoint_every": AT_LEAST_ONE,
}


def _number_type(kind: type, allowed: Range, what: str = "") -> Callable[[str], Any]:
    """An argparse ``type=`` that parses ``kind`` and checks ``allowed``: a bad value is argparse's one-line error."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not allowed.contains(value):
            raise argparse.ArgumentTypeError(f"must be {allowed.describe()}{what}, got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def int_range(low: int | None = None, high: int | None = None) -> Callable[[str], Any]:
    """argparse type: an integer in [low, high] (None = unbounded)."""
    return _number_type(int, Range(low, high))


def float_range(low: float | None = None, high: float | None = None, low_open: bool = False) -> Callable[[str], Any]:
    """argparse type: a finite number in [low, high] ((low, high] when ``low_open``)."""
    return _number_type(float, Range(low, high, low_open=low_open))


positive_int = int_range(1)
nonnegative_int = int_range(0)
unit_float = float_range(0.0, 1.0)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: argument --lr: must be > 0, got -1 (see --help)``, exit 2.
    (The stock parser prints the whole usage first, which for ``train`` is dozens of lines.)"""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_lite0")
HEATMAP_LOSSES = ("mse", "focal")


@dataclass(frozen=True)
class DiffDetConfig:
    # backbone
    backbone: str = "resnet50"                # torchvision ResNet layout so detectron2 R-50 weights map 1:1
    pretrained: str = ""                      # optional local path to ImageNet weights; never downloaded
    frozen_stages: int = 1                    # stem + res2 frozen, as the reference recipe
    fpn_channels: int = 256                   # FPN width; the head's hidden size must match it
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # ImageNet RGB statistics, 0-255 scale
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    size_divisibility: int = 32               # P5 has stride 32: pad so every level tiles the image exactly

    # head
    class_names: tuple[str, ...] = PROPS_CLASSES  # stored in checkpoints so labels travel with weights
    num_proposals: int = 200                  # the PROPS paper trains with 200 boxes (COCO uses 500)
    num_stages: int = 6                       # iterative refinement stages, each deep-supervised
    hidden_dim: int = 256                     # per-box feature size D
    num_heads: int = 8                        # self-attention heads over the boxes of one image
    dim_feedforward: int = 2048               # FFN width after the dynamic interaction
    dim_dynamic: int = 64                     # rank of the per-box dynamic convolution
    pooler_resolution: int = 7                # RoIAlign output side
    sampling_ratio: int = 2                   # RoIAlign samples per bin side
    num_cls_layers: int = 1                   # [Linear, LN, ReLU] blocks before the class logits
    num_reg_layers: int = 3                   # [Linear, LN, ReLU] blocks before the box deltas
    dropout: float = 0.0                      # the reference trains with 0.0
    prior_prob: float = 0.01                  # focal-loss prior: class bias -log((1-p)/p) keeps early logits low
    bbox_weights: tuple[float, float, float, float] = (2.0, 2.0, 1.0, 1.0)  # delta scaling (dx, dy, dw, dh)

    # diffusion
    timesteps: int = 1000                     # T of the cosine schedule
    cosine_s: float = 0.008                   # offset of the cosine schedule (Nichol & Dhariwal)
    snr_scale: float = 2.0                    # box signal scale; DiffusionDet's best signal-to-noise setting
    sampling_steps: int = 1                   # DDIM steps S at inference; 1 is the reference's default
    eta: float = 1.0                          # DDIM stochasticity; the reference samples with eta 1
    box_renewal: bool = True                  # replace low-score boxes by fresh noise between steps
    renewal_threshold: float = 0.5            # best class score below this -> renewed
    use_ensemble: bool = True                 # pool every step's boxes, then class-wise NMS
    nms_iou: float = 0.5                      # class-wise NMS IoU for ensembling and post-processing
    score_threshold: float = 0.0              # detections below this score are dropped (0 keeps all for AP)
    max_detections: int = 100                 # COCO evaluates at most 100 detections per image

    # heatmap
    use_heatmap: bool = True                  # the PROPS paper's auxiliary centre heatmap head
    heatmap_level: int = 2                    # FPN level read by the heatmap head; P2 (stride 4), not P5 as the authors
    heatmap_channels: int = 64                # conv3x3 width of the heatmap head
    min_radius: float = 4.0                   # gaussian radius floor in heatmap cells (paper: 4)
    rho: float = 0.5                          # radius = max(min_radius, min(w, h) * rho) (paper: 0.5)

    # loss
    class_weight: float = 2.0                 # sigmoid focal loss weight
    l1_weight: float = 5.0                    # L1 on normalised xyxy
    giou_weight: float = 2.0                  # generalized IoU loss
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    ota_k: int = 5                            # dynamic-k uses the sum of the top-5 IoUs
    deep_supervision: bool = True             # losses on every stage, each matched on its own
    heatmap_loss: str = "mse"                 # "mse" (paper, on sigmoid maps) or "focal" (CenterNet-style)
    heatmap_weight: float = 1.5               # the authors' weight

    # training
    lr: float = 2.5e-5                        # AdamW base learning rate of the reference
    weight_decay: float = 1e-4
    batch_size: int = 16
    max_iter: int = 15000                     # the PROPS paper trains 15k iterations
    lr_steps: tuple[int, ...] = (11000, 14000)  # step decay x0.1 at these iterations
    warmup_iters: int = 1000                  # linear warm-up from warmup_factor
    warmup_factor: float = 0.01
    clip_grad_norm: float = 1.0               # full-model L2 gradient clip
    min_size_train: tuple[int, ...] = (480,)  # short-side choices for multi-scale training
    max_size_train: int = 640
    crop_prob: float = 0.5                    # probability of resize-then-random-crop augmentation
    crop_resize: tuple[int, ...] = (400, 500, 600)  # short sides before the crop (reference recipe)
    crop_size: tuple[int, int] = (384, 600)   # min/max crop side in pixels
    photometric_prob: float = 0.0             # p of each photo-like augmentation (colour, blur, low resolution,
                                              # JPEG): renders -> webcam photos; 0 is the reference recipe
    min_size_test: int = 480                  # PROPS images are 640x480: test at native size
    max_size_test: int = 640
    eval_every: int = 1000                    # the paper evaluates every 1k iterations
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.heatmap_loss not in HEATMAP_LOSSES:
            raise ValueError(f"heatmap_loss must be one of {HEATMAP_LOSSES}, got {self.heatmap_loss!r}")
        if self.heatmap_level not in (2, 3, 4, 5):
            raise ValueError(f"heatmap_level must be an FPN level in 2..5, got {self.heatmap_level}")
        if self.hidden_dim != self.fpn_channels:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must equal fpn_channels ({self.fpn_channels})")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}")
        if not self.class_names:
            raise ValueError("class_names must not be empty")
        for name, allowed in FIELD_RANGES.items():
            value = getattr(self, name)
            for v in (value if isinstance(value, tuple) else (value,)):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not allowed.contains(v):
                    raise ValueError(f"{name} must be {allowed.describe()}"
                                     f"{' (each value)' if isinstance(value, tuple) else ''}, got {value!r}")
        if self.sampling_steps > self.timesteps:
            raise ValueError(f"sampling_steps ({self.sampling_steps}) must be <= timesteps ({self.timesteps})")
        if len(self.crop_size) != 2 or self.crop_size[0] > self.crop_size[1]:
            raise ValueError(f"crop_size must be (min, max) with min <= max, got {self.crop_size}")
        for name in ("pixel_mean", "pixel_std"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"{name} must have 3 values (R, G, B), got {getattr(self, name)}")
        if len(self.bbox_weights) != 4:
            raise ValueError(f"bbox_weights must have 4 values, got {self.bbox_weights}")
        if not all(isinstance(n, str) and n for n in self.class_names):
            raise ValueError(f"class_names must be non-empty strings, got {self.class_names}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be unique (classes are matched by name), got {self.class_names}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def replace(self, **changes: Any) -> "DiffDetConfig":
        """A copy with some fields changed; unknown names raise ValueError."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {unknown}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DiffDetConfig":
        """Rebuild from ``to_dict`` output; lists become tuples, unknown keys raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"config must be a JSON object, got {type(data).__name__}")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown config field(s): {unknown}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "DiffDetConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"config is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


# The paper's setting: ResNet-50 FPN, 10 PROPS classes, 200 proposals, heatmap on.
PROPS_R50 = DiffDetConfig()

# The reference COCO setting, so detectron2 DiffusionDet checkpoints load.
COCO_R50 = DiffDetConfig(
    class_names=COCO_CLASSES, num_proposals=500, use_heatmap=False,
    max_iter=450000, lr_steps=(350000, 420000),
    min_size_train=(480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800), max_size_train=1333,
    min_size_test=800, max_size_test=1333, eval_every=5000, checkpoint_every=5000,
)

# A small CPU setting: ImageNet-pretrained EfficientNet-Lite0 (the one pretrained backbone on the registry),
# narrow head, fewer stages and boxes, 384-pixel short side. Used by tests and by the shipped demo model.
TINY = DiffDetConfig(
    # frozen_stages=3: only the stride-32 blocks of the trunk train; on 2 CPU cores this made a training step
    # 2.4x faster (depthwise-conv backward dominates), measured at 512x384, batch 4.
    backbone="efficientnet_lite0", frozen_stages=3, fpn_channels=128, hidden_dim=128, num_heads=4,
    dim_feedforward=512, dim_dynamic=16, num_stages=4, num_proposals=100, heatmap_channels=32,
    lr=1e-4, batch_size=4, max_iter=6000, lr_steps=(4500, 5500), warmup_iters=200,
    min_size_train=(320, 352, 384, 416), max_size_train=560, crop_resize=(320, 352, 384), crop_size=(256, 384),
    min_size_test=384, max_size_test=512, eval_every=500, checkpoint_every=250, photometric_prob=0.5,
)

PRESETS: dict[str, DiffDetConfig] = {"props_r50": PROPS_R50, "coco_r50": COCO_R50, "tiny": TINY}


def get_preset(name: str, **overrides: Any) -> DiffDetConfig:
    """A named preset with optional field overrides; raises ValueError for an unknown name."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def add_config_arguments(parser: "argparse.ArgumentParser") -> None:
    """One ``--field-name`` option per config field (None default = keep the preset's value); numeric fields are
    range-checked by argparse (``FIELD_RANGES``), so a bad value is a one-line usage error."""
    group = parser.add_argument_group("config fields (override the preset)")
    for f in dataclasses.fields(DiffDetConfig):
        default = getattr(PROPS_R50, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            group.add_argument(flag, dest=f"cfg_{f.name}", type=_parse_bool, default=None, metavar="BOOL")
            continue
        kind = (type(default[0]) if default else int) if isinstance(default, tuple) else type(default)
        if f.name in FIELD_RANGES:
            kind = _number_type(kind, FIELD_RANGES[f.name])
        nargs = "+" if isinstance(default, tuple) else None
        group.add_argument(flag, dest=f"cfg_{f.name}", type=kind, nargs=nargs, default=None)


def config_from_arguments(base: DiffDetConfig, args: "argparse.Namespace") -> DiffDetConfig:
    """The preset with every ``--field-name`` given on the command line applied."""
    changes = {f.name: getattr(args, f"cfg_{f.name}") for f in dataclasses.fields(DiffDetConfig)
               if getattr(args, f"cfg_{f.name}", None) is not None}
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    return base.replace(**changes) if changes else base


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
