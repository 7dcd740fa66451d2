"""Stage 0 of the tiny preset: pretrain its Qwen2.5-VL vision tower by distillation from a CNN.

Why: the backbone probe (``research/probe.py``, docs/results.md) shows the tiny preset's vision
tower, trained from random weights on the study's labels, stalls (quality SRCC ~0.40) where a
ResNet-18 reaches 0.83 on the same videos. Qwen2.5-VL-7B starts from a tower pretrained on
billions of images; the tiny preset cannot download one, so this module makes one from the
project's own data, the way DeiT trains ViTs on little data: let a CNN teach it.

1. Teacher: a ResNet-18 from random weights, trained on a synthetic corpus *disjoint* from the
   study the assessor is evaluated on (rendered with another seed), with the probe's readout and
   loss (MOS + distortion categories).
2. Dense targets: the teacher's last feature map (512 channels, stride 32) on every sampled
   frame, average-pooled onto the merged-token grid (one token per merged patch square) and averaged
   over each pair of frames (the tower's temporal patch is 2 frames): one 512-d target per merged
   token, standardised per channel over the corpus.
3. Student: the tiny base's own vision tower (patch embedding, window/full-attention blocks, 2x2
   merger), fed exactly the processor's patches. Loss: MSE between a linear projection of each
   merged token and its target, plus the label loss through a readout of the mean token. The
   projection and readout are thrown away afterwards.
4. The trained tower replaces the random one in a copy of the tiny base: a Qwen2.5-VL folder that
   stage 1 takes as ``base`` (its language model is still the random tiny one).

Usage::

    from lmmeval.training.vision_pretrain import VisionPretrainConfig, load_corpus, pretrain_vision
    corpus, held_out = load_corpus(["runs/pretrain/prepared/manifest.jsonl"], "runs/cv/prepared/manifest.jsonl")
    report = pretrain_vision(corpus, sampling, "runs/pretrain/base", VisionPretrainConfig(), held_out)
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import training_record
from ..data.manifest import Record, check_disjoint, load_manifest
from ..io.media import Visual
from ..model.configuration import PatchGeometry, build_dataclass, read_yaml
from .baseline import label_loss, targets
from .encoders import FrameEncoder, Probe, QwenVisionEncoder, decode, fit, heldout_metrics

TEACHER_DIM = 512  # ResNet-18's last feature map


@dataclass
class VisionPretrainConfig:
    teacher_epochs: int = 10  # ResNet-18 epochs over the corpus (6 left it short of its plateau)
    teacher_frames: int = 4  # frames per video the teacher trains on (its targets then cover every frame)
    teacher_lr: float = 2e-3  # peak of the one-cycle schedule
    student_epochs: int = 50  # vision-tower epochs; the tower is small (0.34 M parameters), epochs are cheap
    student_lr: float = 2e-3
    batch_size: int = 16
    weight_decay: float = 0.05
    distill_weight: float = 1.0  # MSE to the teacher's standardised feature map, per merged token
    label_weight: float = 1.0  # L1 on MOS + BCE on categories, through the throw-away readout
    seed: int = 0  # also the seed of the tiny base whose tower is trained

    def __post_init__(self) -> None:
        for name in ("teacher_epochs", "teacher_frames", "student_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("teacher_lr", "student_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.distill_weight < 0 or self.label_weight < 0 or self.distill_weight + self.label_weight == 0:
            raise ValueError("distill_weight and label_weight must be >= 0 and not both 0")


def load_vision_pretrain_config(path: str | Path) -> VisionPretrainConfig:
    """Read stage 0's YAML; unknown keys and invalid values are errors naming the file."""
    return build_dataclass(VisionPretrainConfig, read_yaml(path), str(path), {})


def load_corpus(manifests: list[str], eval_manifest: str | None = None) -> tuple[list[Record], list[Record]]:
    """(corpus, held-out records): the corpus studies joined, and the study the tower is scored on.

    A manifest named twice is refused (its videos would count twice), and so is any corpus study
    that shares videos with the held-out one (``check_disjoint``: render seed, else file hashes),
    before anything is trained.
    """
    if repeated := sorted({path for path in manifests if manifests.count(path) > 1}):
        raise ValueError(f"--manifest names {', '.join(repeated)} more than once")
    studies = {path: load_manifest(path) for path in manifests}
    held_out = load_manifest(eval_manifest) if eval_manifest else []
    if held_out:
        check_disjoint(eval_manifest, held_out, studies)
    return [record for records in studies.values() for record in records], held_out


