"""`Assessor`: the Python inference API.

    from lmmeval import Assessor
    a = Assessor.from_pretrained()          # the embedded synthetic-data demo checkpoint
    r = a.assess("face.mp4")
    r.quality, r.authenticity, r.quality_level, r.level_probs, r.distortions, r.saliency

Building, loading and saving models is ``lmmeval.model.factory``'s job; this is the front end:
input loading and batching, the forward pass, generation of the distortion answer, and
turning outputs into ``Assessment``s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..io.media import Visual, load_or_error
from ..labels import LEVELS, SCORE_RANGE
from ..model import factory
from ..model.configuration import PatchGeometry, SamplingConfig
from ..model.modeling import takes_encoder_outputs
from ..model.ood import vision_token_mean
from ..model.processing import build_batch, preprocess_videos
from ..prompts import DISTORTION_ANSWER_STEM, LEVEL_TASKS, parse_distortion_answer


@dataclass
class RefineMask:
    """A refinement target for inpainting pipelines: ``mask`` is bool [T, H, W] or [H, W]."""

    mask: np.ndarray
    strength: float  # 0 (leave alone) .. 1 (the assessor rates it worst)


@dataclass
class Assessment:
    """What the assessor says about one input."""

    source: str
    quality: float = math.nan  # on the MOS scale, SCORE_RANGE
    authenticity: float = math.nan
    quality_level: str | None = None  # one of LEVELS
    authenticity_level: str | None = None
    level_probs: dict = field(default_factory=dict)  # {"quality": {level: p}, "authenticity": {...}}
    distortions: list[str] = field(default_factory=list)
    saliency: np.ndarray | None = None  # float32 [T, H, W] (video) or [H, W] (image), in [0, 1]
    description: str | None = None  # free text, with describe=True
    # Unlike the training inputs? (lmmeval.model.ood; None when the checkpoint has no statistics)
    ood_score: float | None = None  # about 1 for a typical training input
    out_of_distribution: bool | None = None  # ood_score above the checkpoint's calibrated threshold
    frame_indices: list[int] = field(default_factory=list)  # source frame of each saliency map
    notes: list[str] = field(default_factory=list)  # what sampling changed (frame cap, downscaling)
    error: str | None = None  # set instead of the fields above when the input failed
    runtime_s: float = 0.0
    frames: np.ndarray | None = None  # uint8 [T, H, W, 3], the sampled frames at their own size (keep_frames=True)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def expected_level(self) -> dict:
        """Per dimension: the Q-Align style score sum_i p_i * i, with i = 1 (bad) .. 5 (excellent)."""
        return {dim: float(sum(p * i for i, p in enumerate((probs[lvl] for lvl in LEVELS), start=1)))
                for dim, probs in self.level_probs.items()}

    @property
    def uncertainty(self) -> dict:
        """Per dimension: entropy of the level distribution (nats; 0 = certain, ln 5 = 1.609 = uniform)
        and the standard deviation of the level (1..5) under it."""
        out = {}
        for dim, probs in self.level_probs.items():
            p = np.array([probs[level] for level in LEVELS])
            levels = np.arange(1, len(LEVELS) + 1)
            mean = float((p * levels).sum())
            out[dim] = {"entropy": float(-(p * np.log(np.clip(p, 1e-12, None))).sum()),
                        "std": float(np.sqrt((p * (levels - mean) ** 2).sum()))}
        return out

    def refine_mask(self, threshold: float = 0.5, dilate: int = 3) -> RefineMask:
        """Where a refiner should work: saliency >= ``threshold``, dilated by ``dilate`` pixels,
        plus a strength in [0, 1] that grows as the predicted quality falls."""
        from scipy.ndimage import binary_dilation

        if self.saliency is None:
            raise ValueError(f"{self.source}: no saliency map (assessed with saliency=False?)")
        if not 0 <= threshold <= 1 or dilate < 0:
            raise ValueError(f"threshold must be in [0, 1] and dilate >= 0, got {threshold}, {dilate}")
        mask = self.saliency >= threshold
        if dilate:
            structure = np.zeros((3, 3), bool)
            structure[1, :] = structure[:, 1] = True  # 4-neighbourhood: `dilate` pixels in city-block distance
            maps = mask if mask.ndim == 3 else mask[None]
            maps = np.stack([binary_dilation(m, structure, iterations=dilate) for m in maps])
            mask = maps if mask.ndim == 3 else maps[0]
        lo, hi = SCORE_RANGE
        strength = float(np.clip((hi - self.quality) / (hi - lo), 0.0, 1.0))
        return RefineMask(mask=mask, strength=strength)

    def to_dict(self) -> dict:
        """JSON-ready summary (without the saliency and frame arrays)."""
        return {
            "path": self.source, "quality": _round(self.quality), "authenticity": _round(self.authenticity),
            "quality_level": self.quality_level, "authenticity_level": self.authenticity_level,
            "level_probs": {d: {k: round(v, 5) for k, v in p.items()} for d, p in self.level_probs.items()},
            "expected_level": {d: round(v, 4) for d, v in self.expected_level.items()},
            "uncertainty": {d: {k: round(v, 4) for k, v in u.items()} for d, u in self.uncertainty.items()},
            "distortions": self.distortions, "description": self.description,
            "ood_score": _round(self.ood_score) if self.ood_score is not None else None,
            "out_of_distribution": self.out_of_distribution, "notes": self.notes,
            "error": self.error, "runtime_s": round(self.runtime_s, 4),
        }


def _round(x: float) -> float | None:
    return None if x != x else round(float(x), 4)


class Assessor:
    """LMME3DHF for inference: inputs in, ``Assessment``s out."""

    def __init__(self, model: factory.AssessorModel):
        self.parts = model
        # All vision windows of a layer in one attention call: the default on GPU, where the
        # window-by-window loop of transformers' sdpa and eager paths costs most
        # (lmmeval.model.fast_attention). flash-attention already runs every window in one varlen
        # kernel: left as it is.
        self.set_fast_vision(self.device.type == "cuda" and model.attention != "flash_attention_2")

    # The parts, by the names users and the README know.
    @property
    def model(self):
        """The ``LMME3DHF`` network (an ``nn.Module``)."""
        return self.parts.network

    @property
    def processor(self):
        return self.parts.processor

    @property
    def config(self):
        """The checkpoint's ``AssessorConfig`` (sampling, head sizes, base)."""
        return self.parts.config

    @property
    def device(self) -> torch.device:
        return self.parts.device

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device | None = None,
                        base: str | Path | None = None, dtype: str = "auto", attention: str = "sdpa") -> Assessor:
        """Load a checkpoint folder (None: the embedded synthetic-data demo checkpoint). ``base``
        overrides the base model recorded in the checkpoint (it must have the shape the checkpoint was
        trained on: checked before anything loads). ``dtype``: the base's precision, "auto" (bfloat16
        on a GPU, float32 on a CPU), "bfloat16" or "float32"; the heads are float32 either way.
        ``attention``: transformers' implementation, "sdpa", "flash_attention_2" or "eager"."""
        return cls(factory.load_model(path, device=device, base=base, dtype=dtype, attention=attention))

    @classmethod
    def from_base(cls, base: str | Path, device: str | torch.device | None = None,
                  sampling: SamplingConfig | None = None, seed: int = 0, dtype: str = "auto",
                  attention: str = "sdpa") -> Assessor:
        """A fresh, untrained assessor on a base Qwen2.5-VL folder (heads randomly initialised), or
        on ``preset:NAME`` (random weights at a preset's shape, e.g. "preset:7b" for benchmarks).
        Its scores mean nothing until it is trained (each result's notes say so)."""
        return cls(factory.new_model(base, device=device, sampling=sampling, seed=seed, dtype=dtype,
                                     attention=attention))

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write the checkpoint folder (``lmmeval.model.factory``)."""
        return factory.save_model(self.parts, out_dir)

    # ------------------------------------------------------------- speed switches
    def set_fast_vision(self, enabled: bool) -> None:
        """Switch the vision tower between the batched-window path and transformers' own."""
        from ..model.fast_attention import disable_batched_vision_attention, enable_batched_vision_attention

        if enabled:
            enable_batched_vision_attention(self.model.backbone)
        else:
            disable_batched_vision_attention(self.model.backbone)
        self.fast_vision = enabled

    def compile(self, mode: str | None = None, backend="inductor") -> None:
        """Compile the repeated blocks (vision blocks, LLM decoder layers) with ``torch.compile``.

        Regional compilation: every layer has the same code, so one compile serves all
        of them and is far quicker than compiling the whole model; shapes are marked
        dynamic so that new video lengths do not recompile. The first batches run slowly
        while kernels are built. ``mode`` and ``backend`` (a name or a callable) go to
        ``torch.compile``.
        """
        core = self.model.backbone.model
        for block in [*core.visual.blocks, *core.language_model.layers]:
            block.compile(mode=mode, backend=backend, dynamic=True)

    # ---------------------------------------------------------------- inference
    def reward(self, frames: torch.Tensor, dimension: str = "quality", as_loss: bool = False) -> torch.Tensor:
        """Differentiable scores (B,) for float videos (B, T, 3, H, W) in [0, 1]; see ``lmmeval.inference.reward``."""
        from .reward import reward

        return reward(self, frames, dimension, as_loss)

    def assess(self, inputs, batch_size: int = 4, saliency: bool = True, describe: bool = False,
               on_error: str = "raise", workers: int = 0, keep_frames: bool = False, distortions: bool = True):
        """Assess one input (returns an ``Assessment``) or a list (returns a list).

        Inputs: video/image paths, PIL images, uint8 arrays (H, W, 3) or (T, H, W, 3).
        ``on_error="return"`` turns a failing input into an ``Assessment`` with ``error``
        set and carries on; ``"raise"`` (default) raises a ``ValueError`` naming it.
        ``workers``: 0 decodes in this process; N >= 1 decodes files in N separate processes, the
        next batches while the model runs on the current one, and a decoder that crashes there (a
        damaged or crafted file) costs only its input, which gets the crash as its error (it raises
        with ``on_error="raise"``); arrays and PIL images load in this process either way. Decoding
        limits: ``lmmeval.io.media.MAX_PIXELS`` and ``MAX_VIDEO_FRAMES``, or the environment variables
        ``LMMEVAL_MAX_PIXELS`` and ``LMMEVAL_MAX_VIDEO_FRAMES``. ``keep_frames`` keeps the sampled
        frames at their own size in ``Assessment.frames`` (for overlays). ``distortions=False`` skips
        generating the distortion answer (scores, levels and saliency only; ``distortions`` stays empty).
        """
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        results = [r for batch in self.assess_batches(items, batch_size, saliency, describe, on_error, workers,
                                                      keep_frames, distortions)
                   for r in batch]
        return results[0] if single else results

    def assess_batches(self, items: list, batch_size: int = 4, saliency: bool = True, describe: bool = False,
                       on_error: str = "raise", workers: int = 0, keep_frames: bool = False, distortions: bool = True):
        """``assess`` as a stream: yields the list of ``Assessment``s of each batch as soon as it is
        done (in input order), so long runs can write results as they go (``lmmeval score``)."""
        if on_error not in ("raise", "return"):
            raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        if batch_size < 1 or workers < 0:
            raise ValueError(f"batch_size must be >= 1 and workers >= 0, got {batch_size}, {workers}")
        self.model.eval()  # no dropout at inference, even right after training
        loading = _Loading(self.config.sampling, self.parts.geometry, keep_frames)
        batches = _loaded_batches(items, loading, batch_size, workers)
        try:
            for loaded in batches:
                yield self._assess_batch(loaded, saliency, describe, on_error, distortions)
        finally:
            batches.close()  # decode workers end now, also when the caller stops early or is interrupted

    def _assess_batch(self, loaded: list[tuple[str, Visual | str]], saliency: bool, describe: bool,
                      on_error: str, distortions: bool = True) -> list[Assessment]:
        """``loaded``: (source, Visual or the error message of its loading) per input."""
        t0 = time.perf_counter()
        results = []
        for source, visual in loaded:
            if isinstance(visual, str):
                if on_error == "raise":
                    raise ValueError(visual)
                results.append(Assessment(source=source, error=visual))
            else:
                results.append(Assessment(source=source))
        good = [i for i, (_, v) in enumerate(loaded) if not isinstance(v, str)]
        if good:
            outputs = self._run([loaded[i][1] for i in good], saliency, describe, distortions)
            for i, out in zip(good, outputs):
                r, v = results[i], loaded[i][1]
                r.__dict__.update(out)
                if r.error is not None and on_error == "raise":  # e.g. non-finite outputs (see _run)
                    raise ValueError(r.error)
                r.notes = v.notes + (["untrained assessor: its scores mean nothing"] if not self.config.trained_stages
                                     else [])
                r.frame_indices = v.frame_indices if not v.is_image else [0]
                if v.source_frames is not None:
                    r.frames = v.source_frames if not v.is_image else v.source_frames[:1]
        elapsed = (time.perf_counter() - t0) / max(len(loaded), 1)
        for r in results:
            r.runtime_s = elapsed + sum(v.load_s for _, v in loaded if not isinstance(v, str)) / max(len(loaded), 1)
        return results

    @torch.inference_mode()
    def _run(self, visuals: list[Visual], saliency: bool, describe: bool, with_distortions: bool = True) -> list[dict]:
        """One result dict per visual, the fields of its ``Assessment``. An input whose outputs are not
        finite (NaN or inf scores, level probabilities, saliency or OOD score) gets only an ``error``:
        no number of it is trustworthy, and a NaN score must not reach a results file as a null."""
        pixels = preprocess_videos(self.processor, visuals)  # once for every question below
        batch = build_batch(self.processor, visuals, LEVEL_TASKS, pixels=pixels).to(self.device)
        sizes = [v.original_size for v in visuals]
        out = self.model(batch, with_saliency=saliency, out_sizes=sizes)
        probs = torch.softmax(out.level_logits, dim=-1).cpu().numpy()  # (B, 2, 5)
        scores = out.scores.float().cpu().numpy()  # (B, 2)
        # The answers are generated on the vision features of the pass above (no second vision pass).
        distortions = (self._generate(visuals, "distortions", pixels, out.video_features) if with_distortions
                       else [None] * len(visuals))
        descriptions = (self._generate(visuals, "describe", pixels, out.video_features) if describe
                        else [None] * len(visuals))
        ood_scores = flagged = [None] * len(visuals)
        if self.parts.ood is not None:
            ood_scores, flagged = self.parts.ood.flag(vision_token_mean(out.video_features).cpu().numpy())
        results = []
        for b, v in enumerate(visuals):
            maps = None
            if saliency:
                maps = torch.sigmoid(out.saliency_logits[b].float()).cpu().numpy()  # (t, H, W), one per temporal patch
            outputs = {"scores": scores[b], "level probabilities": probs[b], "saliency": maps,
                       "ood_score": ood_scores[b]}
            bad = [name for name, x in outputs.items() if x is not None and not np.isfinite(x).all()]
            if bad:
                results.append({"error": f"{v.source}: the model's {', '.join(bad)} for this input are not finite "
                                         "(NaN or inf); no scores are given"})
                continue
            level_probs = {dim: dict(zip(LEVELS, probs[b, j].tolist())) for j, dim in enumerate(LEVEL_TASKS)}
            res = {
                "quality": float(scores[b, 0]), "authenticity": float(scores[b, 1]),
                "quality_level": LEVELS[int(probs[b, 0].argmax())], "authenticity_level": LEVELS[int(probs[b, 1].argmax())],
                "level_probs": level_probs,
                "distortions": parse_distortion_answer(distortions[b]) if distortions[b] is not None else [],
                "description": descriptions[b],
                "ood_score": None if ood_scores[b] is None else float(ood_scores[b]),
                "out_of_distribution": None if flagged[b] is None else bool(flagged[b]),
            }
            if saliency:
                patch = self.parts.geometry.temporal_patch_size
                res["saliency"] = maps[0] if v.is_image else np.repeat(maps, patch, axis=0)[: len(v.frames)]
            results.append(res)
        return results

    def features(self, items: list, batch_size: int = 4, workers: int = 0, progress: bool = False) -> np.ndarray:
        """(n, d) float32: each input's mean merged vision token, the feature ``lmmeval.model.ood``
        models (``lmmeval calibrate-ood`` fits it on the training videos). An unreadable input raises.
        ``workers`` as in ``assess``."""
        from tqdm.auto import tqdm

        self.model.eval()
        loading = _Loading(self.config.sampling, self.parts.geometry, False)
        out = []
        batches = _loaded_batches(list(items), loading, batch_size, workers)
        with tqdm(total=len(items), desc="features", unit="input", disable=not progress) as bar, \
                contextlib.closing(batches):  # decode workers end with the loop, however it ends
            for loaded in batches:
                bad = [v for _, v in loaded if isinstance(v, str)]
                if bad:
                    raise ValueError(bad[0])
                visuals = [v for _, v in loaded]
                with torch.inference_mode():
                    pixels = preprocess_videos(self.processor, visuals)
                    batch = build_batch(self.processor, visuals, LEVEL_TASKS, pixels=pixels).to(self.device)
                    merged, _, _ = self.model.encode_videos(batch)
                    out.append(vision_token_mean(merged).cpu().numpy())
                bar.update(len(loaded))
        return np.concatenate(out) if out else np.zeros((0, self.config.regression.hidden_size), np.float32)

    def _generate(self, visuals: list[Visual], task: str, pixels: dict | None = None, video_features=None,
                  max_new_tokens: int = 48) -> list[str]:
        """Greedy answers to the distortion question (after its stem) or a free description.

        ``pixels`` (``preprocess_videos``) and ``video_features`` (the forward pass's merged
        vision tokens per video) skip preprocessing and the vision tower; without them, or
        with a transformers whose generate cannot take encoder outputs, pixels are encoded here.
        """
        batch = build_batch(self.processor, visuals, (task,), pixels=pixels)
        backbone = self.model.backbone
        reuse = video_features is not None and takes_encoder_outputs(backbone)
        if reuse:  # the pixels are not needed: do not copy them to the device
            batch = dataclasses.replace(batch, pixel_values_videos=batch.pixel_values_videos[:0])
        batch = batch.to(self.device)
        vision = {"pixel_values_videos": batch.pixel_values_videos}
        if reuse:
            vision = {"mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=tuple(video_features))}}
        out = backbone.generate(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, mm_token_type_ids=batch.mm_token_type_ids,
            video_grid_thw=batch.video_grid_thw, second_per_grid_ts=batch.second_per_grid_ts, **vision,
            generation_config=self._greedy(max_new_tokens),
        )
        new = out[:, batch.input_ids.shape[1]:]
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        return [(DISTORTION_ANSWER_STEM + t) if task == "distortions" else t.strip() for t in texts]


    def _greedy(self, max_new_tokens: int):
        """Generation as lmmeval defines it: greedy, one beam, no penalty and no sampling knob. A base's
        generation_config.json (Qwen2.5-VL releases set a repetition penalty, and sampling settings)
        is not consulted, except for its end-of-sequence tokens."""
        from transformers import GenerationConfig

        base = self.model.backbone.generation_config
        return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, repetition_penalty=1.0,
                                no_repeat_ngram_size=0, temperature=None, top_k=None, top_p=None,
                                eos_token_id=base.eos_token_id, pad_token_id=self.processor.tokenizer.pad_token_id,
                                bos_token_id=base.bos_token_id)


