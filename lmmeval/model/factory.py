"""Building, loading and saving assessor models: the one place that knows how.

A checkpoint folder holds ``config.json`` (``AssessorConfig``), the LoRA adapter in PEFT
format (``adapter_config.json`` + ``adapter_model.safetensors``; absent before any LoRA
training), ``heads.safetensors`` (regression head and saliency decoder), the processor
files and, once ``lmmeval calibrate-ood`` has run, ``ood.safetensors`` (``lmmeval.model.ood``). The base model is referenced, not copied: a Qwen2.5-VL folder (a relative path is
relative to the checkpoint folder) or ``preset:NAME``, random weights at a preset's shape
(``lmmeval.model.presets``). The folder also loads with plain transformers + peft (docs/api.md, "Loading without lmmeval").

Loading reads data, never runs code: weights are safetensors only (a pickled ``*.bin`` is refused,
as unpickling can run code), every transformers call says ``trust_remote_code=False``, and a folder
whose JSON files ask for code shipped beside them (``auto_map``) is refused before transformers
reads it, naming the file (transformers would otherwise ask "run the custom code? [y/N]" and run
it on a yes). Everything a checkpoint's JSON files and heads say is checked before the base's
weights load.

Inference (``lmmeval.inference.Assessor``) and training (``lmmeval.training``) both get their
model here, as an ``AssessorModel``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .configuration import (ATTENTIONS, CONFIG_NAME, DTYPES, AssessorConfig, LoraSettings, PatchGeometry, RegressionHeadConfig,
                            SaliencyDecoderConfig, SamplingConfig)
from .heads import RegressionHead, SaliencyDecoder
from .modeling import LMME3DHF
from .ood import OOD_NAME, FeatureDistribution

DEMO_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "demo_checkpoint"
HEADS_NAME = "heads.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Weight files that are pickles: never loaded (unpickling can run code), named in the refusal.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
PRESET_PREFIX = "preset:"
# DTYPES and ATTENTIONS (the load precisions and attention implementations) live with the configuration,
# which imports no torch, so the command line can list them without loading torch.


@dataclass
class AssessorModel:
    """A built or loaded assessor: the network, its processor, its checkpoint config."""

    network: LMME3DHF
    processor: Any  # transformers' Qwen2_5_VLProcessor
    config: AssessorConfig  # its ``base`` is resolved: "preset:NAME" or an absolute folder
    device: torch.device
    peft_model: Any = None  # the PeftModel whose LoRA layers live inside network.backbone (None: no adapter)
    attention: str = "sdpa"  # transformers' attention implementation the base was loaded with
    ood: FeatureDistribution | None = None  # the training features' distribution (None: not calibrated)

    @property
    def geometry(self) -> PatchGeometry:
        return PatchGeometry.of(self.processor)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The base's load precision: a name of DTYPES ("auto"/None: bfloat16 on a GPU, float32 on a CPU)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype or "auto"
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def check_attention(attention: str) -> str:
    """``attention`` if it is one of ATTENTIONS and can run here (flash-attention needs its package)."""
    if attention not in ATTENTIONS:
        raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    if attention == "flash_attention_2":
        try:
            import flash_attn  # noqa: F401
        except ImportError:
            raise ValueError("attention flash_attention_2 needs the flash-attn package, which is not installed "
                             "(or use sdpa)") from None
    return attention


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


def load_backbone(base: str, device: torch.device, with_processor: bool = True, dtype: str | torch.dtype = "auto",
                  attention: str = "sdpa"):
    """(backbone, processor) of a resolved base, in ``dtype`` with ``attention``; ``with_processor=False``
    skips reading the base's processor (None): a checkpoint carries its own.

    A folder's weights go straight to their device (``device_map``), not through host memory first;
    under a ZeRO-3 DeepSpeed config made live with transformers' ``HfDeepSpeedConfig`` they are
    created partitioned across the ranks instead (see ``lmmeval.training.recipe``).
    """
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
    from transformers.integrations import is_deepspeed_zero3_enabled

    dtype, attention = resolve_dtype(dtype, device), check_attention(attention)
    if base.startswith(PRESET_PREFIX):
        from .presets import build_base

        backbone, processor = build_base(base[len(PRESET_PREFIX):], seed=0, dtype=dtype, device=device,
                                         attention=attention)
        backbone.name_or_path = base  # what peft records as the adapter's base, as for a folder
        return backbone, processor
    check_base_folder(Path(base))
    placement = {} if is_deepspeed_zero3_enabled() else {"device_map": {"": device}}
    try:
        backbone = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            base, dtype=dtype, attn_implementation=attention, local_files_only=True, use_safetensors=True,
            trust_remote_code=False, **placement)
    except OSError as err:
        raise FileNotFoundError(f"{base}: cannot load a Qwen2.5-VL base model ({err})") from None
    processor = AutoProcessor.from_pretrained(base, trust_remote_code=False) if with_processor else None
    return backbone, processor


def check_base_folder(base: Path) -> None:
    """A base folder loads only as data: no custom code asked for, safetensors weights."""
    if not (base / "config.json").is_file():
        raise FileNotFoundError(f"{base}: base model directory not found (no config.json; pass --base / base=)")
    refuse_custom_code(base)
    if (base / "model.safetensors").is_file() or (base / "model.safetensors.index.json").is_file():
        return
    pickled = sorted(p.name for p in base.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise ValueError(f"{base}: its weights are pickle files ({', '.join(pickled[:3])}), which lmmeval does not "
                         "load (unpickling can run code); convert them to safetensors (model.safetensors, e.g. "
                         "save_pretrained(..., safe_serialization=True))")
    raise FileNotFoundError(f"{base}: no model.safetensors (or model.safetensors.index.json): not a base model folder")


def check_checkpoint_folder(path: Path) -> None:
    """A checkpoint folder loads only as data: no custom code asked for, a safetensors adapter (if any)."""
    refuse_custom_code(path)
    if (path / ADAPTER_CONFIG).is_file() and not (path / ADAPTER_WEIGHTS).is_file():
        pickled = sorted(p.name for p in path.glob("adapter_model.*") if p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise ValueError(f"{path / pickled[0]}: a pickled LoRA adapter, which lmmeval does not load (unpickling "
                             f"can run code); convert it to safetensors ({ADAPTER_WEIGHTS}, e.g. peft's "
                             "save_pretrained(..., safe_serialization=True))")
        raise FileNotFoundError(f"{path}: {ADAPTER_CONFIG} but no {ADAPTER_WEIGHTS} (the LoRA adapter's weights)")


def refuse_custom_code(folder: Path) -> None:
    """Refuse a model folder whose JSON files ask transformers for classes from code shipped beside
    them (an ``auto_map`` entry, at the top of a file or in one of its blocks, e.g. the image processor's
    in processor_config.json). lmmeval runs Qwen2.5-VL's own classes only; refusing, rather than
    loading and ignoring the entry, keeps a folder that says it needs its code from loading as
    something it is not. One line naming the file."""
    for path in sorted(folder.glob("*.json")):
        text = path.read_text(errors="replace")
        if '"auto_map"' not in text:  # most files, and the large tokenizer.json, are not parsed
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            continue  # not a config transformers could read either: it reports that itself
        blocks = [data, *data.values()] if isinstance(data, dict) else []
        for block in blocks:
            if isinstance(block, dict) and "auto_map" in block:
                raise ValueError(f"{path}: asks for custom code (auto_map {json.dumps(block['auto_map'])}); lmmeval "
                                 "never runs code shipped with a model: remove the auto_map entry, or use a folder "
                                 "saved by lmmeval or transformers")


def check_compatible(checkpoint: Path, config: AssessorConfig, base: str) -> None:
    """A checkpoint and a base are compared from their JSON files alone, before any weight loads:
    the LLM and vision-tower widths its heads were sized for, and the ids of the tokens its processor
    writes (vision markers) and its vocabulary. A mismatch is one ``ValueError`` naming both."""
    theirs = _base_facts(base)
    ours = {"LLM width": config.regression.hidden_size, "vision width": config.saliency.vision_dim,
            **_tokenizer_facts(checkpoint)}
    differ = [f"{key} {ours[key]} vs {theirs[key]}" for key in ours
              if key in theirs and key != "vocabulary" and ours[key] != theirs[key]]
    if "vocabulary" in theirs and ours["vocabulary"] > theirs["vocabulary"]:
        differ.append(f"vocabulary {ours['vocabulary']} tokens vs {theirs['vocabulary']} embedding rows")
    if differ:
        raise ValueError(f"{checkpoint} was not trained on {base}: {'; '.join(differ)} (checkpoint vs base); give "
                         "the base it was trained on (--base), or a checkpoint trained on this base")


_MARKERS = ("<|vision_start|>", "<|image_pad|>", "<|video_pad|>")


def _base_facts(base: str) -> dict:
    if base.startswith(PRESET_PREFIX):
        from .presets import QWEN25VL_ADDED_TOKENS, load_preset

        sizes = load_preset(base[len(PRESET_PREFIX):])
        ids = {tok: sizes["bpe_vocab_size"] + i for i, (tok, _) in enumerate(QWEN25VL_ADDED_TOKENS)}
        return {"LLM width": sizes["hidden_size"], "vision width": sizes["vision_hidden_size"],
                "vocabulary": sizes["vocab_size"], **{f"{tok} id": ids[tok] for tok in _MARKERS}}
    path = Path(base) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{base}: base model directory not found (no config.json; pass --base / base=)")
    data = _read_json(path)
    text = data.get("text_config") or data  # transformers 5 nests the LLM's sizes; older configs do not
    vision = data.get("vision_config") or {}
    if not isinstance(text, dict) or not isinstance(vision, dict):
        raise ValueError(f"{path}: text_config and vision_config must be JSON objects")
    keys = {"<|vision_start|>": "vision_start_token_id", "<|image_pad|>": "image_token_id",
            "<|video_pad|>": "video_token_id"}
    facts = {"LLM width": text.get("hidden_size"), "vision width": vision.get("hidden_size"),
             "vocabulary": text.get("vocab_size") or data.get("vocab_size"),
             **{f"{tok} id": data.get(key, text.get(key)) for tok, key in keys.items()}}
    return {k: v for k, v in facts.items() if v is not None}


def _tokenizer_facts(checkpoint: Path) -> dict:
    """The vision-marker ids and the vocabulary size of a checkpoint's own tokenizer (tokenizer.json)."""
    path = checkpoint / "tokenizer.json"
    if not path.is_file():
        return {}
    data = _read_json(path)
    try:
        added = {t["content"]: int(t["id"]) for t in data.get("added_tokens", [])}
        vocab = data.get("model", {}).get("vocab", {})
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: not a tokenizer.json (added_tokens and model.vocab expected)") from None
    ids = [*added.values(), *(v for v in (vocab.values() if isinstance(vocab, dict) else []) if isinstance(v, int))]
    largest = max(ids, default=-1)
    return {"vocabulary": largest + 1, **{f"{tok} id": added[tok] for tok in _MARKERS if tok in added}}


