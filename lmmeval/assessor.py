"""`Assessor`: the Python inference API.

    from lmmeval import Assessor
    a = Assessor.from_pretrained()          # the embedded synthetic-data demo checkpoint
    r = a.assess("face.mp4")
    r.quality, r.authenticity, r.quality_level, r.level_probs, r.distortions, r.saliency

A checkpoint folder holds: ``config.json`` (``AssessorConfig``), the LoRA adapter
in PEFT format (``adapter_config.json`` + ``adapter_model.safetensors``; absent
before any LoRA training), ``heads.safetensors`` (regression head and saliency
decoder), and the processor files. The base model is referenced by path, so the
folder also loads with plain transformers + peft (see the README).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .labels import LEVELS
from .media import Visual, load_visual
from .model.config import CONFIG_NAME, AssessorConfig, SamplingConfig
from .model.heads import RegressionHead, RegressionHeadConfig, SaliencyDecoder, SaliencyDecoderConfig
from .model.lmme import LEVEL_TASKS, LMME3DHF, build_batch, preprocess_videos, takes_encoder_outputs
from .prompts import DISTORTION_ANSWER_STEM, parse_distortion_answer

HEADS_NAME = "heads.safetensors"
DEMO_CHECKPOINT = Path(__file__).parent / "assets" / "demo_checkpoint"


@dataclass
class RefineMask:
    """A refinement target for inpainting pipelines: ``mask`` is bool [T, H, W] or [H, W]."""

    mask: np.ndarray
    strength: float  # 0 (leave alone) .. 1 (the assessor rates it worst)


@dataclass
class Assessment:
    """What the assessor says about one input."""

    source: str
    quality: float = math.nan  # MOS scale, 0-100
    authenticity: float = math.nan
    quality_level: str | None = None  # one of LEVELS
    authenticity_level: str | None = None
    level_probs: dict = field(default_factory=dict)  # {"quality": {level: p}, "authenticity": {...}}
    distortions: list[str] = field(default_factory=list)
    saliency: np.ndarray | None = None  # float32 [T, H, W] (video) or [H, W] (image), in [0, 1]
    description: str | None = None  # free text, with describe=True
    frame_indices: list[int] = field(default_factory=list)  # source frame of each saliency map
    notes: list[str] = field(default_factory=list)  # what sampling changed (frame cap, downscaling)
    error: str | None = None  # set instead of the fields above when the input failed
    runtime_s: float = 0.0

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
        strength = float(np.clip((100.0 - self.quality) / 100.0, 0.0, 1.0))
        return RefineMask(mask=mask, strength=strength)

    def to_dict(self) -> dict:
        """JSON-ready summary (without the saliency array)."""
        return {
            "path": self.source, "quality": _round(self.quality), "authenticity": _round(self.authenticity),
            "quality_level": self.quality_level, "authenticity_level": self.authenticity_level,
            "level_probs": {d: {k: round(v, 5) for k, v in p.items()} for d, p in self.level_probs.items()},
            "expected_level": {d: round(v, 4) for d, v in self.expected_level.items()},
            "uncertainty": {d: {k: round(v, 4) for k, v in u.items()} for d, u in self.uncertainty.items()},
            "distortions": self.distortions, "description": self.description, "notes": self.notes,
            "error": self.error, "runtime_s": round(self.runtime_s, 4),
        }


def _round(x: float) -> float | None:
    return None if x != x else round(float(x), 4)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _attention_implementation() -> str:
    try:
        import flash_attn  # noqa: F401

        return "flash_attention_2"
    except ImportError:
        return "sdpa"


class Assessor:
    """LMME3DHF wrapped for inference: loading, batching, post-processing, saving."""

    def __init__(self, model: LMME3DHF, processor, config: AssessorConfig, base_path: Path, device: torch.device,
                 peft_model=None):
        self.model = model
        self.processor = processor
        self.config = config
        self.base_path = base_path
        self.device = device
        self.peft_model = peft_model  # the PeftModel whose LoRA layers live inside model.backbone
        # All vision windows of a layer in one attention call: the default on GPU, where the
        # window-by-window loop of transformers' sdpa path costs most (lmmeval.model.fast_attention).
        # flash-attention already runs every window in one varlen kernel: left as it is.
        vision_attention = getattr(model.backbone.model.visual.config, "_attn_implementation", None)
        self.set_fast_vision(device.type == "cuda" and vision_attention != "flash_attention_2")

    def set_fast_vision(self, enabled: bool) -> None:
        """Switch the vision tower between the batched-window path and transformers' own."""
        from .model.fast_attention import disable_batched_vision_attention, enable_batched_vision_attention

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

    def add_lora(self) -> None:
        """Inject fresh LoRA layers (``config.lora``) into the LLM, for training."""
        from peft import LoraConfig, get_peft_model

        if self.peft_model is not None:
            raise ValueError("this assessor already has a LoRA adapter")
        lora = self.config.lora
        cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules,
                         modules_to_save=list(lora.modules_to_save) or None, base_model_name_or_path=self.config.base)
        self.peft_model = get_peft_model(self.model.backbone, cfg)

    def new_regression_head(self, video_mean: bool, seed: int = 0) -> None:
        """Replace the regression head by a freshly initialised one (stage 2 trains it from its
        initialisation; stage 1 never touches it), reading the video tokens' mean state or not.
        Seeds torch's global generator with ``seed`` first, so the initialisation is reproducible."""
        self.config.regression = dataclasses.replace(self.config.regression, video_mean=video_mean)
        torch.manual_seed(seed)
        self.model.regression = RegressionHead(self.config.regression).to(self.device)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_base(cls, base: str | Path, device: str | torch.device | None = None, sampling: SamplingConfig | None = None,
                  seed: int = 0) -> Assessor:
        """A fresh, untrained assessor on a base Qwen2.5-VL directory (heads randomly initialised).

        ``base`` may also name a random-weight preset, "preset:7b-random" or "preset:tiny-random",
        for benchmarks at a given shape without weights.
        """
        device = torch.device(device) if device is not None else default_device()
        backbone, processor = _load_base(base, device)
        return cls.from_backbone(backbone, processor, base, device, sampling, seed)

    @classmethod
    def from_backbone(cls, backbone, processor, base: str | Path, device: str | torch.device,
                      sampling: SamplingConfig | None = None, seed: int = 0) -> Assessor:
        """A fresh assessor around an already loaded backbone (e.g. random weights at 7B shape)."""
        device = torch.device(device)
        text, vision = backbone.config.text_config, backbone.config.vision_config
        config = AssessorConfig(
            base=str(base) if str(base) in RANDOM_BASES else str(Path(base).resolve()),
            regression=RegressionHeadConfig(hidden_size=text.hidden_size),
            saliency=SaliencyDecoderConfig(vision_dim=vision.hidden_size, llm_dim=text.hidden_size,
                                           merge=vision.spatial_merge_size, **_decoder_widths(text.hidden_size)),
            sampling=sampling or SamplingConfig(),
        )
        torch.manual_seed(seed)
        model = _assemble(backbone, processor, config, device)
        model.eval()
        return cls(model, processor, config, Path(base), device)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | torch.device | None = None,
                        base: str | Path | None = None, trainable: bool = False) -> Assessor:
        """Load a checkpoint folder (None: the embedded synthetic-data demo checkpoint).

        ``base`` overrides the base model directory recorded in the checkpoint;
        ``trainable`` loads the LoRA adapter for further training.
        """
        from transformers import AutoProcessor

        if path is None:
            path = DEMO_CHECKPOINT
            print("lmmeval: using the embedded demo checkpoint (tiny model trained on synthetic data; "
                  "its scores are a demonstration, not a real face-quality model)", file=sys.stderr)
            if not (path / CONFIG_NAME).exists():
                raise FileNotFoundError(f"{path}: the embedded demo checkpoint is missing; run `make demo-checkpoint`")
        path = Path(path)
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path}: not an lmmeval checkpoint (no {CONFIG_NAME})")
        config = AssessorConfig.load(path / CONFIG_NAME)
        base_path = Path(base) if base is not None else _resolve(path, config.base)
        if str(base_path) not in RANDOM_BASES and not (base_path / "config.json").is_file():
            raise FileNotFoundError(f"{base_path}: base model directory not found (pass --base / base=)")
        device = torch.device(device) if device is not None else default_device()
        processor = AutoProcessor.from_pretrained(path)  # the checkpoint's own (its sampling/pixel budget)
        backbone, _ = _load_base(base_path, device, with_processor=False)
        peft_model = None
        if (path / "adapter_config.json").is_file():
            from peft import PeftModel

            peft_model = PeftModel.from_pretrained(backbone, path, is_trainable=trainable)  # LoRA injected in place
        model = _assemble(backbone, processor, config, device)
        _load_heads(model, path / HEADS_NAME)
        model.eval()
        return cls(model, processor, config, base_path, device, peft_model)

    def save_pretrained(self, out_dir: str | Path, base_reference: str | None = None) -> Path:
        """Write the checkpoint folder (see module docstring). ``base_reference`` is the base
        path to record (default: the absolute base path this assessor was loaded from)."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        base_ref = base_reference or self.config.base
        if self.peft_model is not None:
            self.peft_model.peft_config["default"].base_model_name_or_path = base_ref
            self.peft_model.save_pretrained(out_dir)  # adapter_config.json + adapter_model.safetensors
        heads = {f"regression.{k}": v for k, v in self.model.regression.state_dict().items()}
        heads |= {f"saliency.{k}": v for k, v in self.model.saliency.state_dict().items()}
        save_file({k: v.detach().float().cpu().contiguous() for k, v in heads.items()}, out_dir / HEADS_NAME)
        self.processor.save_pretrained(out_dir)
        (out_dir / CONFIG_NAME).write_text(dataclasses.replace(self.config, base=base_ref).to_json())
        return out_dir

    # ---------------------------------------------------------------- inference
    def reward(self, frames: torch.Tensor, dimension: str = "quality", as_loss: bool = False) -> torch.Tensor:
        """Differentiable scores (B,) for float videos (B, T, 3, H, W) in [0, 1]; see ``lmmeval.reward``."""
        from .reward import reward

        return reward(self, frames, dimension, as_loss)

    def assess(self, inputs, batch_size: int = 4, saliency: bool = True, describe: bool = False,
               on_error: str = "raise", workers: int = 0):
        """Assess one input (returns an ``Assessment``) or a list (returns a list).

        Inputs: video/image paths, PIL images, uint8 arrays (H, W, 3) or (T, H, W, 3).
        ``on_error="return"`` turns a failing input into an ``Assessment`` with ``error``
        set and carries on; ``"raise"`` (default) raises a ``ValueError`` naming it.
        ``workers`` > 0 decodes and samples the next batches in that many DataLoader worker
        processes while the model runs on the current one.
        """
        single = not isinstance(inputs, (list, tuple))
        items = [inputs] if single else list(inputs)
        results = [r for batch in self.assess_batches(items, batch_size, saliency, describe, on_error, workers)
                   for r in batch]
        return results[0] if single else results

    def assess_batches(self, items: list, batch_size: int = 4, saliency: bool = True, describe: bool = False,
                       on_error: str = "raise", workers: int = 0):
        """``assess`` as a stream: yields the list of ``Assessment``s of each batch as soon as it is
        done (in input order), so long runs can write results as they go (``lmmeval score``)."""
        if on_error not in ("raise", "return"):
            raise ValueError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        if batch_size < 1 or workers < 0:
            raise ValueError(f"batch_size must be >= 1 and workers >= 0, got {batch_size}, {workers}")
        self.model.eval()  # no dropout at inference, even right after training
        for loaded in _loaded_batches(items, self.config.sampling, batch_size, workers):
            yield self._assess_batch(loaded, saliency, describe, on_error)

    def _assess_batch(self, loaded: list[tuple[str, Visual | str]], saliency: bool, describe: bool,
                      on_error: str) -> list[Assessment]:
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
            outputs = self._run([loaded[i][1] for i in good], saliency, describe)
            for i, out in zip(good, outputs):
                r, v = results[i], loaded[i][1]
                r.__dict__.update(out)
                r.notes = v.notes
                r.frame_indices = v.frame_indices if not v.is_image else [0]
        elapsed = (time.perf_counter() - t0) / max(len(loaded), 1)
        for r in results:
            r.runtime_s = elapsed + sum(v.load_s for _, v in loaded if not isinstance(v, str)) / max(len(loaded), 1)
        return results

    @torch.inference_mode()
    def _run(self, visuals: list[Visual], saliency: bool, describe: bool) -> list[dict]:
        model = self.model
        pixels = preprocess_videos(self.processor, visuals)  # once for every question below
        batch = build_batch(self.processor, visuals, LEVEL_TASKS, pixels=pixels).to(self.device)
        sizes = [v.original_size for v in visuals]
        out = model(batch, with_saliency=saliency, out_sizes=sizes)
        probs = torch.softmax(out["level_logits"], dim=-1).cpu().numpy()  # (B, 2, 5)
        scores = out["scores"].float().cpu().numpy()  # (B, 2)
        # The answers are generated on the vision features of the pass above (no second vision pass).
        features = out["video_features"]
        distortions = self._generate(visuals, "distortions", pixels, features)
        descriptions = self._generate(visuals, "describe", pixels, features) if describe else [None] * len(visuals)
        results = []
        for b, v in enumerate(visuals):
            level_probs = {dim: dict(zip(LEVELS, probs[b, j].tolist())) for j, dim in enumerate(LEVEL_TASKS)}
            res = {
                "quality": float(scores[b, 0]), "authenticity": float(scores[b, 1]),
                "quality_level": LEVELS[int(probs[b, 0].argmax())], "authenticity_level": LEVELS[int(probs[b, 1].argmax())],
                "level_probs": level_probs,
                "distortions": parse_distortion_answer(distortions[b]), "description": descriptions[b],
            }
            if saliency:
                maps = torch.sigmoid(out["saliency_logits"][b].float()).cpu().numpy()  # (t, H, W)
                res["saliency"] = maps[0] if v.is_image else np.repeat(maps, 2, axis=0)[: len(v.frames)]
            results.append(res)
        return results

    def _generate(self, visuals: list[Visual], task: str, pixels: dict | None = None, video_features=None,
                  max_new_tokens: int = 48) -> list[str]:
        """Greedy answers to the distortion question (after its stem) or a free description.

        ``pixels`` (``preprocess_videos``) and ``video_features`` (the forward pass's merged
        vision tokens per video) skip preprocessing and the vision tower; without them, or
        with a transformers whose generate cannot take encoder outputs, pixels are encoded here.
        """
        tasks = ("distortions",) if task == "distortions" else ("describe",)
        batch = build_batch(self.processor, visuals, tasks, pixels=pixels)
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
            max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=self.processor.tokenizer.pad_token_id,
        )
        new = out[:, batch.input_ids.shape[1]:]
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        return [(DISTORTION_ANSWER_STEM + t) if task == "distortions" else t.strip() for t in texts]


def _load_one(item, sampling) -> tuple[str, Visual | str]:
    """(source, Visual) or (source, error message): loading errors travel as data, so that
    worker processes can report them and a batch run can carry on."""
    source = str(item) if isinstance(item, (str, Path)) else f"<{type(item).__name__}>"
    t0 = time.perf_counter()
    try:
        visual = load_visual(item, sampling)
    except (ValueError, FileNotFoundError, OSError) as err:
        return source, str(err)
    visual.load_s = time.perf_counter() - t0
    return source, visual


class _Inputs(torch.utils.data.Dataset):
    def __init__(self, items, sampling):
        self.items, self.sampling = items, sampling

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return _load_one(self.items[i], self.sampling)


def _loaded_batches(items, sampling, batch_size: int, workers: int):
    """Batches of loaded inputs, decoded in the caller (workers=0) or ahead of it in worker processes."""
    if workers == 0:
        for start in range(0, len(items), batch_size):
            yield [_load_one(item, sampling) for item in items[start:start + batch_size]]
        return
    loader = torch.utils.data.DataLoader(_Inputs(items, sampling), batch_size=batch_size, num_workers=workers,
                                         collate_fn=list, prefetch_factor=2)
    yield from loader


def _decoder_widths(llm_dim: int) -> dict:
    """Saliency decoder widths scaled to the backbone (the tiny preset gets a tiny decoder)."""
    c = 256 if llm_dim >= 1024 else 32
    return {"vision_channels": c, "llm_channels": c, "fused_channels": c // 2, "refine_channels": c // 4}


def _resolve(checkpoint: Path, base: str) -> Path:
    p = Path(base)
    return p if p.is_absolute() or base in RANDOM_BASES else (checkpoint / p).resolve()


# Random-weight bases for benchmarks: the real shapes without any weights to download.
RANDOM_BASES = ("preset:7b-random", "preset:tiny-random")


def _load_base(base: str | Path, device: torch.device, with_processor: bool = True):
    """(backbone, processor) from a base directory, or built in memory for a random preset.
    ``with_processor=False`` skips reading the base's processor (None): a checkpoint has its own."""
    from transformers import AutoProcessor

    if str(base) in RANDOM_BASES:
        from .model.tiny import QWEN25_VL_7B_SHAPE, TINY_PRESET, build_random_model

        shape = QWEN25_VL_7B_SHAPE if str(base) == "preset:7b-random" else TINY_PRESET
        torch.manual_seed(0)  # the same random weights every time, per device
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        return build_random_model(shape, dtype=dtype, device=device)
    return _load_backbone(Path(base), device), AutoProcessor.from_pretrained(base) if with_processor else None


