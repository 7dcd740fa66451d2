"""Manifest records -> model batches with the targets of each stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.manifest import Record
from ..data.saliency_maps import load_saliency_png
from ..io.media import Visual, frame_size, load_visual, sample_count
from ..labels import DIMENSIONS
from ..model.configuration import PatchGeometry, SamplingConfig
from ..model.processing import ModelBatch, build_batch
from ..prompts import answer_suffixes


def saliency_targets(record: Record, visual: Visual, geometry: PatchGeometry) -> list[tuple[int, np.ndarray]]:
    """(temporal group, map) for each annotated view: the group holding the sampled frame
    nearest to the view's frame. Maps are [H, W] at the video's size, in [0, 1]."""
    out = []
    frames = np.asarray(visual.frame_indices)
    for view in record.views.values():
        j = int(np.abs(frames - view.frame).argmin())
        out.append((j // geometry.temporal_patch_size, load_saliency_png(view.saliency_path)))
    return out


def estimated_tokens(record: Record, sampling: SamplingConfig, geometry: PatchGeometry) -> float:
    """Video tokens a record will give under ``sampling``, from the manifest alone (no decoding).

    Sampled frames as ``load_visual`` picks them; one token per ``geometry.factor``-square of the
    frame as ``load_visual`` resizes it (``frame_size``), per temporal patch. Records without
    ``width``/``height`` (manifests from before they were stored) count as full-budget frames.
    """
    if record.num_frames is None or record.fps is None:
        raise ValueError(f"record {record.id}: no num_frames/fps in the manifest, which length grouping needs")
    # First frame's start to last frame's end, as load_visual measures it.
    frames = sample_count(record.num_frames / record.fps, sampling, geometry)
    if record.width is not None and record.height is not None:
        h, w = frame_size(record.height, record.width, sampling, geometry)
        pixels = h * w
    else:
        pixels = sampling.max_pixels
    return geometry.llm_tokens(frames, pixels)


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
    """Records of a manifest, decoded on demand, in a seeded order that a resume can replay.

    ``processor`` tokenises the questions and answers; ``geometry`` is its patch geometry
    (``PatchGeometry.of(processor)``), given apart so that the order can be planned without one.
    """

    def __init__(self, records: list[Record], processor, sampling: SamplingConfig, geometry: PatchGeometry,
                 tasks: tuple[str, ...], seed: int = 0, with_saliency: bool = False, group_by_length: bool = False,
                 global_batch: int = 1):
        if not records:
            raise ValueError("no training records (check 'fold': every record may be held out)")
        self.records, self.processor, self.sampling, self.geometry = records, processor, sampling, geometry
        self.tasks, self.seed, self.with_saliency = tasks, seed, with_saliency
        self.group_by_length, self.global_batch = group_by_length, global_batch
        self.lengths = (np.array([estimated_tokens(r, sampling, geometry) for r in records]) if group_by_length
                        else None)

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
        visuals = [load_visual(str(r.video_path), self.sampling, self.geometry) for r in records]
        answers = [answer_suffixes(r.level, r.categories) for r in records]
        model_batch = build_batch(self.processor, visuals, self.tasks, answers=answers)
        mos = torch.tensor([[r.mos[d] for d in DIMENSIONS] for r in records], dtype=torch.float32)
        sal = [[(g, torch.from_numpy(m)) for g, m in saliency_targets(r, v, self.geometry)] if self.with_saliency
               else [] for r, v in zip(records, visuals)]
        return TrainBatch(model_batch, [r.id for r in records], mos, sal, [v.original_size for v in visuals])
