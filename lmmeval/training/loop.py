"""The one training loop the three stage scripts share, run under DeepSpeed.

What differs between stages is small and explicit here: which parameters train
(``trainable_parameters``), which questions each sample is asked, and the loss
(``stage_loss``). Everything else (data order, optimizer, DeepSpeed engine,
logging, resumable checkpoints, the NaN guard, the final assessor folder) is common.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import socket
import time
from pathlib import Path

import torch

from ..assessor import Assessor
from ..model.lmme import LEVEL_TASKS, TASKS
from ..prepare import check_disjoint, check_fold, load_manifest
from .config import TrainConfig
from .data import ManifestData, TrainBatch
from .losses import pairwise_loss, regression_loss, saliency_loss

FINAL = "final"
CHECKPOINTS = "checkpoints"


def stage_tasks(config: TrainConfig) -> tuple[str, ...]:
    """Questions asked per sample: all three for instruction tuning; the two level
    questions for regression (plus the distortion one if its LM loss is kept); one
    for the saliency stage (the video-token states do not depend on the question)."""
    if config.stage == 1:
        return TASKS
    if config.stage == 2:
        return TASKS if config.lm_weight > 0 else LEVEL_TASKS
    return ("quality",)


def trainable_parameters(assessor: Assessor, stage: int) -> dict[str, torch.nn.Parameter]:
    """Freeze everything, then unfreeze: stage 1 LoRA; stage 2 LoRA + regression head; stage 3 the decoder."""
    model = assessor.model
    for p in model.parameters():
        p.requires_grad_(False)
    chosen = {}
    if stage in (1, 2):
        chosen |= {n: p for n, p in model.backbone.named_parameters() if "lora_" in n or "modules_to_save" in n}
        if not chosen:
            raise ValueError("no LoRA parameters found: the assessor has no adapter")
    if stage == 2:
        chosen |= {f"regression.{n}": p for n, p in model.regression.named_parameters()}
    if stage == 3:
        chosen |= {f"saliency.{n}": p for n, p in model.saliency.named_parameters()}
    for p in chosen.values():
        p.requires_grad_(True)
    return chosen


def stage_loss(config: TrainConfig, engine, batch: TrainBatch) -> dict[str, torch.Tensor]:
    """Forward one micro-batch and return {"loss": total, component: value, ...}."""
    out = engine(batch.model, with_saliency=config.stage == 3, out_sizes=batch.sizes)
    if config.stage == 1:
        return {"loss": out["lm_loss"], "lm_loss": out["lm_loss"]}
    if config.stage == 2:
        l1 = regression_loss(out["scores"], batch.mos)
        terms = {"regression_l1": l1}
        total = l1
        if config.lm_weight > 0:
            terms["lm_loss"] = out["lm_loss"]
            total = total + config.lm_weight * out["lm_loss"]
        if config.pairwise_weight > 0:
            terms["pairwise"] = pairwise_loss(out["scores"], batch.mos, config.pairwise_temperature)
            total = total + config.pairwise_weight * terms["pairwise"]
        return {"loss": total, **terms}
    parts = [saliency_loss(out["saliency_logits"][b][g], target, config.saliency_loss)
             for b, targets in enumerate(batch.saliency) for g, target in targets]
    if not parts:
        raise ValueError(f"batch {batch.ids} has no saliency maps (manifest without 'views'?)")
    keys = sorted({k for p in parts for k in p})
    return {k: torch.stack([p[k] for p in parts if k in p]).mean() for k in keys}


def _single_process_env() -> None:
    """Let a plain `python train/...` (and tests) run DeepSpeed without its launcher."""
    if "RANK" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def _deepspeed_config(path: str | None, config: TrainConfig, on_gpu: bool) -> dict:
    """The DeepSpeed JSON with its "auto" values filled in from the stage config."""
    ds = json.loads(Path(path).read_text()) if path else {"zero_optimization": {"stage": 2}}
    filled = {"train_micro_batch_size_per_gpu": config.batch_size, "gradient_accumulation_steps": config.grad_accum,
              "gradient_clipping": config.max_grad_norm}
    for key, value in filled.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
        elif ds[key] != value:
            raise ValueError(f"{path}: {key} = {ds[key]} disagrees with the stage config ({value}); use \"auto\"")
    if ds.get("bf16", {}).get("enabled") == "auto":
        ds["bf16"]["enabled"] = on_gpu
    ds.setdefault("steps_per_print", 10**9)
    return ds


def _lr_lambda(config: TrainConfig):
    def factor(step: int) -> float:  # linear warm-up, then cosine decay to 10 %
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


def load_assessor_for(config: TrainConfig, device: torch.device) -> Assessor:
    if config.stage == 1:
        base = config.base
        if base == "tiny":
            from ..model import build_tiny_base

            base = build_tiny_base(Path(config.output_dir) / "tiny_base", seed=config.seed)
        assessor = Assessor.from_base(base, device=device, sampling=config.sampling, seed=config.seed)
        assessor.config.lora = config.lora
        assessor.add_lora()
        return assessor
    assessor = Assessor.from_pretrained(config.init_from, device=device, trainable=True)
    if config.stage == 2 and assessor.config.regression.video_mean != config.regression_video_mean:
        # Stage 1 leaves the head at its initialisation, so a head of the other kind loses nothing
        # trained (from a stage-2 checkpoint it would; say so).
        if 2 in assessor.config.trained_stages:
            print(f"stage 2: {config.init_from}'s trained regression head is replaced by a fresh one "
                  f"(regression_video_mean={config.regression_video_mean})")
        assessor.new_regression_head(config.regression_video_mean, seed=config.seed)
    return assessor


def run_stage(config: TrainConfig, deepspeed_config: str | None = None, resume: bool = False,
              progress: bool = True) -> Path:
    """Train one stage; returns the final assessor folder (``output_dir/final``)."""
    import deepspeed
    from tqdm import tqdm

    _single_process_env()
    torch.manual_seed(config.seed)
    device = torch.device(config.device) if config.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The manifest first: its errors should not wait for a model load.
    all_records = load_manifest(config.manifest)
    check_fold(all_records, config.fold, config.manifest)
    records = [r for r in all_records if r["fold"] != config.fold]
    if config.extra_manifests:
        extra = {path: load_manifest(path) for path in config.extra_manifests}
        check_disjoint(config.manifest, all_records, extra)  # else the held-out fold could leak in
        records += [r for study in extra.values() for r in study]
    ckpt_root = out_dir / CHECKPOINTS
    earlier = sorted(p.name for p in ckpt_root.glob("step*")) if not resume else []
    if earlier:
        # A fresh run would interleave its checkpoints with these (and fail renaming onto one).
        raise ValueError(f"{out_dir}: holds checkpoints of an earlier run ({', '.join(earlier)}); pass --resume "
                         "to continue it, or give an output_dir without a checkpoints/ folder")
    assessor = load_assessor_for(config, device)
    if config.gradient_checkpointing:
        # Non-reentrant: the reentrant variant silently yields no LoRA gradients.
        assessor.model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = trainable_parameters(assessor, config.stage)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    data = ManifestData(records, assessor.processor, assessor.config.sampling, stage_tasks(config), seed=config.seed,
                        with_saliency=config.stage == 3, group_by_length=config.group_by_length,
                        global_batch=config.batch_size * world)

    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    ds_config = _deepspeed_config(deepspeed_config, config, device.type == "cuda")
    engine, _, _, _ = deepspeed.initialize(model=assessor.model, optimizer=optimizer, lr_scheduler=scheduler,
                                           model_parameters=list(params.values()), config=ds_config)
    assessor.model.train()
    step, epoch, pos = 0, 0, 0
    if resume:
        state = _load_latest(engine, ckpt_root)
        if state is not None:
            step, epoch, pos = state["step"], state["epoch"], state["pos"]
            torch.set_rng_state(state["torch_rng"])
    log_path = out_dir / "log.csv"
    log_fields = ["step", "epoch", "loss", "lm_loss", "regression_l1", "pairwise", "l1", "cc", "kl", "bce", "lr",
                  "seconds", "peak_gib"]
    if not (resume and log_path.exists()):
        with open(log_path, "w", newline="") as f:
            csv.writer(f).writerow(log_fields)
    order = data.order(epoch)
    started = time.time()
    bar = tqdm(total=config.steps, initial=step, desc=f"stage {config.stage}", unit="step", disable=not progress or rank)
    while step < config.steps:
        sums: dict[str, float] = {}
        for _ in range(config.grad_accum):
            global_batch = config.batch_size * world
            if pos + global_batch > len(order):  # next epoch, new seeded order
                epoch, pos = epoch + 1, 0
                order = data.order(epoch)
            indices = order[pos + rank * config.batch_size: pos + (rank + 1) * config.batch_size]
            indices = indices if len(indices) else order[: config.batch_size]  # fewer records than ranks
            pos += global_batch
            batch = data.batch(indices).to(device)
            losses = stage_loss(config, engine, batch)
            if not torch.isfinite(losses["loss"]):
                bad = out_dir / "nan_state"
                engine.save_checkpoint(str(bad), tag=f"step{step}", exclude_frozen_parameters=True)
                raise RuntimeError(f"non-finite loss {losses['loss'].item()} at step {step}, batch {batch.ids}; "
                                   f"model and optimizer state saved to {bad}")
            engine.backward(losses["loss"])
            engine.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / config.grad_accum
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss']:.4f}")
        if rank == 0 and (step % config.log_every == 0 or step == config.steps):
            with open(log_path, "a", newline="") as f:
                row = {**{k: f"{v:.6f}" for k, v in sums.items()}, "step": step, "epoch": epoch,
                       "lr": f"{scheduler.get_last_lr()[0]:.3e}", "seconds": f"{time.time() - started:.1f}",
                       "peak_gib": f"{_peak_gib(device):.2f}"}
                csv.DictWriter(f, fieldnames=log_fields, extrasaction="ignore").writerow(row)
        if step % config.save_every == 0 and step < config.steps:
            _save(engine, ckpt_root, step, epoch, pos, config.keep_checkpoints)
    bar.close()
    final = out_dir / FINAL
    # Under ZeRO-3 every rank holds a shard of each parameter: gather what the checkpoint
    # folder stores (adapter and heads, never the frozen base) before rank 0 writes it.
    saved = [p for n, p in assessor.model.named_parameters()
             if n.startswith(("regression.", "saliency.")) or "lora_" in n or "modules_to_save" in n]
    zero3 = ds_config.get("zero_optimization", {}).get("stage") == 3
    with deepspeed.zero.GatheredParameters(saved, modifier_rank=None) if zero3 else contextlib.nullcontext():
        if rank == 0:
            assessor.config.trained_stages = sorted(set(assessor.config.trained_stages) | {config.stage})
            tmp = out_dir / (FINAL + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            assessor.save_pretrained(tmp)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
    return final


def _peak_gib(device: torch.device) -> float:
    """Peak memory so far: allocated GPU memory, or the process's resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _save(engine, root: Path, step: int, epoch: int, pos: int, keep: int) -> None:
    """A resumable checkpoint, written to a temporary folder and renamed when complete."""
    tag = f"step{step:08d}"
    tmp = root / ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    state = {"step": step, "epoch": epoch, "pos": pos, "torch_rng": torch.get_rng_state()}
    engine.save_checkpoint(str(tmp), tag=tag, client_state=state, exclude_frozen_parameters=True)
    if engine.global_rank == 0:
        (tmp / tag).rename(root / tag)  # atomic: a checkpoint folder exists only once complete
        latest = root / "latest.tmp"
        latest.write_text(tag)
        latest.replace(root / "latest")
        for old in sorted(p for p in root.glob("step*") if p.is_dir())[:-keep]:
            shutil.rmtree(old)
        shutil.rmtree(tmp, ignore_errors=True)


def _load_latest(engine, root: Path) -> dict | None:
    if not (root / "latest").exists():
        return None
    tag = (root / "latest").read_text().strip()
    _, state = engine.load_checkpoint(str(root), tag=tag, load_module_strict=False)
    if state is None:
        raise RuntimeError(f"{root / tag}: checkpoint could not be loaded")
    return state