def _load_backbone(base: Path, device: torch.device):
    from transformers import Qwen2_5_VLForConditionalGeneration

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            base, dtype=dtype, attn_implementation=_attention_implementation(), local_files_only=True)
    except OSError as err:
        raise FileNotFoundError(f"{base}: cannot load a Qwen2.5-VL base model ({err})") from None
    return model.to(device)


def _assemble(backbone, processor, config: AssessorConfig, device: torch.device) -> LMME3DHF:
    model = LMME3DHF(backbone, processor.tokenizer, RegressionHead(config.regression), SaliencyDecoder(config.saliency))
    # The heads run in the backbone's dtype (bf16 on GPU); the regression MLP upcasts its input.
    dtype = next(backbone.parameters()).dtype
    model.regression.to(device)
    model.saliency.to(device=device, dtype=dtype)
    return model.to(device)


def _load_heads(model: LMME3DHF, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (regression head and saliency decoder weights)")
    try:
        state = load_file(path)
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    for name, module in (("regression", model.regression), ("saliency", model.saliency)):
        sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        own = module.state_dict()
        missing, unknown = sorted(set(own) - set(sub)), sorted(set(sub) - set(own))
        wrong = [f"{k}: {tuple(sub[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sub and sub[k].shape != own[k].shape]
        if missing or unknown or wrong:
            raise ValueError(f"{path}: {name} weights do not match config.json "
                             f"(missing {missing[:5]}, unknown {unknown[:5]}, wrong shapes {wrong[:5]})")
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in sub.items()})
