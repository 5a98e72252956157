"""Training: ``python -m diffdet train --config PRESET --data DIR --out RUN_DIR [...]``.

AdamW with linear warm-up and step decay, full-model gradient clipping, AMP on CUDA, a JSON-lines metrics file
(loss terms and lr at every log interval, the full AP dict at every evaluation), atomic checkpoints and exact
resumption (model, optimiser, scheduler, RNG, data position). Multi-GPU / multi-node through torchrun
(DistributedDataParallel; gloo on CPU, nccl on CUDA); rank 0 logs, evaluates and writes checkpoints.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from diffdet.boxes import cxcywh01_to_xyxy, image_whwh, xyxy_to_cxcywh01
from diffdet.config import (
    PRESETS, ArgumentParser, DiffDetConfig, add_config_arguments, config_from_arguments, get_preset, nonnegative_int,
    positive_int,
)
from diffdet.criterion import SetCriterion
from diffdet.data import DatasetSplit, DetectionDataset, _mix64, build_train_loader, load_split
from diffdet.diffusion import corrupt_boxes, pad_ground_truth
from diffdet.head import NonFiniteError
from diffdet.model import DiffusionDet, build_model
from diffdet.weights import check_state_dict, load_checkpoint, non_finite_tensors, read_metadata, save_checkpoint

logger = logging.getLogger("diffdet.train")
CHECKPOINT_NAME = "last.pt"
METRICS_NAME = "metrics.jsonl"


class TrainingStep(nn.Module):
    """One differentiable training pass as a single ``forward`` (what DistributedDataParallel wraps).

    Pads the ground truth of each image to P boxes, corrupts them at a random timestep (REFERENCE.md section 3)
    and runs backbone, heatmap head and the denoising head on the noisy boxes.
    """

    def __init__(self, model: DiffusionDet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: list[Tensor], targets: list[dict[str, Any]], generator: torch.Generator) -> dict[str, Any]:
        cfg = self.model.cfg
        batch, sizes_hw = self.model.preprocess(images)
        whwh = image_whwh(sizes_hw)  # (B, 4)
        padded = [pad_ground_truth(xyxy_to_cxcywh01(t["boxes_xyxy"], whwh[i].cpu()), cfg.num_proposals, generator)
                  for i, t in enumerate(targets)]
        x0 = torch.stack(padded).to(batch.device)  # (B, P, 4)
        t = torch.randint(0, cfg.timesteps, (len(images),), generator=generator).to(batch.device)  # (B,)
        noise = torch.randn(x0.shape, generator=generator).to(batch.device)
        noisy = corrupt_boxes(x0, t, noise, self.model.alphas_cumprod, cfg.snr_scale)  # (B, P, 4) cxcywh
        features = self.model.features(batch)
        outputs: dict[str, Any] = self.model(features, cxcywh01_to_xyxy(noisy, whwh[:, None]), t)
        heat = self.model.heatmap_logits(features)
        if heat is not None:
            outputs["heatmap_logits"] = heat
            outputs["heatmap_stride"] = self.model.heatmap_stride
        return outputs


class TrainingDiverged(RuntimeError):
    """Training produced non-finite values; ``str()`` is one line: iteration, cause, each loss term, last checkpoint.

    Attributes: iteration (1-based, the update that failed), losses ({term: value}), last_good (iteration of the
    last checkpoint written, which holds finite weights, or None).
    """

    def __init__(self, iteration: int, cause: str, losses: dict[str, float], last_good: int | None,
                 losses_at: int | None = None) -> None:
        terms = ", ".join(f"{k}={v:.4g}" for k, v in losses.items())
        if terms and losses_at is not None and losses_at != iteration:
            terms = f"losses at iteration {losses_at}: {terms}"
        kept = (f"the last good checkpoint (iteration {last_good}) is kept" if last_good is not None
                else "no checkpoint had been written yet")
        super().__init__(f"training diverged at iteration {iteration}: {cause}"
                         + (f" ({terms})" if terms else "") + f"; {kept}. Lower --lr or raise --warmup-iters.")
        self.iteration, self.losses, self.last_good = iteration, losses, last_good


def checkpoint_class_names(path: str | Path) -> tuple[str, ...]:
    """The class names stored in a safetensors checkpoint (never guessed from its class count)."""
    meta = read_metadata(path)
    try:
        return tuple(DiffDetConfig.from_json(meta["config"]).class_names)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path} has no class names in its metadata ({exc})") from None


def training_class_names(data: str, preset_names: tuple[str, ...]) -> tuple[str, ...]:
    """Classes of a run on COCO-format data ``JSON_PATH:IMAGE_DIR``: the preset's, in the preset's order, when they
    include every category name of the file (a PROPS file in COCO form trains a PROPS-ordered model); otherwise the
    file's names in ascending category-id order."""
    json_path = data.partition(":")[0]
    try:
        categories = json.loads(Path(json_path).read_text())["categories"]
        names = [str(c["name"]) for c in sorted(categories, key=lambda c: c["id"])]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read the categories of {json_path}: {exc}") from None
    return tuple(preset_names) if set(names) <= set(preset_names) else tuple(names)


