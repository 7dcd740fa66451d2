"""Typed configuration of an assessor checkpoint (``config.json``) and of the model's parts.

Everything that decides how an input becomes model input (frame sampling, pixel budget)
lives in ``SamplingConfig``, saved with every checkpoint, so training and inference sample
alike. Unknown or missing keys are errors, never silently ignored. Every value is checked by
type and range when a config is built (``__post_init__``), before anything is sized by it: a
``config.json`` is user input, and a width of -5 or 10**9 must be one clear line, not a torch
error or an attempt to allocate half a terabyte. This module imports neither torch nor
transformers: reading a config is cheap.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

CONFIG_NAME = "config.json"
# The precision a base is loaded in ("auto": bfloat16 on a GPU, float32 on a CPU). Whatever it is, the
# heads and any trainable weights (LoRA, heads) stay float32: the one precision policy, with or
# without DeepSpeed.
DTYPES = ("auto", "bfloat16", "float32")
# transformers' attention implementations lmmeval runs with. The vision tower's windowed attention
# takes lmmeval's batched-window path on a GPU under sdpa and eager (lmmeval.model.fast_attention) and
# flash-attention's own varlen kernel under flash_attention_2.
ATTENTIONS = ("sdpa", "flash_attention_2", "eager")
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


# Upper bounds of the sizes a config may ask for: far above any Qwen2.5-VL (the 72B's LLM is 8192 wide,
# every tower 1280), low enough that no value can ask for an absurd allocation.
MAX_WIDTH = 32768  # hidden sizes of the LLM and the vision tower
MAX_INNER = 65536  # the regression head's inner layer
MAX_CHANNELS = 4096  # the saliency decoder's channels
MAX_MERGE = 16  # Qwen2.5-VL merges 2 x 2 patches
MAX_FPS = 120
MAX_FRAMES = 4096
MAX_PIXELS = 8192 * 8192  # per frame


def check_integer(obj, name: str, lo: int, hi: int) -> None:
    """``obj.name`` must be an int (a bool is not one) in [lo, hi]."""
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")


def check_number(obj, name: str, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
    """``obj.name`` must be a finite int or float in the interval (NaN fails every comparison)."""
    value = getattr(obj, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def check_flag(obj, name: str) -> None:
    """``obj.name`` must be a bool."""
    value = getattr(obj, name)
    if not isinstance(value, bool):  # "false" as text is truthy: it would switch the option on
        raise ValueError(f"{name} must be true or false, got {value!r}")


def check_integer_list(obj, name: str, lo: int, hi: int, what: str = "integers") -> None:
    """``obj.name`` must be a list of distinct ints in [lo, hi] (``what`` they are, for the message)."""
    value = getattr(obj, name)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
                                              for v in value):
        raise ValueError(f"{name} must be a list of {what} in [{lo}, {hi}], got {value!r}")
    if len(set(value)) != len(value):
        twice = sorted({v for v in value if value.count(v) > 1})
        raise ValueError(f"{name} names {', '.join(map(str, twice))} twice: {value}")


@dataclass
class SamplingConfig:
    fps: float = 2.0  # frames per second sampled from a video
    max_frames: int = 16  # cap on sampled frames (long videos are sampled sparser, and it is reported)
    min_frames: int = 2  # a temporal patch of Qwen2.5-VL spans 2 frames
    max_pixels: int = 448 * 448  # per-frame pixel budget; larger frames are downscaled (aspect kept)
    min_pixels: int = 56 * 56  # smaller frames are upscaled

    def __post_init__(self) -> None:
        # Messages start with the field's name: a config file's reader prefixes the block ("sampling.").
        check_number(self, "fps", 0, MAX_FPS, lo_open=True)
        check_integer(self, "min_frames", 2, MAX_FRAMES)
        check_integer(self, "max_frames", 2, MAX_FRAMES)
        if self.max_frames < self.min_frames:
            raise ValueError(f"max_frames must be >= min_frames ({self.min_frames}), got {self.max_frames}")
        check_integer(self, "max_pixels", 1, MAX_PIXELS)
        check_integer(self, "min_pixels", 1, MAX_PIXELS)
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels must be <= max_pixels ({self.max_pixels}), got {self.min_pixels}")


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

    def __post_init__(self) -> None:
        check_integer(self, "r", 1, MAX_CHANNELS)
        check_integer(self, "alpha", 1, MAX_INNER)
        check_number(self, "dropout", 0, 1, hi_open=True)
        if not isinstance(self.target_modules, str) or not self.target_modules:
            raise ValueError(f"target_modules must be a module-name pattern, got {self.target_modules!r}")
        if not isinstance(self.modules_to_save, list) or not all(isinstance(m, str) for m in self.modules_to_save):
            raise ValueError(f"modules_to_save must be a list of module names, got {self.modules_to_save!r}")


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

    def __post_init__(self) -> None:
        check_integer(self, "hidden_size", 1, MAX_WIDTH)
        check_integer(self, "inner_size", 1, MAX_INNER)
        check_number(self, "dropout", 0, 1, hi_open=True)
        check_flag(self, "video_mean")


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
        check_integer(self, "vision_dim", 1, MAX_WIDTH)
        check_integer(self, "llm_dim", 1, MAX_WIDTH)
        check_integer(self, "merge", 1, MAX_MERGE)
        for name in ("vision_channels", "llm_channels", "fused_channels", "refine_channels"):
            check_integer(self, name, 1, MAX_CHANNELS)
        # Whether each block exists is checked against the loaded tower (factory); here, that they are indices.
        check_integer_list(self, "vision_depths", 0, 1023, what="block indices")

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

    def __post_init__(self) -> None:
        if not isinstance(self.base, str) or not self.base:
            raise ValueError(f"base must be a base model folder or preset:NAME, got {self.base!r}")
        for name, cls in (("regression", RegressionHeadConfig), ("saliency", SaliencyDecoderConfig),
                          ("sampling", SamplingConfig)):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"{name} must be a mapping of its settings, got {getattr(self, name)!r}")
        check_integer_list(self, "trained_stages", 1, 3, what="stage numbers")
        check_integer(self, "format_version", 1, 1000)
        # Both heads read the same LLM states.
        if self.saliency.llm_dim != self.regression.hidden_size:
            raise ValueError(f"saliency.llm_dim must equal regression.hidden_size (the LLM's width, "
                             f"{self.regression.hidden_size}), got {self.saliency.llm_dim}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, allow_nan=False)  # validated: never NaN

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


def build_dataclass(cls, data, source: str, nested: dict[str, type], keys: str = ""):
    """Dataclass from a dict, recursively (``nested``: field name -> dataclass). Unknown and missing
    keys, values the class's own checks refuse (``__post_init__``) and values whose type does not
    fit the field's annotation raise one ``ValueError`` naming ``source`` and the key, e.g.
    "config.json: regression.inner_size must be an integer in [1, 65536], got -5" (``keys``: the
    enclosing blocks, "regression.")."""
    where = f"{source}.{keys[:-1]}" if keys else source  # the block a structural error is in
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where}: missing key {name!r}")
            continue
        sub = nested.get(name)
        value = data[name]
        if sub and value is not None:
            value = build_dataclass(sub, value, source, nested, f"{keys}{name}.")
        kwargs[name] = value
    # The class's own checks speak first: they know what a value means (and its range). A class
    # without them still gets no text where a number belongs: the annotations are checked after.
    try:
        built = cls(**kwargs)
    except ValueError as err:
        raise ValueError(f"{source}: {keys}{err}") from None
    except TypeError as err:  # a check compared a value of the wrong type
        raise ValueError(f"{source}: {keys}{wrong_type(cls, kwargs) or err}") from None
    if wrong := wrong_type(cls, kwargs):
        raise ValueError(f"{source}: {keys}{wrong}")
    return built


def wrong_type(cls, values: dict) -> str | None:
    """The first of ``values`` that does not fit its field's annotation in dataclass ``cls``, as
    "NAME must be an integer, got 'big'"; None if all fit. Annotations this does not know (a
    ``Path``, a ``dict``) are not checked."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that does not resolve: nothing to check against
        return None
    for name, value in values.items():
        expected = _expected(value, hints.get(name))
        if expected:
            hint = ""
            if isinstance(value, str) and _reads_as_number(value):
                hint = " (YAML reads a number such as 1e-4 as text unless it has a dot: write 1.0e-4)"
            return f"{name} must be {expected}, got {value!r}{hint}"
    return None


def _expected(value, hint) -> str | None:
    """What ``hint`` asks for, if ``value`` is not it (None: it fits, or the hint is not checked)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        wanted = [_expected(value, a) for a in args if a is not type(None)]
        if any(w is None for w in wanted):
            return None
        return " or ".join(wanted + (["null"] if type(None) in args else []))
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if number and math.isfinite(value) else "a finite number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin is list and len(args) == 1:
        if isinstance(value, list) and all(_expected(v, args[0]) is None for v in value):
            return None
        item = {int: "integers", float: "finite numbers", str: "strings", bool: "true/false values"}.get(args[0])
        return f"a list of {item}" if item else None
    if dataclasses.is_dataclass(hint):
        return None if isinstance(value, hint) else "a mapping"
    return None


def _reads_as_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_NESTED = {"regression": RegressionHeadConfig, "saliency": SaliencyDecoderConfig, "sampling": SamplingConfig}
