"""Typed configuration of an assessor checkpoint (``config.json``) and of the model's parts.

Everything that decides how an input becomes model input (frame sampling, pixel budget)
lives in ``SamplingConfig``, saved with every checkpoint, so training and inference sample
alike. Unknown or missing keys are errors, never silently ignored. This module imports
neither torch nor transformers: reading a config is cheap.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

CONFIG_NAME = "config.json"
# 2: the LoRA settings are no longer repeated here (adapter_config.json holds them).
FORMAT_VERSION = 2


@dataclass(frozen=True)
class PatchGeometry:
    """How frames become vision tokens in a Qwen2.5-VL: square patches of ``patch_size`` pixels
    spanning ``temporal_patch_size`` frames; ``merge_size`` x ``merge_size`` patches make one LLM
    token. Read from a processor (``of``), never written out by hand."""

    patch_size: int
    merge_size: int
    temporal_patch_size: int

    @classmethod
    def of(cls, processor) -> PatchGeometry:
        vp = processor.video_processor
        return cls(int(vp.patch_size), int(vp.merge_size), int(vp.temporal_patch_size))

    @property
    def factor(self) -> int:
        """Frame sides are resized to multiples of this (one LLM token per factor x factor pixels)."""
        return self.patch_size * self.merge_size

    def llm_tokens(self, frames: int, pixels: float) -> float:
        """LLM (merged) video tokens of ``frames`` frames of ``pixels`` pixels each (sides multiples
        of ``factor``)."""
        return frames / self.temporal_patch_size * pixels / self.factor**2


@dataclass
class SamplingConfig:
    fps: float = 2.0  # frames per second sampled from a video
    max_frames: int = 16  # cap on sampled frames (long videos are sampled sparser, and it is reported)
    min_frames: int = 2  # a temporal patch of Qwen2.5-VL spans 2 frames
    max_pixels: int = 448 * 448  # per-frame pixel budget; larger frames are downscaled (aspect kept)
    min_pixels: int = 56 * 56  # smaller frames are upscaled

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"sampling.fps must be > 0, got {self.fps}")
        if self.min_frames < 2 or self.max_frames < self.min_frames:
            raise ValueError(f"sampling needs 2 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if not 0 < self.min_pixels <= self.max_pixels:
            raise ValueError(f"sampling needs 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")


@dataclass
class LoraSettings:
    """How a LoRA adapter is created (stage 1). Once trained, the adapter's own
    ``adapter_config.json`` is the record of these settings."""

    r: int = 8  # the paper's default rank (its Table 5)
    alpha: int = 16
    dropout: float = 0.05
    # Only the LLM's attention projections: the vision tower stays frozen.
    target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    # Modules trained in full and saved with the adapter. Empty for a pretrained base;
    # the random-init tiny preset needs its LM head trained to learn any answer text.
    modules_to_save: list[str] = field(default_factory=list)


@dataclass
class RegressionHeadConfig:
    hidden_size: int  # the LLM's hidden size
    inner_size: int = 256
    dropout: float = 0.1
    # Also read the mean of the LLM's last hidden states over the video tokens. The paper's
    # head "takes the last hidden states from the LLM"; the stem state alone must carry the
    # whole video through the attention of the (for the tiny preset, random) LLM, while the
    # video tokens' own states still hold the vision tower's features in their residual stream.
    video_mean: bool = False


@dataclass
class SaliencyDecoderConfig:
    vision_dim: int  # the vision tower's hidden size (patch features)
    llm_dim: int  # the LLM's hidden size
    merge: int = 2  # spatial merge size: LLM tokens cover merge x merge patches
    vision_channels: int = 64
    llm_channels: int = 64
    fused_channels: int = 64
    refine_channels: int = 32
    # Vision blocks (0-based) whose outputs join the last block's as skips of the U-Net fusion, besides
    # the LLM's video-token states; [] (default): the last block alone. E.g. [7, 15, 23] for the 7B
    # tower's 32 blocks (1/4, 1/2, 3/4 depth); `vision_depths_at(fractions, depth)` picks them.
    vision_depths: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        depths = self.vision_depths
        if not isinstance(depths, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                    for d in depths):
            raise ValueError(f"vision_depths must be a list of block indices >= 0, got {depths!r}")
        if len(set(depths)) != len(depths):
            raise ValueError(f"vision_depths names a block twice: {depths}")

    @staticmethod
    def vision_depths_at(fractions: list[float], depth: int) -> list[int]:
        """Block indices at ``fractions`` of a ``depth``-block tower (0.25 of 32 -> block 7, the 8th),
        the last block left out (it is always used)."""
        if not all(0 < f < 1 for f in fractions):
            raise ValueError(f"depth fractions must be in (0, 1), got {fractions}")
        return sorted({max(0, round(f * depth) - 1) for f in fractions} - {depth - 1})

    @classmethod
    def scaled_to(cls, vision_dim: int, llm_dim: int, merge: int) -> SaliencyDecoderConfig:
        """Decoder widths scaled to the backbone (the tiny preset gets a tiny decoder)."""
        c = 256 if llm_dim >= 1024 else 32
        return cls(vision_dim=vision_dim, llm_dim=llm_dim, merge=merge, vision_channels=c, llm_channels=c,
                   fused_channels=c // 2, refine_channels=c // 4)


@dataclass
class AssessorConfig:
    base: str  # base model: a folder (relative paths: relative to the checkpoint folder) or "preset:NAME"
    regression: RegressionHeadConfig
    saliency: SaliencyDecoderConfig
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    trained_stages: list[int] = field(default_factory=list)  # which of the three stages produced this
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> AssessorConfig:
        return build_dataclass(cls, data, source, _NESTED)

    @classmethod
    def load(cls, path: str | Path) -> AssessorConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if isinstance(data, dict) and data.get("format_version") == 1:
            # Version 1 also repeated the LoRA settings that adapter_config.json holds.
            data = {k: v for k, v in data.items() if k != "lora"} | {"format_version": FORMAT_VERSION}
        config = cls.from_dict(data, source=str(path))
        if config.format_version != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {config.format_version} is not supported (expected "
                             f"{FORMAT_VERSION}, or 1)")
        return config


def read_yaml(path: str | Path) -> dict:
    """A YAML config file as a dict (an empty file is {}); invalid YAML, or a document that is
    not a mapping, is a ``ValueError`` naming the file."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def build_dataclass(cls, data, source: str, nested: dict[str, type]):
    """Dataclass from a dict, recursively (``nested``: field name -> dataclass);
    unknown and missing keys, and invalid values, raise ``ValueError`` naming ``source``."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; expected {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{source}: missing key {name!r}")
            continue
        sub = nested.get(name)
        value = data[name]
        kwargs[name] = build_dataclass(sub, value, f"{source}.{name}", nested) if sub and value is not None else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from None


_NESTED = {"regression": RegressionHeadConfig, "saliency": SaliencyDecoderConfig, "sampling": SamplingConfig}