@dataclass(frozen=True)
class _Loading:
    """How inputs are loaded (``lmmeval.io.media.load_or_error`` with the model's sampling):
    picklable, and its ``args`` are what decode worker processes call that function with."""

    sampling: SamplingConfig
    geometry: PatchGeometry
    keep_frames: bool

    @property
    def args(self) -> tuple:
        return (self.sampling, self.geometry, self.keep_frames)

    def __call__(self, item) -> tuple[str, Visual | str]:
        """(source, Visual) or (source, error message): loading errors travel as data, so that
        a batch run can report them and carry on."""
        return load_or_error(item, *self.args)


# Batches decoded ahead of the one the model is on, with decode workers.
AHEAD_BATCHES = 2


def _loaded_batches(items, loading: _Loading, batch_size: int, workers: int):
    """Batches of loaded inputs, in input order.

    ``workers=0`` decodes in the caller. ``workers >= 1`` decodes files in that many separate
    processes (``lmmeval.io.decode_pool``), ``AHEAD_BATCHES`` batches ahead of the caller, so that a
    decoder's crash costs only its input (an error naming the signal and the file) and decoding
    overlaps the model; in-memory inputs (arrays, PIL images) are loaded in the caller either way.
    The workers are killed when the batches end, are abandoned, or a KeyboardInterrupt stops them.
    """
    files = [i for i, item in enumerate(items) if isinstance(item, (str, Path))]
    if workers == 0 or not files:
        for start in range(0, len(items), batch_size):
            yield [loading(item) for item in items[start:start + batch_size]]
        return
    from ..io.decode_pool import DecodePool

    with DecodePool(min(workers, len(files)), loading.args) as pool:
        submitted = 0  # files[:submitted] are with the pool
        for start in range(0, len(items), batch_size):
            horizon = start + batch_size * (1 + AHEAD_BATCHES)
            while submitted < len(files) and files[submitted] < horizon:
                pool.submit(files[submitted], str(items[files[submitted]]))
                submitted += 1
            yield [pool.result(i) if isinstance(items[i], (str, Path)) else loading(items[i])
                   for i in range(start, min(start + batch_size, len(items)))]
