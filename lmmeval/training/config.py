"""Typed training configuration, read from YAML; unknown keys are an error.

One ``TrainConfig`` per stage run. The YAML files in ``configs/`` open with the
exact command that runs them and comment every knob.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..model.configuration import LoraSettings, SamplingConfig, build_dataclass, read_yaml


@dataclass
class SaliencyLossWeights:
    """Paper Eq. 5: w1 * L1 + w2 * CC + w3 * KL + w4 * BCE."""

    l1: float = 1.0
    cc: float = 1.0
    kl: float = 0.5
    bce: float = 1.0


@dataclass
class TrainConfig:
    stage: int  # 1 instruction tuning, 2 LoRA + regression, 3 saliency decoder
    manifest: str  # manifest.jsonl written by `lmmeval prepare`
    output_dir: str  # checkpoints, log.csv, and final/ (an assessor checkpoint)
    base: str | None = None  # stage 1: base Qwen2.5-VL folder, or "preset:NAME" (random weights, e.g. preset:tiny)
    init_from: str | None = None  # stages 2 and 3: the previous stage's final/ folder
    fold: int = -1  # held-out fold (not trained on); -1 trains on every record
    split: str | None = None  # or a held-out official split, e.g. "eval" (Gen3DHF): train on the others
    # More studies trained on whole (their folds ignored), e.g. stage 0's corpus; each must be
    # disjoint from `manifest` (checked: render seed and file hashes), whose held-out fold is tested.
    extra_manifests: list[str] = field(default_factory=list)
    # The same study rendered at other protocols (`lmmeval synth` with the manifest's seed and
    # another --size/--fps/--seconds, prepared with the same --folds): each head's renders are held
    # out together (checked: same ids, folds, splits, generators), the others all trained on.
    renders: list[str] = field(default_factory=list)
    # How long: `steps` (optimizer steps) or `epochs` (passes over the training records, turned into
    # steps from the record count, world size, micro-batch and accumulation), one of the two.
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 2  # samples per micro-batch (per process)
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-4
    weight_decay: float = 0.0
    # Linear warm-up: `warmup_steps`, or `warmup_ratio` of all steps; neither: 10 steps.
    warmup_steps: int | None = None
    warmup_ratio: float | None = None
    max_grad_norm: float = 1.0
    lm_weight: float = 0.0  # stage 2: weight of the language-model loss kept next to the L1 regression loss
    pairwise_weight: float = 0.0  # stage 2: weight of a Bradley-Terry ranking loss over the batch's pairs
    pairwise_temperature: float = 10.0  # stage 2: MOS points that make a pair's preference ~73 % sure
    regression_video_mean: bool = False  # stage 2: the regression head also reads the mean LLM state over the video tokens
    # Stage 3: vision blocks (0-based) whose outputs the saliency decoder also reads, as extra U-Net
    # skips; null keeps the checkpoint's decoder (by default the last block only).
    saliency_vision_depths: list[int] | None = None
    saliency_loss: SaliencyLossWeights = field(default_factory=SaliencyLossWeights)
    sampling: SamplingConfig | None = None  # stage 1 only; later stages inherit the checkpoint's
    lora: LoraSettings = field(default_factory=LoraSettings)  # stage 1 creates the adapter with these
    group_by_length: bool = False  # batch videos of similar token counts together (less padding)
    gradient_checkpointing: bool = False  # non-reentrant, so LoRA still gets gradients
    save_every: int = 50  # steps between resumable checkpoints
    log_every: int = 1  # steps between log.csv rows
    keep_checkpoints: int = 2  # newest resumable checkpoints kept
    seed: int = 0
    device: str | None = None  # default: cuda if available
    # The frozen base's precision (auto: bfloat16 on a GPU, float32 on a CPU). Trainable weights (LoRA,
    # heads) are float32 masters whatever it is, and the forward pass autocasts to it: one policy,
    # the same with and without DeepSpeed (whose own bf16/fp16 switches stay off).
    dtype: str = "auto"
    attention: str = "sdpa"  # transformers' attention implementation: sdpa, flash_attention_2 (needs flash-attn) or eager

    def __post_init__(self) -> None:
        from ..model.factory import ATTENTIONS, DTYPES
        from .stages import STAGES

        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {tuple(STAGES)}, got {self.stage}")
        for name in ("regression_video_mean", "group_by_length", "gradient_checkpointing"):
            # A YAML typo such as "flase" is a string, which is truthy: it would switch the knob on.
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        STAGES[self.stage].check(self)  # what only this stage needs or allows
        for name in ("extra_manifests", "renders"):
            paths = getattr(self, name)
            if not isinstance(paths, list) or not all(isinstance(m, str) for m in paths):
                raise ValueError(f"{name} must be a list of manifest paths, got {paths!r}")
        named = [self.manifest, *self.extra_manifests, *self.renders]
        if repeated := sorted({m for m in named if named.count(m) > 1}):
            # Named twice, its videos would silently count twice.
            raise ValueError(f"manifest, extra_manifests and renders name {', '.join(repeated)} more than once")
        for name in ("batch_size", "grad_accum", "save_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"give one of 'steps' and 'epochs' (got steps={self.steps}, epochs={self.epochs})")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        if self.epochs is not None and not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise ValueError(f"epochs must be a number > 0, got {self.epochs!r}")
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError("give one of 'warmup_steps' and 'warmup_ratio', not both")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.warmup_ratio is not None and not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.split is not None and self.fold != -1:
            raise ValueError(f"hold out a fold or a split, not both (fold {self.fold}, split {self.split!r})")

    def total_steps(self, records: int, world: int = 1) -> int:
        """Optimizer steps of the run: ``steps``, or ``epochs`` over ``records`` training records with
        ``world`` processes each taking ``batch_size`` records per micro-batch, ``grad_accum`` per step."""
        if self.steps is not None:
            return self.steps
        per_step = self.batch_size * world * self.grad_accum
        return max(1, math.ceil(self.epochs * records / per_step))

    def warmup(self, total_steps: int) -> int:
        """Warm-up steps of a run of ``total_steps``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        if self.warmup_ratio is not None:
            return round(self.warmup_ratio * total_steps)
        return 10


