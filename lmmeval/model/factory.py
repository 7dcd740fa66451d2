"""Building, loading and saving assessor models: the one place that knows how.

A checkpoint folder holds ``config.json`` (``AssessorConfig``), the LoRA adapter in PEFT
format (``adapter_config.json`` + ``adapter_model.safetensors``; absent before any LoRA
training), ``heads.safetensors`` (regression head and saliency decoder) and the processor
files. The base model is referenced, not copied: a Qwen2.5-VL folder (a relative path is
relative to the checkpoint folder) or ``preset:NAME``, random weights at a preset's shape
(``lmmeval.model.presets``). The folder also loads with plain transformers + peft (README).

Inference (``lmmeval.inference.Assessor``) and training (``lmmeval.training``) both get their
model here, as an ``AssessorModel``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .configuration import (CONFIG_NAME, AssessorConfig, LoraSettings, PatchGeometry, RegressionHeadConfig,
                            SaliencyDecoderConfig, SamplingConfig)
from .heads import RegressionHead, SaliencyDecoder
from .modeling import LMME3DHF

DEMO_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "demo_checkpoint"
HEADS_NAME = "heads.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PRESET_PREFIX = "preset:"


@dataclass
class AssessorModel:
    """A built or loaded assessor: the network, its processor, its checkpoint config."""

    network: LMME3DHF
    processor: Any  # transformers' Qwen2_5_VLProcessor
    config: AssessorConfig  # its ``base`` is resolved: "preset:NAME" or an absolute folder
    device: torch.device
    peft_model: Any = None  # the PeftModel whose LoRA layers live inside network.backbone (None: no adapter)

    @property
    def geometry(self) -> PatchGeometry:
        return PatchGeometry.of(self.processor)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_base(base: str | Path, checkpoint: str | Path | None = None) -> str:
    """The one reading of a base name: ``preset:NAME`` (checked against the presets) or a folder,
    made absolute (a relative folder is relative to ``checkpoint`` when given, else to the cwd)."""
    from .presets import PRESET_NAMES

    text = str(base)
    if text.startswith(PRESET_PREFIX):
        if text[len(PRESET_PREFIX):] not in PRESET_NAMES:
            raise ValueError(f"unknown base {text!r}; the presets are "
                             f"{', '.join(PRESET_PREFIX + name for name in PRESET_NAMES)}")
        return text
    path = Path(text)
    if not path.is_absolute() and checkpoint is not None:
        path = Path(checkpoint) / path
    return str(path.resolve())


def load_backbone(base: str, device: torch.device, with_processor: bool = True):
    """(backbone, processor) of a resolved base; ``with_processor=False`` skips reading the base's
    processor (None): a checkpoint carries its own."""
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if base.startswith(PRESET_PREFIX):
        from .presets import build_base

        return build_base(base[len(PRESET_PREFIX):], seed=0, dtype=dtype, device=device)
    if not (Path(base) / "config.json").is_file():
        raise FileNotFoundError(f"{base}: base model directory not found (no config.json; pass --base / base=)")
    try:
        backbone = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            base, dtype=dtype, attn_implementation=_attention_implementation(), local_files_only=True)
    except OSError as err:
        raise FileNotFoundError(f"{base}: cannot load a Qwen2.5-VL base model ({err})") from None
    return backbone.to(device), AutoProcessor.from_pretrained(base) if with_processor else None


def _attention_implementation() -> str:
    try:
        import flash_attn  # noqa: F401

        return "flash_attention_2"
    except ImportError:
        return "sdpa"


def new_model(base: str | Path, device: str | torch.device | None = None, sampling: SamplingConfig | None = None,
              seed: int = 0) -> AssessorModel:
    """A fresh, untrained assessor on a base (heads initialised under ``seed``, no adapter)."""
    device = torch.device(device) if device is not None else default_device()
    base = resolve_base(base)
    backbone, processor = load_backbone(base, device)
    return from_backbone(backbone, processor, base, device, sampling, seed)


def from_backbone(backbone, processor, base: str, device: str | torch.device, sampling: SamplingConfig | None = None,
                  seed: int = 0) -> AssessorModel:
    """A fresh assessor around an already loaded backbone (e.g. random weights at 7B shape)."""
    device = torch.device(device)
    text, vision = backbone.config.text_config, backbone.config.vision_config
    config = AssessorConfig(
        base=resolve_base(base),
        regression=RegressionHeadConfig(hidden_size=text.hidden_size),
        saliency=SaliencyDecoderConfig.scaled_to(vision.hidden_size, text.hidden_size, vision.spatial_merge_size),
        sampling=sampling or SamplingConfig(),
    )
    torch.manual_seed(seed)
    network = _assemble(backbone, processor, config, device)
    return AssessorModel(network.eval(), processor, config, device)


def load_model(path: str | Path | None = None, device: str | torch.device | None = None,
               base: str | Path | None = None, trainable: bool = False) -> AssessorModel:
    """Load a checkpoint folder (None: the embedded synthetic-data demo checkpoint).

    ``base`` overrides the base recorded in the checkpoint; ``trainable`` loads the LoRA
    adapter for further training.
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
    config.base = resolve_base(base) if base is not None else resolve_base(config.base, path)
    device = torch.device(device) if device is not None else default_device()
    processor = AutoProcessor.from_pretrained(path)  # the checkpoint's own
    backbone, _ = load_backbone(config.base, device, with_processor=False)
    peft_model = None
    if (path / ADAPTER_CONFIG).is_file():
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(backbone, path, is_trainable=trainable)  # LoRA injected in place
    network = _assemble(backbone, processor, config, device)
    _load_heads(network, path / HEADS_NAME)
    return AssessorModel(network.eval(), processor, config, device, peft_model)


