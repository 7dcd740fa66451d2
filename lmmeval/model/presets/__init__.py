"""Model presets: Qwen2.5-VL shapes as data (``tiny.yaml``, ``7b.yaml``) and the base models built from them.

The tiny preset is the test/demo stand-in for ``Qwen/Qwen2.5-VL-7B-Instruct``: the identical
architecture (``Qwen2_5_VLConfig`` with a windowed-attention ViT including full-attention
blocks, 2x2 patch merger MLP, 3D multimodal RoPE, untied LM head), a byte-level BPE tokenizer of
the real design with every Qwen2.5-VL special token and the real chat template, and the real
processor classes (``Qwen2VLImageProcessor`` / ``Qwen2VLVideoProcessor`` / ``Qwen2_5_VLProcessor``).
Written with ``save_pretrained``, it loads with exactly the calls used for the real checkpoint,
so every test and the demo run the production code path on a 2-core CPU in seconds. Only the
sizes differ; the weights are random, so its outputs carry no meaning until it is trained.

A base named ``preset:NAME`` (``preset:tiny``, ``preset:7b``) is built in memory with random weights
drawn under seed 0 (the same weights every time, per device): ``lmmeval.model.factory`` resolves
such names. The tokenizer's vocabulary ships as ``tiny_bpe.json`` (made by
``tools/build_tiny_tokenizer.py``); the 7B preset keeps that tokenizer.

    from lmmeval.model.presets import save_base
    save_base("runs/tiny_base")          # a ~6 MB Qwen2.5-VL folder
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BPE_FILE = HERE / "tiny_bpe.json"
PRESET_NAMES = tuple(sorted(p.stem for p in HERE.glob("*.yaml")))

QWEN25VL_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)

# The chat template of Qwen/Qwen2.5-VL-7B-Instruct (tokenizer_config.json), verbatim.
QWEN25VL_CHAT_TEMPLATE = (HERE / "qwen2_5_vl_chat_template.jinja").read_text()

# CLIP normalisation, as in the real preprocessor_config.json.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def load_preset(name: str) -> dict[str, Any]:
    """A preset's sizes (its YAML file) as a dict."""
    from ..configuration import read_yaml

    if name not in PRESET_NAMES:
        raise ValueError(f"unknown preset {name!r}; the presets are {', '.join(PRESET_NAMES)}")
    return read_yaml(HERE / f"{name}.yaml")


def build_tokenizer():
    """The tiny ``Qwen2Tokenizer``: the shipped BPE + Qwen2.5-VL added tokens + chat template.

    Mirrors Qwen2.5-VL-7B-Instruct's tokenizer_config: eos ``<|im_end|>``, pad
    ``<|endoftext|>``, no bos/unk, the 13 vision/chat tokens as extra special tokens and the
    22 added tokens at consecutive ids right after the BPE vocabulary.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    bpe = json.loads(BPE_FILE.read_text(encoding="utf-8"))
    vocab, merges = bpe["vocab"], [tuple(m) for m in bpe["merges"]]
    # Constructed with <|endoftext|> as its only special token, so that it takes the first
    # added id (as in the real tokenizer); the rest are added below in the real order.
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        add_prefix_space=False,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        model_max_length=131072,
    )
    special = [t for t, is_special in QWEN25VL_ADDED_TOKENS[1:] if is_special]
    plain = [t for t, is_special in QWEN25VL_ADDED_TOKENS if not is_special]
    tokenizer.add_special_tokens(
        {"extra_special_tokens": [AddedToken(t, special=True, normalized=False) for t in special]}
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = QWEN25VL_CHAT_TEMPLATE

    base = len(vocab)
    for offset, (token, _) in enumerate(QWEN25VL_ADDED_TOKENS):
        got = tokenizer.convert_tokens_to_ids(token)
        if got != base + offset:
            raise RuntimeError(f"added token {token} got id {got}, expected {base + offset}")
    return tokenizer


def build_processor(tokenizer, preset: dict[str, Any]):
    """``Qwen2_5_VLProcessor`` with the real processor classes and the preset's pixel budget."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    p = preset
    common = dict(
        min_pixels=p["min_pixels"],
        max_pixels=p["max_pixels"],
        patch_size=p["patch_size"],
        temporal_patch_size=p["temporal_patch_size"],
        merge_size=p["spatial_merge_size"],
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    image_processor = Qwen2VLImageProcessor(**common)
    # cap_pixels_per_frame=True: qwen-vl-utils' total-video pixel budget (a no-op at these
    # sizes); set explicitly because transformers 5.2x warns on every call while it is unset.
    video_processor = Qwen2VLVideoProcessor(**common, cap_pixels_per_frame=True)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN25VL_CHAT_TEMPLATE,
    )


