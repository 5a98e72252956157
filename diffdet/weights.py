"""Checkpoints: safetensors with the config and class names beside the tensors; the detectron2 converter.

Nothing here unpickles arbitrary objects: safetensors holds raw tensors only, and reference ``.pth`` files are
read with ``torch.load(weights_only=True)``, which refuses pickled code.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from diffdet.config import PRESETS, DiffDetConfig, get_preset
from diffdet.model import DiffusionDet

FORMAT = "diffdet-explorer/1"


def non_finite_tensors(state: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors of a state dict holding NaN or infinite values (empty when all finite)."""
    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_checkpoint(model: DiffusionDet, path: str | Path, dtype: torch.dtype | None = None,
                    extra: dict[str, str] | None = None) -> None:
    """Write weights (optionally cast, e.g. float16 to halve the file) with config JSON in the metadata.

    Raises:
        ValueError (nothing written) when a tensor holds NaN or infinite values, or would after the cast (a value
        beyond float16's range).
    """
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in model.state_dict().items()}
    bad = non_finite_tensors(state)
    if bad:
        raise ValueError(f"refusing to write {path}: {len(bad)} tensor(s) hold NaN or infinite values, e.g. "
                         f"{bad[:5]} (a diverged model)")
    metadata = {"format": FORMAT, "config": model.cfg.to_json(), "class_names": json.dumps(list(model.cfg.class_names))}
    metadata.update(extra or {})
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file; ValueError if it is not one."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc


def check_state_dict(model: DiffusionDet, state: dict[str, Tensor], source: str) -> None:
    """Raise ValueError listing missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {missing[:5]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:5]}")
    if mis_shaped:
        problems.append(f"{len(mis_shaped)} mis-shaped tensor(s), e.g. {mis_shaped[:5]}")
    if problems:
        raise ValueError(f"checkpoint {source} does not fit the model: " + "; ".join(problems))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> DiffusionDet:
    """Rebuild the model from the stored config and load its weights (cast back to float32), in eval mode.

    Raises:
        ValueError: not a diffdet safetensors file, keys or shapes that do not fit the config, or non-finite tensors.
    """
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise ValueError(f"{path} is not a diffdet checkpoint (no '{FORMAT}' config in its metadata)")
    cfg = DiffDetConfig.from_json(meta["config"])
    model = DiffusionDet(cfg)
    state = load_file(str(path))
    check_state_dict(model, state, str(path))
    bad = non_finite_tensors(state)
    if bad:
        raise ValueError(f"checkpoint {path} is unusable: {len(bad)} tensor(s) hold NaN or infinite values, e.g. "
                         f"{bad[:5]} (it was written by a diverged training run)")
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model.to(device).eval()


# --- detectron2 reference checkpoints -------------------------------------------------------------------------

# Plain renames; the numbered ResNet blocks and FPN levels are handled in ``reference_key_to_ours``.
_RENAMES = [
    (r"^backbone\.bottom_up\.stem\.conv1\.weight$", "backbone.body.conv1.weight"),
    (r"^backbone\.bottom_up\.stem\.conv1\.norm\.(\w+)$", r"backbone.body.bn1.\1"),
    (r"^heatHead\.layer\.(\d)\.(weight|bias)$", r"heatmap_head.layer.\1.\2"),
    (r"^head\.(.*)$", r"head.\1"),
]


def reference_key_to_ours(key: str) -> str | None:
    """Map one detectron2 DiffusionDet key to this project's name; None for keys with no counterpart."""
    m = re.match(r"^backbone\.bottom_up\.res([2-5])\.(\d+)\.conv([1-3])\.(weight|norm\.(\w+))$", key)
    if m:
        layer, block, conv, _, norm = m.groups()
        base = f"backbone.body.layer{int(layer) - 1}.{block}"
        return f"{base}.conv{conv}.weight" if norm is None else f"{base}.bn{conv}.{norm}"
    m = re.match(r"^backbone\.bottom_up\.res([2-5])\.(\d+)\.shortcut\.(weight|norm\.(\w+))$", key)
    if m:
        layer, block, _, norm = m.groups()
        base = f"backbone.body.layer{int(layer) - 1}.{block}.downsample"
        return f"{base}.0.weight" if norm is None else f"{base}.1.{norm}"
    m = re.match(r"^backbone\.fpn_(lateral|output)([2-5])\.(weight|bias)$", key)
    if m:
        kind, level, param = m.groups()
        block = "inner_blocks" if kind == "lateral" else "layer_blocks"
        return f"backbone.fpn.{block}.{int(level) - 2}.0.{param}"
    for pattern, replacement in _RENAMES:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key)
    return None