# Keys that say the same thing two ways: an override of one replaces the file's other.
_ALTERNATIVES = (("steps", "epochs"), ("warmup_steps", "warmup_ratio"))


def load_train_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a stage's YAML; ``overrides`` (e.g. from the command line) replace its keys. Overriding
    ``steps`` replaces the file's ``epochs`` and the other way round (and so for the warm-up)."""
    data = read_yaml(path)
    overrides = overrides or {}
    for pair in _ALTERNATIVES:
        for key, other in (pair, pair[::-1]):
            if key in overrides and other not in overrides:
                data.pop(other, None)
    return build_dataclass(TrainConfig, data | overrides, str(path), _NESTED)


def parse_overrides(items: list[str]) -> dict:
    """``["steps=10", "lora={r: 16}"]`` -> {"steps": 10, "lora": {"r": 16}}: each value is read as YAML,
    as in the config files (a nested block given this way replaces the file's whole block)."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ValueError(f"--set {item!r}: the value is not YAML ({err})") from None
    return overrides


def load_sampling(path: str | Path) -> SamplingConfig:
    """The ``sampling`` block of a stage-1 YAML: how an assessor trained from it samples videos
    (for tools that must see what the assessor sees, e.g. the probes and stage 0)."""
    data = read_yaml(path)
    if not isinstance(data.get("sampling"), dict):
        raise ValueError(f"{path}: no 'sampling' block (it is set in stage 1 configs)")
    return build_dataclass(SamplingConfig, data["sampling"], f"{path}.sampling", {})


_NESTED = {"saliency_loss": SaliencyLossWeights, "sampling": SamplingConfig, "lora": LoraSettings}
