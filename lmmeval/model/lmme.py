"""LMME3DHF: Qwen2.5-VL + LoRA + regression head + saliency decoder (paper Fig. 7).

One sample is asked several questions (``TASKS``), each a single-turn chat that
starts with the same video. The vision tower runs once per sample; its merged
tokens are reused by every question's sequence through transformers'
``mm_encoder_outputs``. From one pass over the language model we read:

- level probabilities (Q-Align style): the logits after each answer stem
  ("The quality of the human face in this video is"), softmaxed over the first
  tokens of the five level words;
- scores: the regression head on the hidden state at that same position (and, if its
  config says so, on the mean hidden state over the video tokens);
- saliency: the decoder on the vision tower's patch features (window order
  undone) and the LLM's hidden states at the video tokens;
- the language-model loss on the answers, when training.

The distortion categories are the greedy answer to the distortion question.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..labels import LEVELS
from ..prompts import ANSWER_STEMS, DESCRIBE_QUESTION, DISTORTION_ANSWER_STEM, DISTORTION_QUESTION, QUESTIONS
from .heads import RegressionHead, SaliencyDecoder, restore_patch_grid

# The questions asked about every sample, in sequence order within a sample.
TASKS = ("quality", "authenticity", "distortions")
LEVEL_TASKS = ("quality", "authenticity")


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


def question_prompt(processor, task: str) -> str:
    """Chat prompt for one task, ending where the answer's level word (or list) begins.

    Tasks: "quality", "authenticity" (stem ends before the level word), "distortions"
    (stem ends before the category list), "describe" (free text, no stem).
    """
    questions = {**QUESTIONS, "distortions": DISTORTION_QUESTION, "describe": DESCRIBE_QUESTION}
    stems = {**ANSWER_STEMS, "distortions": DISTORTION_ANSWER_STEM, "describe": ""}
    if task not in questions:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(questions)}")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": questions[task]}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + stems[task]


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
    ``video_grid_thw`` (B, 3), and ``second_per_grid_ts`` (B,), seconds per temporal patch."""
    video_processor = processor.video_processor
    videos = [torch.from_numpy(v.frames).permute(0, 3, 1, 2) for v in visuals]  # (T, 3, h, w)
    pixels = video_processor(videos=videos, video_metadata=[{"fps": v.fps, "total_num_frames": len(v.frames)}
                                                            for v in visuals],
                             do_sample_frames=False, return_tensors="pt")
    grid = pixels["video_grid_thw"]
    expected = [v.frames.shape[1] * v.frames.shape[2] // (14 * 14) for v in visuals]
    if (grid[:, 1] * grid[:, 2]).tolist() != expected:
        raise ValueError(f"the processor resized frames differently from the sampling config "
                         f"({(grid[:, 1] * grid[:, 2]).tolist()} vs {expected} patches); widen the processor's "
                         "min/max pixels or match sampling.max_pixels to it")
    seconds = torch.tensor([video_processor.temporal_patch_size / v.fps for v in visuals])
    return {"pixel_values_videos": pixels["pixel_values_videos"], "video_grid_thw": grid, "second_per_grid_ts": seconds}


def build_batch(processor, visuals, tasks: tuple[str, ...] = LEVEL_TASKS, answers: list[dict] | None = None,
                pixels: dict[str, torch.Tensor] | None = None) -> ModelBatch:
    """Tokenise B visuals x K tasks; ``answers[b][task]`` (text after the stem) adds labels.

    Each answer continues its stem directly, e.g. " good." or " Eye Distortions.",
    and is followed by ``<|im_end|>``; the labels cover the answer and the end token
    (the stem is part of the prompt, so the model learns to fill it, not repeat it).
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
                suffix = answers[b][task] + "<|im_end|>"
                suffix_lens.append(len(tokenizer(suffix, add_special_tokens=False)["input_ids"]))
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


def video_token_mean(hidden: torch.Tensor, input_ids: torch.Tensor, video_token_id: int) -> torch.Tensor:
    """(n, L, d) hidden states -> (n, d) mean over each sequence's video-token positions.

    Video tokens precede the question, so under causal attention their states are the
    same in every question's sequence of a sample: one sequence per sample suffices.
    """
    mask = (input_ids == video_token_id).to(hidden.dtype)[..., None]  # (n, L, 1)
    counts = mask.sum(1)  # (n, 1)
    if bool((counts == 0).any()):
        raise ValueError("a sequence has no video tokens to average")
    return (hidden * mask).sum(1) / counts


def takes_encoder_outputs(module) -> bool:
    """Whether this transformers version lets ``module`` (the Qwen2.5-VL model, or the generating
    model, whose ``generate`` checks the same) take precomputed vision features, ``mm_encoder_outputs``."""
    return "mm_encoder_outputs" in inspect.signature(module.forward).parameters


class LMME3DHF(nn.Module):
    """The assessor network. ``backbone`` is a ``Qwen2_5_VLForConditionalGeneration``
    (LoRA layers, if any, are injected into it in place by peft)."""

    def __init__(self, backbone, tokenizer, regression: RegressionHead, saliency: SaliencyDecoder):
        super().__init__()
        self.backbone = backbone
        self.regression = regression
        self.saliency = saliency
        self.register_buffer("level_ids", torch.tensor(level_token_ids(tokenizer)), persistent=False)

    def _encode_videos(self, batch: ModelBatch):
        """Run the vision tower once per sample: (merged tokens per video, patch features per video)."""
        core = self.backbone.model
        out = core.get_video_features(batch.pixel_values_videos, batch.video_grid_thw)
        merge = core.visual.spatial_merge_size
        patch_counts = batch.video_grid_thw.prod(-1).tolist()
        return out.pooler_output, torch.split(out.last_hidden_state, patch_counts), merge

    def forward(self, batch: ModelBatch, with_saliency: bool = True, out_sizes: list[tuple[int, int]] | None = None) -> dict:
        """Outputs for ``batch`` (see module docstring). Keys:

        level_logits (B, 2, 5) for quality/authenticity; scores (B, 2) on [0, 100];
        lm_loss (scalar) when ``batch.labels`` is set; saliency_logits: list of (t, H, W)
        per sample when ``with_saliency``; video_states: list of (tokens, d);
        video_features: the vision tower's merged tokens per sample, (tokens, d) each.
        """
        k = len(batch.tasks)
        merged, patches, merge = self._encode_videos(batch)
        grid = batch.video_grid_thw.repeat_interleave(k, 0)
        sec = batch.second_per_grid_ts.repeat_interleave(k, 0) if batch.second_per_grid_ts is not None else None
        common = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      mm_token_type_ids=batch.mm_token_type_ids, video_grid_thw=grid, second_per_grid_ts=sec)
        if takes_encoder_outputs(self.backbone.model):
            shared = BaseModelOutputWithPooling(pooler_output=tuple(m for m in merged for _ in range(k)))
            out = self.backbone.model(**common, mm_encoder_outputs={"video": shared})
        else:  # older transformers: the vision tower runs again for each sequence
            pix = torch.cat([p for p in torch.split(batch.pixel_values_videos, batch.video_grid_thw.prod(-1).tolist()) for _ in range(k)])
            out = self.backbone.model(**common, pixel_values_videos=pix)
        hidden = out.last_hidden_state  # (B*K, L, d)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        stem_states = hidden[rows, batch.stem_end]  # (B*K, d)
        result: dict = {"video_features": merged}  # per video (tokens, d): generate() can reuse them

        level_rows = [i for i in range(hidden.shape[0]) if batch.tasks[i % k] in LEVEL_TASKS]
        if level_rows:
            n_level = sum(t in LEVEL_TASKS for t in batch.tasks)
            states = stem_states[level_rows].reshape(batch.num_samples, n_level, -1)  # (B, 2, d)
            logits = self.backbone.lm_head(states)  # (B, 2, vocab)
            result["level_logits"] = logits[..., self.level_ids].float()  # (B, 2, 5)
            if n_level == 2:
                video_mean = None
                if self.regression.config.video_mean:
                    first = torch.arange(batch.num_samples, device=hidden.device) * k  # each sample's first sequence
                    video_mean = video_token_mean(hidden[first], batch.input_ids[first], self.backbone.config.video_token_id)
                result["scores"] = self.regression(states, video_mean)  # (B, 2)

        if batch.labels is not None:
            # Only the answer positions need vocabulary logits: slice before the LM head.
            answer_len = int((batch.labels != -100).sum(1).max())
            h = hidden[:, -answer_len - 1:-1]  # states predicting the last answer_len tokens
            logits = self.backbone.lm_head(h).float()
            target = batch.labels[:, -answer_len:]
            result["lm_loss"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)

        if with_saliency:
            video_token = self.backbone.config.video_token_id
            maps, states_out = [], []
            for b in range(batch.num_samples):
                row = b * k  # the sample's first sequence: video tokens precede the question,
                # so under causal attention their states are the same in every sequence
                states = hidden[row][batch.input_ids[row] == video_token]  # (t*h/m*w/m, d)
                t, gh, gw = batch.video_grid_thw[b].tolist()
                window_index = _window_index(self.backbone.model.visual, (t, gh, gw), hidden.device)
                vision_grid = restore_patch_grid(patches[b], (t, gh, gw), merge, window_index)
                size = out_sizes[b] if out_sizes else (gh * 14, gw * 14)
                maps.append(self.saliency(vision_grid, states, size))
                states_out.append(states)
            result["saliency_logits"] = maps
            result["video_states"] = states_out
        return result


def _window_index(visual, grid_thw: tuple[int, int, int], device) -> torch.Tensor:
    """The vision tower's window permutation for one video (transformers' own function)."""
    try:
        from transformers.vision_utils import get_vision_window_index
    except ImportError:  # transformers < 5.2x keeps it as a method of the vision tower
        return visual.get_window_index(torch.tensor([grid_thw]))[0].to(device)
    index, _ = get_vision_window_index(torch.tensor([grid_thw]), spatial_merge_size=visual.spatial_merge_size,
                                       window_size=visual.window_size, patch_size=visual.patch_size)
    return index.to(device)
