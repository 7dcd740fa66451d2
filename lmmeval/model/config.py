"""Typed configuration of an assessor checkpoint, saved as ``config.json``.

Everything that decides how an input becomes model input (frame sampling, pixel
budget) lives here, so training and inference sample alike: the training scripts
write the config they trained with, and ``Assessor.from_pretrained`` reads it back.
Unknown or missing keys are errors, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .heads import RegressionHeadConfig, SaliencyDecoderConfig

CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


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
        if not 28 * 28 <= self.min_pixels <= self.max_pixels:
            raise ValueError(f"sampling needs 784 <= min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")


@dataclass
class LoraSettings:
    r: int = 8  # the paper's default rank (its Table 5)
    alpha: int = 16
    dropout: float = 0.05
    # Only the LLM's attention projections: the vision tower stays frozen.
    target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"
    # Modules trained in full and saved with the adapter. Empty for a pretrained base;
    # the random-init tiny preset needs its LM head trained to learn any answer text.
    modules_to_save: list[str] = field(default_factory=list)


@dataclass
class AssessorConfig:
    base: str  # base model directory; relative paths are relative to the checkpoint folder
    regression: RegressionHeadConfig
    saliency: SaliencyDecoderConfig
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
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
        config = cls.from_dict(data, source=str(path))
        if config.format_version != FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {config.format_version} is not supported (expected {FORMAT_VERSION})")
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


_NESTED = {"regression": RegressionHeadConfig, "saliency": SaliencyDecoderConfig, "sampling": SamplingConfig,
           "lora": LoraSettings}