def _read_json(path: Path) -> dict:
    """A JSON object file as a dict; anything else is a ``ValueError`` naming the file."""
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def new_model(base: str | Path, device: str | torch.device | None = None, sampling: SamplingConfig | None = None,
              seed: int = 0, dtype: str | torch.dtype = "auto", attention: str = "sdpa") -> AssessorModel:
    """A fresh, untrained assessor on a base (heads initialised under ``seed``, no adapter)."""
    device = torch.device(device) if device is not None else default_device()
    base = resolve_base(base)
    backbone, processor = load_backbone(base, device, dtype=dtype, attention=attention)
    model = from_backbone(backbone, processor, base, device, sampling, seed)
    model.attention = attention
    return model


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
               base: str | Path | None = None, trainable: bool = False, dtype: str | torch.dtype = "auto",
               attention: str = "sdpa") -> AssessorModel:
    """Load a checkpoint folder (None: the embedded synthetic-data demo checkpoint).

    ``base`` overrides the base recorded in the checkpoint (checked against it first: see
    ``check_compatible``); ``trainable`` loads the LoRA adapter for further training; ``dtype`` and
    ``attention`` are the base's load precision and attention implementation. Everything that can be
    refused (config values, custom code, pickled weights, the heads' shapes and values, the OOD
    statistics) is refused before the base's weights load.
    """
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
    check_compatible(path, config, config.base)  # from JSON files alone, before gigabytes of weights load
    check_checkpoint_folder(path)
    if not config.base.startswith(PRESET_PREFIX):
        check_base_folder(Path(config.base))
    # Both small, and read and checked before the base's weights load. Training moves the features
    # the distribution was fitted on: a model loaded to train carries none.
    heads = read_heads(path / HEADS_NAME, config)
    ood = None if trainable else _load_ood(path, config)
    device = torch.device(device) if device is not None else default_device()
    from transformers import AutoProcessor  # seconds to import: not before the checks above

    processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)  # the checkpoint's own
    backbone, _ = load_backbone(config.base, device, with_processor=False, dtype=dtype, attention=attention)
    peft_model = None
    if (path / ADAPTER_CONFIG).is_file():
        from peft import PeftModel

        # peft takes adapter_model.safetensors when it is there (checked above) and runs no code.
        peft_model = PeftModel.from_pretrained(backbone, path, is_trainable=trainable)  # LoRA injected in place
    network = _assemble(backbone, processor, config, device)
    for name, module in (("regression", network.regression), ("saliency", network.saliency)):
        own = module.state_dict()
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in heads[name].items()})
    return AssessorModel(network.eval(), processor, config, device, peft_model, attention, ood)


