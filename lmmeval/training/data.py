"""Manifest records -> model batches with the targets of each stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..annotations import load_saliency_png
from ..labels import DIMENSIONS
from ..media import Visual, load_visual
from ..model.lmme import ModelBatch, build_batch
from ..prompts import distortion_answer


def answers_for(record: dict) -> dict[str, str]:
    """What the model should say after each answer stem (see ``prompts``)."""
    stem_free = distortion_answer(record["categories"]).split(":", 1)[1]  # " Eye Distortions; ..."
    return {"quality": f" {record['level']['quality']}.", "authenticity": f" {record['level']['authenticity']}.",
            "distortions": stem_free}


def saliency_targets(record: dict, visual: Visual) -> list[tuple[int, np.ndarray]]:
    """(temporal group, map) for each annotated view: the group holding the sampled
    frame nearest to the view's frame. Maps are [H, W] at the video's size, in [0, 1]."""
    out = []
    frames = np.asarray(visual.frame_indices)
    for view in record.get("views", {}).values():
        j = int(np.abs(frames - view["frame"]).argmin())
        out.append((j // 2, load_saliency_png(view["saliency_path"])))
    return out


@dataclass
class TrainBatch:
    model: ModelBatch
    ids: list[str]  # record ids, for error reports
    mos: torch.Tensor  # (B, 2) quality, authenticity
    saliency: list[list[tuple[int, torch.Tensor]]]  # per sample: (group, (H, W) map)
    sizes: list[tuple[int, int]]  # per sample: the video's (H, W)

    def to(self, device) -> TrainBatch:
        return TrainBatch(self.model.to(device), self.ids, self.mos.to(device),
                          [[(g, m.to(device)) for g, m in s] for s in self.saliency], self.sizes)


class ManifestData:
    """Records of a manifest, decoded on demand, in a seeded order that a resume can replay."""

    def __init__(self, records: list[dict], processor, sampling, tasks: tuple[str, ...], seed: int = 0,
                 with_saliency: bool = False):
        if not records:
            raise ValueError("no training records (check 'fold': every record may be held out)")
        self.records, self.processor, self.sampling = records, processor, sampling
        self.tasks, self.seed, self.with_saliency = tasks, seed, with_saliency

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.records))

    def batch(self, indices) -> TrainBatch:
        records = [self.records[i] for i in indices]
        visuals = [load_visual(str(r["video_path"]), self.sampling) for r in records]
        model_batch = build_batch(self.processor, visuals, self.tasks, answers=[answers_for(r) for r in records])
        mos = torch.tensor([[r["mos"][d] for d in DIMENSIONS] for r in records], dtype=torch.float32)
        sal = [[(g, torch.from_numpy(m)) for g, m in saliency_targets(r, v)] if self.with_saliency else []
               for r, v in zip(records, visuals)]
        return TrainBatch(model_batch, [r["id"] for r in records], mos, sal, [v.original_size for v in visuals])