def pool_to_tokens(feature_map: torch.Tensor, merged_grid: tuple[int, int], temporal: int) -> torch.Tensor:
    """(frames, c, h, w) per-frame features -> (frames // temporal * gh * gw, c) targets, one per merged token.

    Each frame's map is average-pooled onto the (gh, gw) merged-token grid, then each run of
    ``temporal`` frames (the tower's temporal patch: frame pairs in Qwen2.5-VL) is averaged; rows come
    in the tower's output order (t, h, w) raster. ``frames`` must be whole temporal patches (pad by
    repeating the last, as the processor does).
    """
    frames, c = feature_map.shape[:2]
    if frames % temporal:
        raise ValueError(f"pool_to_tokens needs whole temporal patches of {temporal} frames, got {frames} frames")
    gh, gw = merged_grid
    pooled = F.adaptive_avg_pool2d(feature_map, (gh, gw))  # (frames, c, gh, gw)
    pooled = pooled.reshape(frames // temporal, temporal, c, gh, gw).mean(1)  # (t, c, gh, gw)
    return pooled.permute(0, 2, 3, 1).reshape(-1, c)  # (t * gh * gw, c)


@torch.no_grad()
def dense_targets(teacher: FrameEncoder, visuals: list[Visual], grids: torch.Tensor,
                  geometry: PatchGeometry) -> torch.Tensor:
    """(n, merged tokens, 512): the teacher's feature map of every sampled frame, per merged token."""
    teacher.eval()
    out = []
    merge = geometry.merge_size
    for v, grid in zip(visuals, grids.tolist()):
        # v.frames (T, h, w, 3) uint8: T is whole temporal patches, load_visual fills the last one.
        fmap = teacher.feature_map(torch.from_numpy(v.frames).permute(0, 3, 1, 2))  # (T, 512, h/32, w/32)
        tokens = pool_to_tokens(fmap, (grid[1] // merge, grid[2] // merge), geometry.temporal_patch_size)
        if len(tokens) != grid[0] * grid[1] * grid[2] // merge**2:
            raise ValueError(f"{v.source}: {len(tokens)} teacher tokens for a {grid} patch grid")
        out.append(tokens)
    return torch.stack(out)


def pretrain_vision(corpus: list[Record], sampling, out_dir: str | Path,
                    config: VisionPretrainConfig = VisionPretrainConfig(), eval_records: list[Record] | None = None,
                    progress: bool = True, corpus_manifests: list[str] | None = None) -> dict:
    """Train the teacher on ``corpus``, distil it into the tiny base's vision tower, and write that
    base to ``out_dir``. ``eval_records`` (a disjoint study) are scored after every epoch of both,
    through their readouts: held-out SRCC and exact-set accuracy in the returned history.
    ``corpus_manifests`` (the manifests ``corpus`` was loaded from) are recorded in the base's
    ``training_data.json``, which the stages trained on it carry on (``lmmeval.data.training_record``)."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from ..model.presets import geometry as preset_geometry
    from ..model.presets import save_base

    if len(corpus) < config.batch_size:
        raise ValueError(f"{len(corpus)} corpus videos are fewer than one batch of {config.batch_size}")
    out_dir = Path(out_dir)
    eval_records = eval_records or []
    torch.manual_seed(config.seed)
    # Each video is decoded once; the teacher's clips, its dense targets and the tower's patches
    # all come from these frames.
    geometry = preset_geometry("tiny")  # the tower trained here is the tiny preset's
    visuals, eval_visuals = decode(corpus, sampling, geometry), decode(eval_records, sampling, geometry)
    mos, cats = targets(corpus)

    # 1. The teacher, trained on the study labels.
    teacher = Probe(FrameEncoder("resnet18", config.teacher_frames))
    clips = teacher.encoder.inputs(visuals)["clips"]  # (n, frames, 3, h, w) uint8

    def teacher_loss(idx):
        scores, logits = teacher(clips=clips[idx])
        return label_loss(scores, logits, mos[idx], cats[idx])

    teacher_history = fit(teacher, len(corpus), teacher_loss, config.teacher_epochs, config.batch_size,
                          config.teacher_lr, config.weight_decay, config.seed, "teacher (resnet18)", progress,
                          _evaluator(teacher, eval_visuals, eval_records))

    # 2. The student: the tower of a fresh tiny base, exactly as stage 1 would load it. It is
    # built beside out_dir and moved there at the end: a half-trained tower is never a base.
    partial = out_dir.with_name(out_dir.name + ".partial")
    save_base(partial, "tiny", seed=config.seed)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(partial, dtype=torch.float32, use_safetensors=True,
                                                               trust_remote_code=False)
    processor = AutoProcessor.from_pretrained(partial, trust_remote_code=False)
    student = QwenVisionEncoder(model.model.visual, processor, model.config.vision_config.out_hidden_size)
    inputs = student.inputs(visuals)  # pixels (n, patches, 1176), grid (n, 3)
    dense = dense_targets(teacher.encoder, visuals, inputs["grid"], PatchGeometry.of(processor))
    mean, std = dense.mean((0, 1)), dense.std((0, 1)) + 1e-6
    dense = (dense - mean) / std  # (n, tokens, 512); per channel, so every channel counts alike in the MSE
    probe = Probe(student)
    project = nn.Linear(student.dim, TEACHER_DIM)
    trained = nn.ModuleDict({"visual": student.visual, "readout": probe.readout, "project": project})

    def student_loss(idx):
        tokens = student.tokens(inputs["pixels"][idx], inputs["grid"][idx])  # (b, tokens, d)
        scores, logits = probe.head(tokens.mean(1))
        loss = config.label_weight * label_loss(scores, logits, mos[idx], cats[idx])
        return loss + config.distill_weight * F.mse_loss(project(tokens), dense[idx])

    student_history = fit(trained, len(corpus), student_loss, config.student_epochs, config.batch_size,
                          config.student_lr, config.weight_decay, config.seed, "student (qwen vision tower)",
                          progress, _evaluator(probe, eval_visuals, eval_records))

    # 3. The base with the trained tower (the language model stays the tiny base's), and what it
    # was trained on, for the training record of every stage built on it.
    model.eval().save_pretrained(partial, safe_serialization=True)
    if corpus_manifests:
        entries = [training_record.study_entry(path, load_manifest(path), 0, "corpus") for path in corpus_manifests]
        training_record.write_record(partial, training_record.merge(None, entries))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    partial.rename(out_dir)
    return {"config": asdict(config), "n_corpus": len(corpus), "n_eval": len(eval_records),
            "teacher": teacher_history, "student": student_history, "base": str(out_dir)}


def _evaluator(model: Probe, visuals: list[Visual], records: list[Record]):
    """Held-out metrics of ``model`` on ``records`` after each epoch (None without records)."""
    if not records:
        return None
    inputs, (mos, cats) = model.encoder.inputs(visuals), targets(records)
    return lambda: heldout_metrics(model, inputs, mos, cats)
