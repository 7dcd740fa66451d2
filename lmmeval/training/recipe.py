"""The training recipe every stage runs, under DeepSpeed: set up data, set up the model and the
engine, train, export.

What differs between stages (questions, initialisation, trainable parameters, loss) is the
stage's own object (``stages.py``). Everything else is here: data order, optimizer and
schedule, the DeepSpeed engine, ``log.csv``, resumable checkpoints (written to a temporary
folder and renamed when complete), the non-finite-loss guard, and the final assessor folder.

Two records keep what is read and written honest. The final folder carries ``training_data.json``
(``lmmeval.data.training_record``): the studies this stage trained on, merged with the record of
the model it started from, which `lmmeval evaluate` checks evaluation sets against. A resumable
checkpoint carries the SHA-256 of each of its files, verified before DeepSpeed loads it: its loader
unpickles (``torch.load(weights_only=False)``), so a folder this recipe did not write, or one
changed since, is refused rather than executed.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import torch

from ..data import training_record
from ..data.manifest import check_disjoint, check_same_study, held_out, load_manifest
from ..model import factory
from .config import TrainConfig
from .data import ManifestData
from .stages import STAGES

FINAL = "final"
CHECKPOINTS = "checkpoints"
RESUME_MANIFEST = "resume_manifest.json"  # in each resumable checkpoint: the SHA-256 of its other files
TAG = re.compile(r"step\d{8,}")
LOG_FIELDS = ["step", "epoch", "loss", "lm_loss", "regression_l1", "pairwise", "l1", "cc", "kl", "bce", "lr",
              "seconds", "peak_gib"]


class StageRecipe:
    """One stage run: ``StageRecipe(config).run()`` returns the final assessor folder."""

    def __init__(self, config: TrainConfig, deepspeed_config: str | None = None, resume: bool = False,
                 progress: bool = True):
        self.config, self.deepspeed_path, self.resume, self.progress = config, deepspeed_config, resume, progress
        self.stage = STAGES[config.stage]
        self.out_dir = Path(config.output_dir)
        self.ckpt_root = self.out_dir / CHECKPOINTS
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))

    def run(self) -> Path:
        self.setup_data()  # first: a manifest error should not wait for a model load
        self.setup_model()
        self.setup_engine()
        self.train()
        return self.export()

    def setup_data(self) -> None:
        """The training records: the manifest minus its held-out fold or split, plus the other renders
        of its training heads and any extra studies, less those the stage cannot train on; the
        questions; the run's length in steps."""
        config = self.config
        self.ds_config = _deepspeed_config(self.deepspeed_path, config)  # its errors too come before a model load
        self.out_dir.mkdir(parents=True, exist_ok=True)
        all_records = load_manifest(config.manifest)
        out = held_out(all_records, config.manifest, config.fold, config.split)
        tested = {r.id for r, test in zip(all_records, out) if test}
        # (manifest, how it was given, its records trained on): the training record lists them apart.
        sources = [(config.manifest, "manifest", [r for r, test in zip(all_records, out) if not test])]
        for path in config.renders:
            # Another render of the same heads: a held-out head's renders all stay out.
            render = load_manifest(path)
            check_same_study(config.manifest, all_records, path, render)
            sources.append((path, "render", [r for r in render if r.id not in tested]))
        if config.extra_manifests:
            extra = {path: load_manifest(path) for path in config.extra_manifests}
            check_disjoint(config.manifest, all_records, extra)  # else the held-out records could leak in
            sources += [(path, "extra", study) for path, study in extra.items()]
        records = [r for _, _, study in sources for r in study]
        self.sources = [(path, role, [r for r in study if self.stage.trains_on(r)]) for path, role, study in sources]
        self.records = [r for _, _, study in self.sources for r in study]
        if len(self.records) < len(records):
            print(f"stage {config.stage}: {len(records) - len(self.records)} of {len(records)} training records "
                  f"have no {self.stage.needs} and are left out", flush=True)
        if not self.records:
            raise ValueError(f"{config.manifest}: no training record for stage {config.stage} "
                             f"({self.stage.description}) after holding out fold {config.fold} / split {config.split}")
        self.tasks = self.stage.tasks(config)
        if "distortions" in self.tasks and not any(r.labelled for r in self.records):
            # No record has labelled distortion categories (e.g. Gen3DHF): the question teaches nothing.
            self.tasks = tuple(t for t in self.tasks if t != "distortions")
            print(f"stage {config.stage}: no training record has labelled distortion categories; the distortion "
                  "question is not asked", flush=True)
        self.steps = config.total_steps(len(self.records), self.world)
        self.warmup = config.warmup(self.steps)
        if config.epochs is not None:
            print(f"stage {config.stage}: {config.epochs:g} epoch(s) of {len(self.records)} records = {self.steps} "
                  f"steps (micro-batch {config.batch_size} x {self.world} process(es) x accumulation "
                  f"{config.grad_accum})", flush=True)
        earlier = sorted(p.name for p in self.ckpt_root.glob("step*")) if not self.resume else []
        if earlier:
            # A fresh run would interleave its checkpoints with these (and fail renaming onto one).
            raise ValueError(f"{self.out_dir}: holds checkpoints of an earlier run ({', '.join(earlier)}); pass "
                             "--resume to continue it, or give an output_dir without a checkpoints/ folder")
        # Checked now, before a model is loaded: the checkpoint to resume from, and the record of the
        # model this stage starts from.
        self.resume_tag = _verified_resume_tag(self.ckpt_root) if self.resume else None
        self.start_record, self.start_missing = _start_record(config)

    def setup_model(self) -> None:
        """The stage's starting model, its trainable parameters, and the data it will see."""
        config = self.config
        torch.manual_seed(config.seed)
        self.device = _device(config)
        self._partitioned_init = None
        if self.ds_config.get("zero_optimization", {}).get("stage") == 3:
            # Live while the base is built: its weights are created partitioned across the ranks
            # instead of whole on every rank (8 ranks x 16 GB for the 7B).
            self._partitioned_init = partitioned_init(self.ds_config, factory.resolve_dtype(config.dtype, self.device))
        self.model = self.stage.init_model(config, self.device)
        if config.gradient_checkpointing:
            # Non-reentrant: the reentrant variant silently yields no LoRA gradients.
            self.model.network.backbone.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        self.params = self.stage.trainable(self.model)
        # The frozen base's precision: the forward pass autocasts to it (the trainables are float32).
        self.compute_dtype = self.model.network.backbone.get_input_embeddings().weight.dtype
        self.data = ManifestData(self.records, self.model.processor, self.model.config.sampling, self.model.geometry,
                                 self.tasks, seed=config.seed, with_saliency=self.stage.with_saliency,
                                 group_by_length=config.group_by_length,
                                 global_batch=config.batch_size * self.world)

    def setup_engine(self) -> None:
        """AdamW and the warm-up + cosine schedule inside a DeepSpeed engine; a resume restores
        their state, the data position and the RNG."""
        deepspeed = _deepspeed()

        config = self.config
        params = list(self.params.values())
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(self.steps, self.warmup))
        self.engine, _, _, _ = deepspeed.initialize(model=self.model.network, optimizer=optimizer,
                                                    lr_scheduler=self.scheduler, model_parameters=params,
                                                    config=self.ds_config)
        self.step, self.epoch, self.pos = 0, 0, 0
        if self.resume_tag is not None:
            state = _load(self.engine, self.ckpt_root, self.resume_tag)
            if state is not None:
                self.step, self.epoch, self.pos = state["step"], state["epoch"], state["pos"]
                torch.set_rng_state(state["torch_rng"])

    def train(self) -> None:
        from tqdm import tqdm

        config, rank = self.config, self.rank
        self.model.network.train()
        log = _StepLog(self.out_dir / "log.csv", append=self.resume)
        order = self.data.order(self.epoch)
        started = time.time()
        bar = tqdm(total=self.steps, initial=self.step, desc=f"stage {config.stage}", unit="step",
                   disable=not self.progress or rank)
        global_batch = config.batch_size * self.world
        while self.step < self.steps:
            sums: dict[str, float] = {}
            for _ in range(config.grad_accum):
                if self.pos + global_batch > len(order):  # next epoch, new seeded order
                    self.epoch, self.pos = self.epoch + 1, 0
                    order = self.data.order(self.epoch)
                indices = order[self.pos + rank * config.batch_size: self.pos + (rank + 1) * config.batch_size]
                indices = indices if len(indices) else order[: config.batch_size]  # fewer records than ranks
                self.pos += global_batch
                batch = self.data.batch(indices).to(self.device)
                with self.autocast():
                    losses = self.stage.loss(config, self.engine, batch)
                if not torch.isfinite(losses["loss"]):
                    bad = self.out_dir / "nan_state"
                    self.engine.save_checkpoint(str(bad), tag=f"step{self.step}", exclude_frozen_parameters=True)
                    raise RuntimeError(f"non-finite loss {losses['loss'].item()} at step {self.step}, batch "
                                       f"{batch.ids}; model and optimizer state saved to {bad}")
                self.engine.backward(losses["loss"])
                self.engine.step()
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) / config.grad_accum
            self.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss']:.4f}")
            if rank == 0 and (self.step % config.log_every == 0 or self.step == self.steps):
                log.write({**{k: f"{v:.6f}" for k, v in sums.items()}, "step": self.step, "epoch": self.epoch,
                           "lr": f"{self.scheduler.get_last_lr()[0]:.3e}", "seconds": f"{time.time() - started:.1f}",
                           "peak_gib": f"{_peak_gib(self.device):.2f}"})
            if self.step % config.save_every == 0 and self.step < self.steps:
                _save(self.engine, self.ckpt_root, self.step, self.epoch, self.pos, config.keep_checkpoints)
        bar.close()

    def autocast(self):
        """Mixed precision when the base is not float32: matrix products in its dtype, float32 masters."""
        return torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=self.compute_dtype != torch.float32)

    def export(self) -> Path:
        """The final assessor folder, ``output_dir/final``, written to a temporary folder and renamed."""
        deepspeed = _deepspeed()

        final = self.out_dir / FINAL
        model = self.model
        # Under ZeRO-3 every rank holds a shard of each parameter: gather what the checkpoint
        # folder stores (adapter and heads, never the frozen base) before rank 0 writes it.
        saved = [p for n, p in model.network.named_parameters()
                 if n.startswith(("regression.", "saliency.")) or "lora_" in n or "modules_to_save" in n]
        zero3 = self.ds_config.get("zero_optimization", {}).get("stage") == 3
        with deepspeed.zero.GatheredParameters(saved, modifier_rank=None) if zero3 else contextlib.nullcontext():
            if self.rank == 0:
                model.config.trained_stages = sorted(set(model.config.trained_stages) | {self.config.stage})
                tmp = self.out_dir / (FINAL + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                factory.save_model(model, tmp)
                training_record.write_record(tmp, self.training_record())
                shutil.rmtree(final, ignore_errors=True)
                tmp.rename(final)
        self._partitioned_init = None  # models built after this run (e.g. to evaluate it) load whole again
        return final

    def training_record(self) -> dict:
        """What the exported model was trained on: this stage's studies (the videos it trained on,
        hashed now) after the record of the model it started from."""
        config = self.config
        entries = []
        for path, role, records in self.sources:
            fold, split = (config.fold, config.split) if role != "extra" else (-1, None)  # extras: whole
            entries.append(training_record.study_entry(path, records, config.stage, role, fold, split))
        return training_record.merge(self.start_record, entries, self.start_missing)


def _start_record(config: TrainConfig) -> tuple[dict | None, list[str]]:
    """(record of the model the stage starts from, what it leaves unknown): a random preset has trained
    on nothing; a folder without a record (a downloaded base, an older checkpoint) is noted."""
    start = config.init_from if config.stage > 1 else config.base
    if start is None or (config.stage == 1 and str(start).startswith("preset:")):
        return None, []
    record = training_record.read_record(start)
    if record is None:
        what = "base" if config.stage == 1 else "starting checkpoint"
        return None, [f"{start} (stage {config.stage}'s {what}) has no {training_record.RECORD_NAME}: what it was "
                      "trained on is not recorded"]
    return record, []


def partitioned_init(ds_config: dict, dtype: torch.dtype):
    """transformers' ``HfDeepSpeedConfig`` for a ZeRO-3 ``ds_config``: while the returned object lives,
    models are created partitioned across the ranks (``deepspeed.zero.Init``), in ``dtype``. The
    copy it reads has DeepSpeed's bf16 switch set to that dtype (zero.Init creates weights in the
    precision the switch names); the engine's own config keeps it off (lmmeval's precision policy)."""
    from transformers.integrations import HfDeepSpeedConfig

    init = dict(ds_config) | {"bf16": {"enabled": dtype == torch.bfloat16}}
    return HfDeepSpeedConfig(init)


def run_stage(config: TrainConfig, deepspeed_config: str | None = None, resume: bool = False,
              progress: bool = True) -> Path:
    """Train one stage; returns the final assessor folder (``output_dir/final``)."""
    with _single_process_env():
        return StageRecipe(config, deepspeed_config, resume, progress).run()


def _deepspeed():
    try:
        import deepspeed
    except ModuleNotFoundError:
        raise ModuleNotFoundError("training runs under DeepSpeed, which is not installed: "
                                  "pip install 'lmmeval[train]'") from None
    return deepspeed


def _device(config: TrainConfig) -> torch.device:
    device = torch.device(config.device) if config.device else factory.default_device()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def _single_process_env():
    """Let a plain `python train/...` (and tests) run DeepSpeed without its launcher.

    The process group of one rank is made here on a file store: no port is picked (a port found
    free and closed again can be taken by another process before the rendezvous binds it), and
    DeepSpeed, finding a group, makes none. The group lives as long as the process (DeepSpeed keeps
    references to it between runs), its store in a temporary folder removed at exit. The rank
    variables DeepSpeed also reads are set only while the stage runs: left behind, they would tell a
    later subprocess (another stage started from a notebook or a test) that it runs under a launcher."""
    import torch.distributed as dist

    if "RANK" in os.environ:  # a launcher set it up
        yield
        return
    ours = dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="0")
    before = {key: os.environ.get(key) for key in ours}
    os.environ.update(ours)
    try:
        if not dist.is_initialized():
            backend = _deepspeed().get_accelerator().communication_backend_name()
            dist.init_process_group(backend, store=dist.FileStore(_store_path(), 1), rank=0, world_size=1)
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _store_path() -> str:
    """A file for the single-process group's store, in a folder removed when the process exits."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="lmmeval-rendezvous-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return os.path.join(folder, "store")


def _deepspeed_config(path: str | None, config: TrainConfig) -> dict:
    """The DeepSpeed JSON with its "auto" values filled in from the stage config."""
    ds = json.loads(Path(path).read_text()) if path else {"zero_optimization": {"stage": 2}}
    filled = {"train_micro_batch_size_per_gpu": config.batch_size, "gradient_accumulation_steps": config.grad_accum,
              "gradient_clipping": config.max_grad_norm}
    for key, value in filled.items():
        if ds.get(key, "auto") == "auto":
            ds[key] = value
        elif ds[key] != value:
            raise ValueError(f"{path}: {key} = {ds[key]} disagrees with the stage config ({value}); use \"auto\"")
    for half in ("bf16", "fp16"):
        # DeepSpeed's switches would cast every weight, the float32 masters included: lmmeval's own
        # policy (the stage config's dtype, autocast, float32 trainables) does mixed precision instead.
        enabled = ds.get(half, {}).get("enabled", False)
        if enabled not in (False, "auto"):
            raise ValueError(f"{path}: {half}.enabled is {enabled!r}: leave it false and set the stage config's "
                             "dtype (e.g. bfloat16); lmmeval keeps LoRA and heads in float32 and autocasts the forward")
        ds[half] = {"enabled": False}
    ds.setdefault("steps_per_print", 10**9)
    return ds


def _lr_lambda(steps: int, warmup: int):
    def factor(step: int) -> float:  # linear warm-up, then cosine decay to 10 %
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


class _StepLog:
    """log.csv: one row per logged step (a fresh run starts the file, a resume appends to it)."""

    def __init__(self, path: Path, append: bool):
        self.path = path
        if not (append and path.exists()):
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(LOG_FIELDS)

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=LOG_FIELDS, extrasaction="ignore").writerow(row)


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
    if engine.global_rank == 0:  # every rank has written its shards (save_checkpoint ends in a barrier)
        files = {str(p.relative_to(tmp / tag)): _sha256(p) for p in sorted((tmp / tag).rglob("*")) if p.is_file()}
        (tmp / tag / RESUME_MANIFEST).write_text(json.dumps({"format": 1, "sha256": files}, indent=1))
        (tmp / tag).rename(root / tag)  # atomic: a checkpoint folder exists only once complete
        latest = root / "latest.tmp"
        latest.write_text(tag)
        latest.replace(root / "latest")
        for old in sorted(p for p in root.glob("step*") if p.is_dir())[:-keep]:
            shutil.rmtree(old)
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verified_resume_tag(root: Path) -> str | None:
    """The tag of the newest resumable checkpoint under ``root`` (None: none yet, a fresh start),
    refused with a ``ValueError`` unless its files are exactly those its manifest lists, unchanged:
    DeepSpeed's loader unpickles them, which runs whatever code a crafted file holds."""
    if not (root / "latest").exists():
        return None
    tag = (root / "latest").read_text().strip()
    folder = root / tag
    if not TAG.fullmatch(tag) or not folder.is_dir():
        raise ValueError(f"{root / 'latest'} names {tag!r}, not a checkpoint folder this recipe writes "
                         "(stepNNNNNNNN); refusing to resume from it")
    refuse = f"{folder}: refusing to resume from it (DeepSpeed unpickles its files)"
    try:
        listed = json.loads((folder / RESUME_MANIFEST).read_text())["sha256"]
    except FileNotFoundError:
        raise ValueError(f"{refuse}: it has no {RESUME_MANIFEST}, so it was not written by this training "
                         "recipe; start afresh without --resume") from None
    except (json.JSONDecodeError, KeyError, TypeError):
        listed = None
    if not isinstance(listed, dict):
        raise ValueError(f"{refuse}: its {RESUME_MANIFEST} is not the one this recipe writes")
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} - {RESUME_MANIFEST}
    if present != set(listed):
        extra, missing = sorted(present - set(listed)), sorted(set(listed) - present)
        raise ValueError(f"{refuse}: its files differ from its {RESUME_MANIFEST} (not listed: {extra}, "
                         f"missing: {missing})")
    changed = sorted(name for name in listed if _sha256(folder / name) != listed[name])
    if changed:
        raise ValueError(f"{refuse}: {', '.join(changed)} changed since the checkpoint was written "
                         f"(SHA-256 differs from its {RESUME_MANIFEST})")
    return tag


def _load(engine, root: Path, tag: str) -> dict | None:
    _, state = engine.load_checkpoint(str(root), tag=tag, load_module_strict=False)
    if state is None:
        raise RuntimeError(f"{root / tag}: checkpoint could not be loaded")
    return state