def save_model(model: AssessorModel, out_dir: str | Path, base_reference: str | None = None) -> Path:
    """Write the checkpoint folder (see the module docstring). ``base_reference`` is the base to
    record (default: the resolved base the model was built or loaded on)."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_ref = base_reference or model.config.base
    if model.peft_model is not None:
        model.peft_model.peft_config["default"].base_model_name_or_path = base_ref
        # The vocabulary is never resized here: no embedding layers beyond modules_to_save (and no
        # look-up of the base's config.json to find out, which a preset base does not have).
        model.peft_model.save_pretrained(out_dir, save_embedding_layers=False)  # adapter_config.json + weights
    net = model.network
    heads = {f"regression.{k}": v for k, v in net.regression.state_dict().items()}
    heads |= {f"saliency.{k}": v for k, v in net.saliency.state_dict().items()}
    save_file({k: v.detach().float().cpu().contiguous() for k, v in heads.items()}, out_dir / HEADS_NAME)
    model.processor.save_pretrained(out_dir)
    (out_dir / CONFIG_NAME).write_text(dataclasses.replace(model.config, base=base_ref).to_json())
    return out_dir


def add_lora(model: AssessorModel, settings: LoraSettings) -> None:
    """Inject fresh LoRA layers into the LLM (stage 1)."""
    from peft import LoraConfig, get_peft_model

    if model.peft_model is not None:
        raise ValueError("this assessor already has a LoRA adapter")
    cfg = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                     target_modules=settings.target_modules, modules_to_save=list(settings.modules_to_save) or None,
                     base_model_name_or_path=model.config.base)
    model.peft_model = get_peft_model(model.network.backbone, cfg)


def replace_regression_head(model: AssessorModel, video_mean: bool, seed: int = 0) -> None:
    """A freshly initialised regression head (stage 2 trains it from its initialisation; stage 1
    never touches it), reading the video tokens' mean state or not. Seeds torch's global
    generator with ``seed`` first, so the initialisation is reproducible."""
    model.config.regression = dataclasses.replace(model.config.regression, video_mean=video_mean)
    torch.manual_seed(seed)
    model.network.regression = RegressionHead(model.config.regression).to(model.device)


def _assemble(backbone, processor, config: AssessorConfig, device: torch.device) -> LMME3DHF:
    network = LMME3DHF(backbone, processor.tokenizer, RegressionHead(config.regression),
                       SaliencyDecoder(config.saliency))
    # The heads run in the backbone's dtype (bf16 on GPU); the regression MLP upcasts its input.
    dtype = next(backbone.parameters()).dtype
    network.regression.to(device)
    network.saliency.to(device=device, dtype=dtype)
    return network.to(device)


def _load_heads(network: LMME3DHF, path: Path) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (regression head and saliency decoder weights)")
    try:
        state = load_file(path)
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    for name, module in (("regression", network.regression), ("saliency", network.saliency)):
        sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        own = module.state_dict()
        missing, unknown = sorted(set(own) - set(sub)), sorted(set(sub) - set(own))
        wrong = [f"{k}: {tuple(sub[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sub and sub[k].shape != own[k].shape]
        if missing or unknown or wrong:
            raise ValueError(f"{path}: {name} weights do not match config.json "
                             f"(missing {missing[:5]}, unknown {unknown[:5]}, wrong shapes {wrong[:5]})")
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in sub.items()})
