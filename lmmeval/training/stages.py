"""The three training stages of LMME3DHF (paper section 4.2), one object each.

A stage says what it needs from the config, which questions each sample is asked, how its
model starts (a fresh assessor with a new LoRA adapter, or the previous stage's checkpoint),
which parameters train, and its loss. The recipe (``recipe.py``) runs every stage the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..model import factory
from ..prompts import LEVEL_TASKS, TASKS
from .losses import pairwise_loss, regression_loss, saliency_loss

if TYPE_CHECKING:
    from .config import TrainConfig
    from .data import TrainBatch


# Settings only one stage reads: name -> (that stage, the value that leaves them unset, what it trains).
STAGE_SETTINGS = {
    "regression_video_mean": (2, False, "the regression head"),
    "saliency_vision_depths": (3, None, "the saliency decoder"),
}


class Stage:
    number: int
    description: str
    with_saliency = False  # batches carry saliency targets and the forward pass computes maps
    needs = ""  # what a record must have for this stage to train on it (see trains_on)

    def trains_on(self, record) -> bool:
        """Whether this stage can learn from ``record`` (every stage but the saliency one: any)."""
        return True

    def check(self, config: TrainConfig) -> None:
        """Stage-specific config errors (``ValueError``); a setting of another stage is one."""
        for name, (stage, unset, what) in STAGE_SETTINGS.items():
            if stage != self.number and getattr(config, name) != unset:
                raise ValueError(f"'{name}' is a stage {stage} setting (the stage that trains {what})")

    def tasks(self, config: TrainConfig) -> tuple[str, ...]:
        """The questions asked about each sample."""
        raise NotImplementedError

    def init_model(self, config: TrainConfig, device: torch.device) -> factory.AssessorModel:
        """The model the stage starts from."""
        raise NotImplementedError

    def trainable(self, model: factory.AssessorModel) -> dict[str, torch.nn.Parameter]:
        """The parameters the stage trains, by name."""
        raise NotImplementedError

    def loss(self, config: TrainConfig, engine, batch: TrainBatch) -> dict[str, torch.Tensor]:
        """Forward one micro-batch through ``engine``: {"loss": total, component: value, ...}."""
        raise NotImplementedError

    def forward(self, engine, batch: TrainBatch):
        return engine(batch.model, with_saliency=self.with_saliency, out_sizes=batch.sizes)


def freeze_all_but(model: factory.AssessorModel, chosen: dict[str, torch.nn.Parameter]) -> dict:
    """Freeze every parameter of the network except ``chosen``, which is returned, in float32: the
    trainable weights are float32 masters whatever the base's precision (a fully trained module such
    as the tiny preset's LM head comes as a copy in the base's dtype)."""
    model.network.requires_grad_(False)
    for p in chosen.values():
        if not hasattr(p, "ds_id"):  # a ZeRO-3 partitioned copy keeps its dtype (DeepSpeed owns its storage)
            p.data = p.data.float()
        p.requires_grad_(True)
    return chosen


def lora_parameters(model: factory.AssessorModel) -> dict[str, torch.nn.Parameter]:
    chosen = {n: p for n, p in model.network.backbone.named_parameters() if "lora_" in n or "modules_to_save" in n}
    if not chosen:
        raise ValueError("no LoRA parameters found: the assessor has no adapter")
    return chosen


def _after_previous_stage(config: TrainConfig) -> None:
    if not config.init_from:
        raise ValueError(f"stage {config.stage} needs 'init_from' (the previous stage's final/ folder)")
    if config.sampling is not None:
        raise ValueError("'sampling' is set in stage 1 only; later stages use the checkpoint's")


class InstructionTuning(Stage):
    """Stage 1: LoRA on the LLM learns to answer the three questions; LM loss on the answers."""

    number, description = 1, "instruction tuning"

    def check(self, config: TrainConfig) -> None:
        super().check(config)
        if not config.base:
            raise ValueError("stage 1 needs 'base' (a Qwen2.5-VL folder, or a preset such as 'preset:tiny')")

    def tasks(self, config: TrainConfig) -> tuple[str, ...]:
        return TASKS

    def init_model(self, config: TrainConfig, device: torch.device) -> factory.AssessorModel:
        model = factory.new_model(config.base, device=device, sampling=config.sampling, seed=config.seed,
                                  dtype=config.dtype, attention=config.attention)
        factory.add_lora(model, config.lora)
        return model

    def trainable(self, model: factory.AssessorModel) -> dict[str, torch.nn.Parameter]:
        return freeze_all_but(model, lora_parameters(model))

    def loss(self, config: TrainConfig, engine, batch: TrainBatch) -> dict[str, torch.Tensor]:
        out = self.forward(engine, batch)
        return {"loss": out.lm_loss, "lm_loss": out.lm_loss}


class Regression(Stage):
    """Stage 2: LoRA + regression head on both MOS (L1), optionally keeping the LM loss and adding a
    Bradley-Terry ranking loss."""

    number, description = 2, "LoRA + regression"

    def check(self, config: TrainConfig) -> None:
        super().check(config)
        _after_previous_stage(config)

    def tasks(self, config: TrainConfig) -> tuple[str, ...]:
        # The distortion question only keeps its answer alive when the LM loss is kept.
        return TASKS if config.lm_weight > 0 else LEVEL_TASKS

    def init_model(self, config: TrainConfig, device: torch.device) -> factory.AssessorModel:
        model = factory.load_model(config.init_from, device=device, trainable=True, dtype=config.dtype,
                                   attention=config.attention)
        if model.config.regression.video_mean != config.regression_video_mean:
            # Stage 1 leaves the head at its initialisation, so a head of the other kind loses nothing
            # trained (from a stage-2 checkpoint it would; say so).
            if 2 in model.config.trained_stages:
                print(f"stage 2: {config.init_from}'s trained regression head is replaced by a fresh one "
                      f"(regression_video_mean={config.regression_video_mean})")
            factory.replace_regression_head(model, config.regression_video_mean, seed=config.seed)
        return model

    def trainable(self, model: factory.AssessorModel) -> dict[str, torch.nn.Parameter]:
        head = {f"regression.{n}": p for n, p in model.network.regression.named_parameters()}
        return freeze_all_but(model, lora_parameters(model) | head)

    def loss(self, config: TrainConfig, engine, batch: TrainBatch) -> dict[str, torch.Tensor]:
        out = self.forward(engine, batch)
        l1 = regression_loss(out.scores, batch.mos)
        terms = {"regression_l1": l1}
        total = l1
        if config.lm_weight > 0:
            terms["lm_loss"] = out.lm_loss
            total = total + config.lm_weight * out.lm_loss
        if config.pairwise_weight > 0:
            terms["pairwise"] = pairwise_loss(out.scores, batch.mos, config.pairwise_temperature)
            total = total + config.pairwise_weight * terms["pairwise"]
        return {"loss": total, **terms}


class SaliencyTraining(Stage):
    """Stage 3: the saliency decoder from scratch, everything else frozen (paper Eq. 5)."""

    number, description = 3, "saliency decoder"
    with_saliency = True
    needs = "saliency maps (views)"

    def trains_on(self, record) -> bool:
        return bool(record.views)

    def check(self, config: TrainConfig) -> None:
        super().check(config)
        _after_previous_stage(config)

    def tasks(self, config: TrainConfig) -> tuple[str, ...]:
        return ("quality",)  # one question: the video-token states do not depend on it

    def init_model(self, config: TrainConfig, device: torch.device) -> factory.AssessorModel:
        model = factory.load_model(config.init_from, device=device, trainable=True, dtype=config.dtype,
                                   attention=config.attention)
        depths = config.saliency_vision_depths
        if depths is not None and depths != model.config.saliency.vision_depths:
            if 3 in model.config.trained_stages:
                print(f"stage 3: {config.init_from}'s trained saliency decoder is replaced by a fresh one "
                      f"(saliency_vision_depths={depths})")
            factory.replace_saliency_decoder(model, depths, seed=config.seed)
        return model

    def trainable(self, model: factory.AssessorModel) -> dict[str, torch.nn.Parameter]:
        return freeze_all_but(model, {f"saliency.{n}": p for n, p in model.network.saliency.named_parameters()})

    def loss(self, config: TrainConfig, engine, batch: TrainBatch) -> dict[str, torch.Tensor]:
        out = self.forward(engine, batch)
        parts = [saliency_loss(out.saliency_logits[b][g], target, config.saliency_loss)
                 for b, targets in enumerate(batch.saliency) for g, target in targets]
        if not parts:
            raise ValueError(f"batch {batch.ids} has no saliency maps (manifest without 'views'?)")
        keys = sorted({k for p in parts for k in p})
        return {k: torch.stack([p[k] for p in parts if k in p]).mean() for k in keys}


STAGES: dict[int, Stage] = {s.number: s for s in (InstructionTuning(), Regression(), SaliencyTraining())}
