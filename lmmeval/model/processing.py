"""Sampled frames and questions -> the tensors LMME3DHF takes (``ModelBatch``).

One sample is asked several questions (``prompts.TASKS``), each a single-turn chat that
starts with the same video. The video is preprocessed once per sample; its K question
sequences share it (the model runs the vision tower once and reuses its tokens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..labels import LEVELS
from ..prompts import LEVEL_TASKS, question_prompt


def level_token_ids(tokenizer) -> list[int]:
    """First token of each level word as it follows an answer stem (" good"), checked distinct.

    Qwen's BPE splits some words into several tokens; Q-Align-style probabilities only
    need the first tokens to differ. If they do not, the probabilities would be
    meaningless, so this fails loudly instead.
    """
    firsts = []
    for level in LEVELS:
        ids = tokenizer(" " + level, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"tokenizer encodes level word {level!r} to nothing")
        firsts.append(ids[0])
    if len(set(firsts)) != len(LEVELS):
        pieces = {lvl: tokenizer.convert_ids_to_tokens(i) for lvl, i in zip(LEVELS, firsts)}
        raise ValueError(f"level words do not start with distinct tokens in this tokenizer: {pieces}")
    return firsts


@dataclass
class ModelBatch:
    """Processor output for B samples x K tasks, sequences sample-major (index b*K + k).

    ``pixel_values_videos``/``video_grid_thw`` hold each sample's video once; the
    K sequences of a sample share its vision features. Sequences are left-padded,
    so every sequence ends with its answer (training) or its stem (inference).
    """

    input_ids: torch.Tensor  # (B*K, L)
    attention_mask: torch.Tensor  # (B*K, L)
    mm_token_type_ids: torch.Tensor  # (B*K, L)
    pixel_values_videos: torch.Tensor  # (patches of all B videos, C*tp*p*p)
    video_grid_thw: torch.Tensor  # (B, 3)
    second_per_grid_ts: torch.Tensor | None  # (B,)
    tasks: tuple[str, ...]  # the K tasks
    stem_end: torch.Tensor  # (B*K,) index of the last stem token (level logits / regression state)
    labels: torch.Tensor | None = None  # (B*K, L) answer tokens, -100 elsewhere

    @property
    def num_samples(self) -> int:
        return self.video_grid_thw.shape[0]

    def to(self, device) -> ModelBatch:
        device = torch.device(device)
        cuda = device.type == "cuda"

        def move(v):  # pinned host memory lets the copy overlap with queued GPU work
            return (v.pin_memory() if cuda else v).to(device, non_blocking=cuda)

        return ModelBatch(**{k: (move(v) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()})


def preprocess_videos(processor, visuals) -> dict[str, torch.Tensor]:
    """A batch's vision inputs: the video processor's ``pixel_values_videos`` (all patches),
    ``video_grid_thw`` (B, 3), and ``second_per_grid_ts`` (B,), seconds per temporal patch.

    The frames arrive already sampled and resized by ``lmmeval.io.media`` (sides multiples of
    the patch geometry, within the checkpoint's pixel budget), so the processor does not resize
    them again: its own pixel budget, which a base may set otherwise, plays no part.
    """
    video_processor = processor.video_processor
    videos = [torch.from_numpy(v.frames).permute(0, 3, 1, 2) for v in visuals]  # (T, 3, h, w)
    pixels = video_processor(videos=videos, video_metadata=[{"fps": v.fps, "total_num_frames": len(v.frames)}
                                                            for v in visuals],
                             do_sample_frames=False, do_resize=False, return_tensors="pt")
    seconds = torch.tensor([video_processor.temporal_patch_size / v.fps for v in visuals])
    return {"pixel_values_videos": pixels["pixel_values_videos"], "video_grid_thw": pixels["video_grid_thw"],
            "second_per_grid_ts": seconds}


def build_batch(processor, visuals, tasks: tuple[str, ...] = LEVEL_TASKS, answers: list[dict] | None = None,
                pixels: dict[str, torch.Tensor] | None = None) -> ModelBatch:
    """Tokenise B visuals x K tasks; ``answers[b][task]`` (text after the stem) adds labels.

    Each answer continues its stem directly, e.g. " good." or " Eye Distortions.",
    and is followed by ``<|im_end|>``; the labels cover the answer and the end token
    (the stem is part of the prompt, so the model learns to fill it, not repeat it). An answer
    of None leaves its sequence a bare prompt with no labels (an unlabelled target).
    ``pixels`` (``preprocess_videos``'s dict, or one built the same way, e.g. by the
    differentiable reward) replaces preprocessing ``visuals``, which may then be None.
    """
    tokenizer, video_processor = processor.tokenizer, processor.video_processor
    # Pixels once per video (the processor would redo them for every sequence that shows it).
    pixels = pixels if pixels is not None else preprocess_videos(processor, visuals)
    grid = pixels["video_grid_thw"]  # (B, 3)
    # Text: each sequence's single <|video_pad|> expanded to its video's token count, as the
    # processor's own expansion does (tests compare the two).
    texts, suffix_lens = [], []
    for b in range(len(grid)):
        video_tokens = processor.video_token * int(grid[b].prod() // video_processor.merge_size**2)
        for task in tasks:
            text = question_prompt(processor, task).replace(processor.video_token, video_tokens)
            if answers is not None:
                answer = answers[b][task]
                suffix = answer + "<|im_end|>" if answer is not None else ""
                suffix_lens.append(len(tokenizer(suffix, add_special_tokens=False)["input_ids"]) if suffix else 0)
                text += suffix
            texts.append(text)
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    seq_len = enc["input_ids"].shape[1]
    suffix = torch.tensor(suffix_lens) if answers is not None else torch.zeros(len(texts), dtype=torch.long)
    labels = None
    if answers is not None:
        positions = torch.arange(seq_len)[None, :]
        labels = torch.where(positions >= seq_len - suffix[:, None], enc["input_ids"], torch.full_like(enc["input_ids"], -100))
    return ModelBatch(
        input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
        mm_token_type_ids=(enc["input_ids"] == processor.video_token_id).long() * 2,  # 2 marks video tokens
        pixel_values_videos=pixels["pixel_values_videos"], video_grid_thw=grid,
        second_per_grid_ts=pixels["second_per_grid_ts"],
        tasks=tuple(tasks), stem_end=seq_len - 1 - suffix, labels=labels,
    )