def _load_ood(path: Path, config: AssessorConfig) -> FeatureDistribution | None:
    ood = FeatureDistribution.load(path)
    if ood is not None and ood.dim != config.regression.hidden_size:
        raise ValueError(f"{path}/{OOD_NAME}: fitted on {ood.dim}-wide features, but this model's are "
                         f"{config.regression.hidden_size} wide; rerun `lmmeval calibrate-ood`")
    return ood


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
    if model.ood is not None:
        model.ood.save(out_dir)
    elif (out_dir / OOD_NAME).exists():  # an earlier model's statistics would not describe this one
        (out_dir / OOD_NAME).unlink()
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


def replace_saliency_decoder(model: AssessorModel, vision_depths: list[int], seed: int = 0) -> None:
    """A freshly initialised saliency decoder reading the vision blocks ``vision_depths`` besides the
    last (stage 3 trains it from scratch). Seeds torch's global generator with ``seed`` first."""
    saliency = dataclasses.replace(model.config.saliency, vision_depths=list(vision_depths))
    _check_vision_depths(saliency.vision_depths, model.network.backbone)
    model.config.saliency = saliency
    torch.manual_seed(seed)
    model.network.saliency = SaliencyDecoder(saliency).to(model.device)


def _check_vision_depths(depths: list[int], backbone) -> None:
    blocks = len(backbone.model.visual.blocks)
    if any(d >= blocks - 1 for d in depths):
        raise ValueError(f"saliency vision_depths {depths}: the vision tower has {blocks} blocks; give earlier "
                         f"ones (0..{blocks - 2}), the last is always read")


