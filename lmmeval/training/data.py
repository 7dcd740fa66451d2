"""Manifest records -> model batches with the targets of each stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..annotations import load_saliency_png
from ..labels import DIMENSIONS
from ..media import Visual, frame_size, load_visual, sample_times
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


def estimated_tokens(record: dict, sampling) -> float:
    """Video tokens a record will give under ``sampling``, from the manifest alone (no decoding).

    Sampled frames as ``load_visual`` picks them; per temporal pair of frames, one
    token per 28 x 28 pixels of the frame as ``load_visual`` resizes it (``frame_size``).
    Records without ``width``/``height`` (manifests from before they were stored)
    count as full-budget frames.
    """
    duration = (record["num_frames"] - 1) / record["fps"]  # first to last frame, as load_visual measures it
    frames = len(sample_times(duration, sampling.fps, sampling.min_frames, sampling.max_frames))
    if "width" in record and "height" in record:
        h, w = frame_size(record["height"], record["width"], sampling)
        pixels = h * w
    else:
        pixels = sampling.max_pixels
    return frames / 2 * pixels / (28 * 28)


# Length grouping sorts windows of this many global batches by length.
GROUP_WINDOW = 32


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
                 with_saliency: bool = False, group_by_length: bool = False, global_batch: int = 1):
        if not records:
            raise ValueError("no training records (check 'fold': every record may be held out)")
        self.records, self.processor, self.sampling = records, processor, sampling
        self.tasks, self.seed, self.with_saliency = tasks, seed, with_saliency
        self.group_by_length, self.global_batch = group_by_length, global_batch
        self.lengths = np.array([estimated_tokens(r, sampling) for r in records]) if group_by_length else None

    def order(self, epoch: int) -> np.ndarray:
        """The epoch's record order, a pure function of (seed, epoch) so a resume replays it.

        With ``group_by_length``, each window of ``GROUP_WINDOW`` global batches is
        sorted by estimated length, so that a batch holds videos of similar token
        counts (little padding), and then the global batches are shuffled, so that
        lengths do not rise monotonically through the epoch.
        """
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.records))
        if not self.group_by_length:
            return order
        window = self.global_batch * GROUP_WINDOW
        for start in range(0, len(order), window):
            part = order[start:start + window]
            order[start:start + window] = part[np.argsort(self.lengths[part], kind="stable")]
        full = len(order) // self.global_batch * self.global_batch
        blocks = order[:full].reshape(-1, self.global_batch)  # (batches, global batch)
        return np.concatenate([blocks[rng.permutation(len(blocks))].reshape(-1), order[full:]])

    def batch(self, indices) -> TrainBatch:
        records = [self.records[i] for i in indices]
        visuals = [load_visual(str(r["video_path"]), self.sampling) for r in records]
        model_batch = build_batch(self.processor, visuals, self.tasks, answers=[answers_for(r) for r in records])
        mos = torch.tensor([[r["mos"][d] for d in DIMENSIONS] for r in records], dtype=torch.float32)
        sal = [[(g, torch.from_numpy(m)) for g, m in saliency_targets(r, v)] if self.with_saliency else []
               for r, v in zip(records, visuals)]
        return TrainBatch(model_batch, [r["id"] for r in records], mos, sal, [v.original_size for v in visuals])