def lr_factor(iteration: int, cfg: DiffDetConfig) -> float:
    """Linear warm-up from cfg.warmup_factor over cfg.warmup_iters, then x0.1 at each of cfg.lr_steps."""
    warm = 1.0
    if iteration < cfg.warmup_iters:
        alpha = iteration / cfg.warmup_iters
        warm = cfg.warmup_factor * (1 - alpha) + alpha
    return warm * 0.1 ** sum(iteration >= s for s in cfg.lr_steps)


def build_optimizer(model: nn.Module, cfg: DiffDetConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@dataclass
class TrainOptions:
    data: str
    out: str
    data_format: str = "props"
    val_data: str | None = None          # COCO: "json:image_dir"; PROPS: defaults to --data's val split
    seed: int = 0
    resume: bool = False
    init: str | None = None              # start from a safetensors checkpoint's weights
    pretrained: bool = True              # ImageNet trunk weights from a local file when no --init
    workers: int = 2
    device: str | None = None
    amp: bool = False
    log_every: int = 20
    eval_images: int = 0                 # 0 = the whole validation split
    eval_steps: int = 1
    skip_bad: bool = False
    cache_dir: str | None = None
    verify_md5: bool = True
    stop_after: int | None = None        # leave the loop after this iteration without saving (simulates a kill)


def _split_options(options: TrainOptions) -> dict[str, Any]:
    return {"cache_dir": options.cache_dir, "verify_md5": options.verify_md5, "skip_bad": options.skip_bad}


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without it."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _truncate_metrics(path: Path, iteration: int) -> None:
    """On resume, drop rows written after the checkpoint so the file reads as one uninterrupted run."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["iter"] <= iteration]
    path.write_text("".join(r + "\n" for r in rows))


def train(cfg: DiffDetConfig, options: TrainOptions) -> Path:
    """Train ``cfg`` on ``options.data``; returns the run folder. Safe to call again with resume=True."""
    rank, world, local_rank = _distributed()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if options.device:
        device = torch.device(options.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    out = Path(options.out)
    ckpt_path, metrics_path = out / CHECKPOINT_NAME, out / METRICS_NAME
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    start_iter = 0
    state = None
    if options.resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        cfg = DiffDetConfig.from_json(state["config"])  # its class names included: labels mean what they meant
        start_iter = int(state["iteration"])
    elif options.init:
        cfg = cfg.replace(class_names=checkpoint_class_names(options.init))
    elif options.data_format == "coco":
        cfg = cfg.replace(class_names=training_class_names(options.data, cfg.class_names))
    # Both formats map the data's class names onto cfg.class_names by name; unknown names are refused.
    train_split = load_split(options.data, options.data_format, "train", cfg.class_names, **_split_options(options))
    if train_split.num_skipped:
        logger.warning("skipped %d bad training entries (first: %s)", train_split.num_skipped, train_split.skipped[0])
    val_split = None
    if cfg.eval_every > 0 and rank == 0:
        val_source = options.val_data or options.data
        val_split = load_split(val_source, options.data_format, "val", cfg.class_names, **_split_options(options))
        if options.eval_images:
            val_split.samples = val_split.samples[: options.eval_images]

    torch.manual_seed(options.seed)  # the same seed builds the same initial weights on every rank
    model = build_model(cfg, pretrained=options.pretrained and state is None and options.init is None)
    if options.init and state is None:
        init_model = load_checkpoint(options.init)
        check_state_dict(model, init_model.state_dict(), options.init)
        model.load_state_dict(init_model.state_dict())
    model.to(device).train()
    step_module: nn.Module = TrainingStep(model)
    if world > 1:
        step_module = DistributedDataParallel(step_module, device_ids=[local_rank] if device.type == "cuda" else None,
                                              find_unused_parameters=True)
    criterion = SetCriterion(cfg)
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg))
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if rank == 0:
            _truncate_metrics(metrics_path, start_iter)
        logger.info("resumed from %s at iteration %d", ckpt_path, start_iter)
    if rank == 0:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))

    per_rank_batch = max(1, cfg.batch_size // world)
    dataset = DetectionDataset(train_split.samples, cfg.class_names, train=True, cfg=cfg)
    loader = build_train_loader(dataset, per_rank_batch, options.seed, start_iter=start_iter,
                                num_workers=options.workers, rank=rank, world_size=world)
    use_amp = options.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported())

    from tqdm import tqdm

    progress = tqdm(total=cfg.max_iter, initial=start_iter, desc="train", unit="it", disable=rank != 0, dynamic_ncols=True)
    iteration = start_iter
    window_start, window_iters = time.perf_counter(), 0
    sums: dict[str, float] = {}
    last_good = start_iter if state is not None else None  # iteration of the last checkpoint written, if any
    last_losses: dict[str, float] = {}  # each loss term of the last finished iteration, for the divergence message
    try:
        for images, targets in loader:
            if iteration >= cfg.max_iter or (options.stop_after is not None and iteration >= options.stop_after):
                break
            # Corruption noise comes from a generator keyed by (seed, iteration, rank): resumption replays it exactly.
            generator = torch.Generator().manual_seed(_mix64(options.seed, iteration, rank, 7))
            targets = [{**t, "boxes_xyxy": t["boxes_xyxy"].to(device), "labels": t["labels"].to(device),
                        "image_size_hw": t["image_size_hw"].to(device)} for t in targets]
            try:
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    outputs = step_module(images, targets, generator)
            except NonFiniteError as exc:
                raise TrainingDiverged(iteration + 1, str(exc), last_losses, last_good, iteration) from None
            outputs = {k: (v.float() if isinstance(v, Tensor) else v) for k, v in outputs.items()}
            losses = criterion(outputs, targets)
            loss = criterion.total_loss(losses)
            if not torch.isfinite(loss):
                raise TrainingDiverged(iteration + 1, "the loss is not finite", {"loss_total": float(loss.detach()),
                                       **{k: float(v.detach()) for k, v in losses.items()}}, last_good)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.clip_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            iteration += 1
            window_iters += 1
            last_losses = {"loss_total": float(loss.detach()), **{k: float(v.detach()) for k, v in losses.items()}}
            for k, v in last_losses.items():
                sums[k] = sums.get(k, 0.0) + v
            if rank == 0:
                progress.update(1)
                if iteration % options.log_every == 0 or iteration == cfg.max_iter:
                    elapsed = time.perf_counter() - window_start
                    row = {"iter": iteration, **{k: v / window_iters for k, v in sums.items()},
                           "lr": optimizer.param_groups[0]["lr"], "it_s": window_iters / max(elapsed, 1e-9),
                           "img_s": window_iters * per_rank_batch * world / max(elapsed, 1e-9)}
                    _append_jsonl(metrics_path, row)
                    progress.set_postfix(loss=f"{row['loss_total']:.3f}", ce=f"{row.get('loss_ce', 0):.3f}",
                                         hm=f"{row.get('loss_heatmap', 0):.4f}", it_s=f"{row['it_s']:.2f}")
                    sums, window_start, window_iters = {}, time.perf_counter(), 0
            checkpoint_now = iteration % cfg.checkpoint_every == 0 or iteration == cfg.max_iter
            eval_now = val_split is not None and (iteration % cfg.eval_every == 0 or iteration == cfg.max_iter)
            if checkpoint_now:
                bad = non_finite_tensors(model.state_dict())
                if bad:
                    raise TrainingDiverged(iteration, f"{len(bad)} weight tensor(s) became non-finite (e.g. {bad[:3]})",
                                           last_losses, last_good)
            if rank == 0 and checkpoint_now:
                _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                              "scheduler": scheduler.state_dict(), "iteration": iteration, "config": cfg.to_json(),
                              "torch_rng": torch.get_rng_state()}, ckpt_path)
                save_checkpoint(model, out / "model.safetensors", extra={"iteration": str(iteration)})
                last_good = iteration
            if rank == 0 and eval_now:
                try:
                    evaluation = run_eval(model, val_split, options)
                except NonFiniteError as exc:
                    raise TrainingDiverged(iteration, str(exc), last_losses, last_good) from None
                _append_jsonl(metrics_path, {"iter": iteration, "eval": evaluation})
                model.train()
            if world > 1 and (checkpoint_now or eval_now):
                dist.barrier()
    finally:
        progress.close()  # before any message, so it starts on its own line
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out


def run_eval(model: DiffusionDet, split: DatasetSplit, options: TrainOptions) -> dict[str, Any]:
    """COCO AP of the model on a split with the project's one inference API."""
    from diffdet.evaluate import evaluate_model
    from diffdet.inference import SamplerOptions

    model.eval()
    sampler = SamplerOptions.from_config(model.cfg, steps=options.eval_steps, record=False)
    return evaluate_model(model, split, sampler, seed=options.seed)


def cli(argv: list[str]) -> int:
    parser = ArgumentParser(prog="python -m diffdet train", description="Train DiffusionDet.",
                            epilog="Exit status: 0 done, 1 training diverged (non-finite loss, boxes or weights; the "
                                   "last good checkpoint is kept), 2 bad arguments or data.")
    parser.add_argument("--config", default="tiny", choices=sorted(PRESETS), help="preset to start from")
    parser.add_argument("--data", required=True, help="PROPS-Detection-Dataset folder/archive, or COCO JSON:IMAGE_DIR")
    parser.add_argument("--data-format", choices=("props", "coco"), default="props")
    parser.add_argument("--val-data", default=None, help="validation data (default: --data's val split)")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics.jsonl)")
    parser.add_argument("--iters", type=positive_int, default=None, help="alias of --max-iter")
    parser.add_argument("--batch", type=positive_int, default=None, help="alias of --batch-size (total over processes)")
    parser.add_argument("--seed", type=nonnegative_int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--init", default=None, help="start from this .safetensors checkpoint's weights")
    parser.add_argument("--no-pretrained", action="store_true", help="random trunk instead of local ImageNet weights")
    parser.add_argument("--workers", type=nonnegative_int, default=2)
    parser.add_argument("--device", default=None)
    parser.add_argument("--amp", action="store_true", help="mixed precision on CUDA")
    parser.add_argument("--log-every", type=positive_int, default=20)
    parser.add_argument("--eval-images", type=nonnegative_int, default=0,
                        help="evaluate on the first N validation images (0 = all)")
    parser.add_argument("--eval-steps", type=positive_int, default=1, help="DDIM steps used by the evaluations")
    parser.add_argument("--skip-bad", action="store_true", help="skip bad dataset entries (counted in the log)")
    parser.add_argument("--cache-dir", default=None, help="where archives are extracted")
    parser.add_argument("--no-md5", action="store_true", help="do not check archive md5 sums (custom archives)")
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = config_from_arguments(get_preset(args.config), args)
        if args.iters is not None:
            cfg = cfg.replace(max_iter=args.iters)
        if args.batch is not None:
            cfg = cfg.replace(batch_size=args.batch)
        options = TrainOptions(
            data=args.data, out=args.out, data_format=args.data_format, val_data=args.val_data, seed=args.seed,
            resume=args.resume, init=args.init, pretrained=not args.no_pretrained, workers=args.workers,
            device=args.device, amp=args.amp, log_every=args.log_every, eval_images=args.eval_images,
            eval_steps=args.eval_steps, skip_bad=args.skip_bad, cache_dir=args.cache_dir, verify_md5=not args.no_md5)
        out = train(cfg, options)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    except TrainingDiverged as exc:
        parser.exit(1, f"error: {exc}\n")
    print(f"run folder: {out}")
    return 0
