"""Typed training configuration, read from YAML; unknown keys are an error.

One ``TrainConfig`` per stage run. The YAML files in ``configs/`` open with the
exact command that runs them and comment every knob.
"""

from __future__ import annotations

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
    # More studies trained on whole (their folds ignored), e.g. stage 0's corpus; each must be
    # disjoint from `manifest` (checked: render seed and file hashes), whose held-out fold is tested.
    extra_manifests: list[str] = field(default_factory=list)
    steps: int = 100  # optimizer steps
    batch_size: int = 2  # samples per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 10
    max_grad_norm: float = 1.0
    lm_weight: float = 0.0  # stage 2: weight of the language-model loss kept next to the L1 regression loss
    pairwise_weight: float = 0.0  # stage 2: weight of a Bradley-Terry ranking loss over the batch's pairs
    pairwise_temperature: float = 10.0  # stage 2: MOS points that make a pair's preference ~73 % sure
    regression_video_mean: bool = False  # stage 2: the regression head also reads the mean LLM state over the video tokens
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

    def __post_init__(self) -> None:
        from .stages import STAGES

        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {tuple(STAGES)}, got {self.stage}")
        for name in ("regression_video_mean", "group_by_length", "gradient_checkpointing"):
            # A YAML typo such as "flase" is a string, which is truthy: it would switch the knob on.
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.extra_manifests, list) or not all(isinstance(m, str) for m in self.extra_manifests):
            raise ValueError(f"extra_manifests must be a list of manifest paths, got {self.extra_manifests!r}")
        if repeated := sorted({m for m in self.extra_manifests if self.extra_manifests.count(m) > 1}):
            # Named twice, its videos would silently count twice.
            raise ValueError(f"extra_manifests names {', '.join(repeated)} more than once")
        for name in ("steps", "batch_size", "grad_accum", "save_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        STAGES[self.stage].check(self)  # what only this stage needs or allows


def load_train_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a stage's YAML; ``overrides`` (e.g. from the command line) replace its keys."""
    data = read_yaml(path) | (overrides or {})
    return build_dataclass(TrainConfig, data, str(path), _NESTED)


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