def _assemble(backbone, processor, config: AssessorConfig, device: torch.device) -> LMME3DHF:
    _check_vision_depths(config.saliency.vision_depths, backbone)
    network = LMME3DHF(backbone, processor.tokenizer, RegressionHead(config.regression),
                       SaliencyDecoder(config.saliency))
    # The heads stay float32 whatever the base's precision (they cast their inputs up).
    network.regression.to(device)
    network.saliency.to(device)
    return network.to(device)


def read_heads(path: Path, config: AssessorConfig) -> dict[str, dict[str, torch.Tensor]]:
    """The heads' weights of ``heads.safetensors`` ({"regression": state, "saliency": state}), checked
    against ``config`` before any module is built: names and shapes from the file's header (no tensor
    read yet), then every value finite. Each mismatch or NaN is a ``ValueError`` naming the file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (regression head and saliency decoder weights)")
    expected = _head_shapes(config)
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    for name, own in expected.items():
        sub = {k[len(name) + 1:]: v for k, v in shapes.items() if k.startswith(name + ".")}
        missing, unknown = sorted(set(own) - set(sub)), sorted(set(sub) - set(own))
        wrong = [f"{k}: {sub[k]} vs {own[k]}" for k in own if k in sub and sub[k] != own[k]]
        if missing or unknown or wrong:
            raise ValueError(f"{path}: {name} weights do not match config.json "
                             f"(missing {missing[:5]}, unknown {unknown[:5]}, wrong shapes {wrong[:5]})")
    if strays := sorted(k for k in shapes if k.split(".")[0] not in expected):
        raise ValueError(f"{path}: tensors of neither head: {strays[:5]}")
    try:
        state = load_file(path)  # shapes known good: now the values
    except Exception as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise ValueError(f"{path}: tensor {key!r} is {tensor.dtype}, not floating-point weights")
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: tensor {key!r} is not finite (NaN or inf values): the heads cannot score "
                             "with it; retrain or restore the checkpoint")
    return {name: {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")} for name in expected}


def _head_shapes(config: AssessorConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """The heads' parameter shapes under ``config``, from modules built on the meta device: sizes
    only, nothing allocated, the global random state left as it was."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        modules = {"regression": RegressionHead(config.regression), "saliency": SaliencyDecoder(config.saliency)}
    return {name: {k: tuple(v.shape) for k, v in m.state_dict().items()} for name, m in modules.items()}