def build_config(tokenizer, preset: dict[str, Any]):
    """``Qwen2_5_VLConfig`` at the ``preset``'s sizes, token ids taken from ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    p = preset
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok, _ in QWEN25VL_ADDED_TOKENS}
    if max(ids.values()) >= p["vocab_size"]:
        raise RuntimeError(f"vocab_size {p['vocab_size']} does not cover token id {max(ids.values())}")
    head_dim = p["hidden_size"] // p["num_attention_heads"]
    if sum(p["mrope_section"]) != head_dim // 2:
        raise RuntimeError(f"mrope_section {p['mrope_section']} must sum to head_dim/2 = {head_dim // 2}")
    text_config = dict(
        vocab_size=p["vocab_size"],
        hidden_size=p["hidden_size"],
        intermediate_size=p["intermediate_size"],
        num_hidden_layers=p["num_hidden_layers"],
        num_attention_heads=p["num_attention_heads"],
        num_key_value_heads=p["num_key_value_heads"],
        hidden_act="silu",
        max_position_embeddings=p["max_position_embeddings"],
        rms_norm_eps=p["rms_norm_eps"],
        use_sliding_window=False,
        max_window_layers=p["num_hidden_layers"],
        attention_dropout=0.0,
        rope_scaling={"type": "mrope", "mrope_section": list(p["mrope_section"]), "rope_theta": p["rope_theta"]},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        initializer_range=0.02,
    )
    vision_config = dict(
        depth=p["vision_depth"],
        hidden_size=p["vision_hidden_size"],
        hidden_act="silu",
        intermediate_size=p["vision_intermediate_size"],
        num_heads=p["vision_num_heads"],
        in_channels=3,
        patch_size=p["patch_size"],
        spatial_merge_size=p["spatial_merge_size"],
        temporal_patch_size=p["temporal_patch_size"],
        tokens_per_second=p["tokens_per_second"],
        window_size=p["window_size"],
        out_hidden_size=p["hidden_size"],
        fullatt_block_indexes=list(p["vision_fullatt_block_indexes"]),
        initializer_range=0.02,
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
        architectures=["Qwen2_5_VLForConditionalGeneration"],
    )
    # Older Qwen2-VL code paths read these from the top level.
    config.vision_token_id = ids["<|vision_pad|>"]
    return config


def build_base(preset: str | dict[str, Any] = "tiny", seed: int | None = 0, dtype=None, device=None,
               attention: str = "sdpa"):
    """(model, processor) of ``preset`` (a name or a dict of sizes) with random weights drawn under
    ``seed``, built in memory directly on ``device`` in ``dtype`` (default float32, CPU), with
    transformers' ``attention`` implementation.

    With a seed the global random state is left as it was; ``seed=None`` draws from torch's global
    generator as it stands (a caller that seeded it already). The generation config is the 7B's
    (eos ``<|im_end|>`` or ``<|endoftext|>``, pad ``<|endoftext|>``) but greedy.
    """
    import contextlib

    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    sizes = load_preset(preset) if isinstance(preset, str) else preset
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer, sizes)
    config = build_config(tokenizer, sizes)
    dtype = dtype or torch.float32
    seeded = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with seeded, torch.device(device or "cpu"):
        if seed is not None:
            torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attention)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(bos_token_id=eot, eos_token_id=[im_end, eot], pad_token_id=eot,
                                               do_sample=False)
    return model.eval(), processor


def save_base(out_dir: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Write ``build_base(preset, seed)`` as a loadable Qwen2.5-VL folder (float32) and return it.

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the
    tokenizer files and the processor configs, exactly as ``save_pretrained`` writes them for a
    real checkpoint. Building twice with the same seed gives identical files.
    """
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = build_base(preset, seed=seed, dtype=torch.float32)
    model.config.dtype = torch.float32
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def geometry(preset: str = "tiny"):
    """The preset's patch geometry (what its processor reads frames in), without building anything."""
    from ..configuration import PatchGeometry

    sizes = load_preset(preset)
    return PatchGeometry(sizes["patch_size"], sizes["spatial_merge_size"], sizes["temporal_patch_size"])