# Buffers the reference stores that this project recomputes from the config.
_RECOMPUTED = re.compile(r"^(betas|alphas_cumprod|alphas_cumprod_prev|sqrt_alphas_cumprod|sqrt_one_minus_alphas_cumprod"
                         r"|log_one_minus_alphas_cumprod|sqrt_recip_alphas_cumprod|sqrt_recipm1_alphas_cumprod"
                         r"|posterior_\w+|pixel_mean|pixel_std)$")


def read_reference_state(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a detectron2 ``.pth`` (top-level "model"), read with weights_only (no code is run)."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling refusal is a bad input, reported as such
        raise ValueError(f"refusing {path}: it is not a plain tensor checkpoint ({type(exc).__name__}: {exc})") from exc
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{path} has no 'model' state dict")
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise ValueError(f"{path}: entries that are not tensors: {bad[:5]}")
    return state


def _default_preset(num_classes: int) -> str:
    """The ResNet preset whose class list has ``num_classes`` names (COCO 80, PROPS 10), else the COCO one (the
    reference's own defaults); its names are used only when the count matches."""
    for name in ("coco_r50", "props_r50"):
        if PRESETS[name].num_classes == num_classes:
            return name
    return "coco_r50"


def config_for_reference(state: dict[str, Tensor], preset: str | None = None,
                         class_names: list[str] | tuple[str, ...] | None = None, num_proposals: int | None = None,
                         min_size_test: int | None = None, max_size_test: int | None = None) -> DiffDetConfig:
    """The config of a detectron2 DiffusionDet checkpoint: what the tensors fix, then what the caller says.

    From the tensors: number of classes, backbone depth (res4 blocks), head stages, hidden size, heatmap head.
    Not in the tensors, so taken from ``preset`` (default: the ResNet preset with that many classes, else
    "coco_r50") unless given: ``num_proposals`` (the reference's config, e.g. 500 for COCO; a model trained with 300
    must be told so), the test sizes (``min_size_test`` short side, ``max_size_test`` long-side cap) and the class
    names. Names are never made up from the class count: they come from ``class_names`` or from a preset with
    exactly that many classes.

    Raises:
        ValueError: not a DiffusionDet checkpoint, unsupported depth, unknown preset, or no usable class names
            (count mismatch), with the counts in the message.
    """
    logits = state.get("head.head_series.0.class_logits.weight")
    if logits is None:
        raise ValueError("not a DiffusionDet checkpoint: head.head_series.0.class_logits.weight is missing")
    num_classes = logits.shape[0]
    preset = preset or _default_preset(num_classes)
    base = get_preset(preset)
    if class_names is not None:
        names = tuple(str(n) for n in class_names)
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names given for a checkpoint with {num_classes} classes")
        if len(set(names)) != len(names) or not all(n.strip() for n in names):
            raise ValueError(f"class names must be non-empty and distinct, got {list(names)}")
    elif base.num_classes == num_classes:
        names = base.class_names
    else:
        raise ValueError(f"the checkpoint has {num_classes} classes but preset {preset!r} names {base.num_classes}; "
                         f"give its class names in label order (class_names, or --class-names on the command line)")
    res4 = {int(m.group(1)) for k in state if (m := re.match(r"^backbone\.bottom_up\.res4\.(\d+)\.", k))}
    depth = {6: "resnet50", 23: "resnet101"}.get(len(res4))
    if depth is None:
        raise ValueError(f"unsupported backbone: res4 has {len(res4)} blocks (expected 6 for R-50 or 23 for R-101)")
    stages = len({int(m.group(1)) for k in state if (m := re.match(r"^head\.head_series\.(\d+)\.", k))})
    changes = {"num_proposals": num_proposals, "min_size_test": min_size_test, "max_size_test": max_size_test}
    return base.replace(class_names=names, backbone=depth, num_stages=stages,
                        use_heatmap=any(k.startswith("heatHead.") for k in state), hidden_dim=logits.shape[1],
                        fpn_channels=logits.shape[1], **{k: v for k, v in changes.items() if v is not None})


def convert_reference(path: str | Path, cfg: DiffDetConfig | None = None, **config_options: object) -> DiffusionDet:
    """Load a detectron2 DiffusionDet ``.pth`` into a model; unknown or mis-shaped keys raise ValueError.

    ``cfg`` fixes the config; otherwise ``config_for_reference(state, **config_options)`` builds it (``preset``,
    ``class_names``, ``num_proposals``, ``min_size_test``, ``max_size_test``).
    """
    state = read_reference_state(path)
    cfg = cfg or config_for_reference(state, **config_options)
    model = DiffusionDet(cfg)
    mapped, unknown = {}, []
    for key, value in state.items():
        if _RECOMPUTED.match(key) or key.endswith("num_batches_tracked"):
            continue
        ours = reference_key_to_ours(key)
        if ours is None:
            unknown.append(key)
        else:
            mapped[ours] = value.float()
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} key(s) with no counterpart in this model, e.g. {unknown[:5]}")
    check_state_dict(model, mapped, str(path))
    model.load_state_dict(mapped)
    return model.eval()


def _read_class_names(values: list[str] | None) -> list[str] | None:
    """``--class-names``: the names themselves, or one file (a JSON list, or one name a line)."""
    if not values or len(values) != 1 or not Path(values[0]).is_file():
        return values
    text = Path(values[0]).read_text(encoding="utf-8")
    if values[0].endswith(".json"):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{values[0]} is not valid JSON: {exc}") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{values[0]} must hold a JSON list of class names")
        return names
    return [line.strip() for line in text.splitlines() if line.strip()]


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffdet convert", description=__doc__.splitlines()[0],
        epilog="The proposal count, the test size and the class names are not in a checkpoint's tensors: they come "
               "from the preset unless given here. The config written is printed.")
    parser.add_argument("input", help="detectron2 DiffusionDet checkpoint (.pth)")
    parser.add_argument("output", help="output .safetensors")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="base config (default: coco_r50 for 80 classes, props_r50 for 10, else coco_r50)")
    parser.add_argument("--num-proposals", type=int, default=None,
                        help="proposals the model was trained with (the reference config's NUM_PROPOSALS)")
    parser.add_argument("--min-size-test", type=int, default=None, help="test short side (INPUT.MIN_SIZE_TEST)")
    parser.add_argument("--max-size-test", type=int, default=None, help="test long-side cap (INPUT.MAX_SIZE_TEST)")
    parser.add_argument("--class-names", nargs="+", default=None, metavar="NAME",
                        help="class names in label order, or one .json/.txt file of them; required when the "
                             "class count matches no preset")
    parser.add_argument("--fp16", action="store_true", help="store float16 tensors (half the size)")
    args = parser.parse_args(argv)
    try:
        for flag in ("num_proposals", "min_size_test", "max_size_test"):
            if getattr(args, flag) is not None and getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
        model = convert_reference(args.input, preset=args.preset, class_names=_read_class_names(args.class_names),
                                  num_proposals=args.num_proposals, min_size_test=args.min_size_test,
                                  max_size_test=args.max_size_test)
    except (ValueError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    save_checkpoint(model, args.output, dtype=torch.float16 if args.fp16 else None,
                    extra={"converted_from": Path(args.input).name})
    cfg = model.cfg
    print(f"wrote {args.output}: {cfg.backbone}, {cfg.num_classes} classes, {cfg.num_stages} stages, "
          f"{cfg.num_proposals} proposals, test size {cfg.min_size_test}/{cfg.max_size_test}, "
          f"heatmap {'on' if cfg.use_heatmap else 'off'}")
    print("config written:")
    for key, value in cfg.to_dict().items():
        print(f"  {key}: {json.dumps(value)}")
    return 0
