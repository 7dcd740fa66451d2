"""The offline tiny Qwen2.5-VL base (lmmeval.model.presets): loads like the real checkpoint and runs the
same code path; its shipped vocabulary is what tools/build_tiny_tokenizer.py builds."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lmmeval.model.presets import QWEN25VL_ADDED_TOKENS, QWEN25VL_CHAT_TEMPLATE, load_preset, save_base  # noqa: E402

TINY_PRESET = load_preset("tiny")

# sha256 of json.dumps(chat_template) for Qwen/Qwen2.5-VL-7B-Instruct (revision cc594898),
# as published alongside that template.
REAL_TEMPLATE_JSON_SHA256 = "4df95d05455c2a6f762616492bba63d0f9bef904ef47daabad35f5715d6d2e4e"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
LEVEL_WORDS = (" bad", " poor", " fair", " good", " excellent")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_base(tmp_path_factory.mktemp("tiny_base") / "model")


@pytest.fixture(scope="module")
def processor(tiny_dir):
    return transformers.AutoProcessor.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def model(tiny_dir):
    return transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_dir).eval()


def _chat(processor, kind: str) -> str:
    conversation = [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": "Rate it."}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)


def test_loads_like_the_real_checkpoint(tiny_dir, processor, model):
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    assert type(model.config) is Qwen2_5_VLConfig
    assert model.dtype == torch.float32
    assert isinstance(processor, Qwen2_5_VLProcessor)
    assert isinstance(processor.image_processor, Qwen2VLImageProcessor)
    assert isinstance(processor.video_processor, Qwen2VLVideoProcessor)
    assert isinstance(processor.tokenizer, Qwen2Tokenizer)
    assert (tiny_dir / "model.safetensors").is_file()
    size = sum(f.stat().st_size for f in tiny_dir.rglob("*") if f.is_file())
    assert size < 10 * 1024 * 1024, size

    # Architecture features of the 7B kept at tiny sizes.
    text, vision = model.config.text_config, model.config.vision_config
    assert text.hidden_size == TINY_PRESET["hidden_size"] == vision.out_hidden_size
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    assert list(vision.fullatt_block_indexes) == TINY_PRESET["vision_fullatt_block_indexes"]
    assert 0 < len(vision.fullatt_block_indexes) < vision.depth  # windowed and full blocks
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    assert not model.config.tie_word_embeddings
    assert model.model.visual is not None

    # Every Qwen2.5-VL added token, at consecutive ids after the BPE vocabulary, and the
    # config's token ids point at them.
    tok = processor.tokenizer
    base = TINY_PRESET["bpe_vocab_size"]
    for offset, (token, is_special) in enumerate(QWEN25VL_ADDED_TOKENS):
        assert tok.convert_tokens_to_ids(token) == base + offset, token
        assert (token in tok.all_special_tokens) == is_special, token
    cfg = model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_end_token_id == tok.convert_tokens_to_ids("<|vision_end|>")
    assert max(base + len(QWEN25VL_ADDED_TOKENS) - 1, tok.convert_tokens_to_ids("<|file_sep|>")) < text.vocab_size
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.bos_token is None


def test_chat_template_is_the_real_one(processor):
    assert hashlib.sha256(json.dumps(QWEN25VL_CHAT_TEMPLATE).encode()).hexdigest() == REAL_TEMPLATE_JSON_SHA256
    assert processor.chat_template == QWEN25VL_CHAT_TEMPLATE
    assert processor.tokenizer.chat_template == QWEN25VL_CHAT_TEMPLATE

    text = _chat(processor, "video")
    assert "<|vision_start|><|video_pad|><|vision_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")


def test_video_forward(processor, model):
    video = torch.randint(0, 256, (4, 3, 112, 112), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    inputs = processor(
        text=[_chat(processor, "video")],
        videos=[video],
        video_metadata=[{"fps": 8.0, "total_num_frames": 4}],
        do_sample_frames=False,
        return_tensors="pt",
    )
    assert "mm_token_type_ids" in inputs
    assert inputs["video_grid_thw"].tolist() == [[2, 8, 8]]
    n_video_tokens = int((inputs["input_ids"] == model.config.video_token_id).sum())
    assert n_video_tokens == 2 * 8 * 8 // 4 == 32
    assert int((inputs["mm_token_type_ids"] != 0).sum()) == n_video_tokens

    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    seq = inputs["input_ids"].shape[1]
    assert out.logits.shape == (1, seq, model.config.text_config.vocab_size)
    assert len(out.hidden_states) == model.config.text_config.num_hidden_layers + 1
    assert out.hidden_states[-1].shape == (1, seq, model.config.text_config.hidden_size)
    assert torch.isfinite(out.logits).all()


def test_image_forward(processor, model):
    from PIL import Image

    rng = torch.Generator().manual_seed(1)
    image = Image.fromarray(torch.randint(0, 256, (112, 112, 3), dtype=torch.uint8, generator=rng).numpy())
    inputs = processor(text=[_chat(processor, "image")], images=[image], return_tensors="pt")
    assert "mm_token_type_ids" in inputs
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 8 * 8 // 4

    with torch.no_grad():
        out = model(**inputs, output_hidden_states=True)
    seq = inputs["input_ids"].shape[1]
    assert out.logits.shape == (1, seq, model.config.text_config.vocab_size)
    assert out.hidden_states[-1].shape == (1, seq, model.config.text_config.hidden_size)


def test_level_words_have_distinct_first_tokens(processor):
    tok = processor.tokenizer
    encoded = {w: tok.encode(w, add_special_tokens=False) for w in LEVEL_WORDS}
    first = [ids[0] for ids in encoded.values()]
    assert len(set(first)) == len(LEVEL_WORDS), encoded
    # As in the real Qwen vocabulary, each level word is a single token here.
    assert all(len(ids) == 1 for ids in encoded.values()), encoded
    # Byte-level BPE round-trips text, including the distortion names.
    text = "The distortions in this video are: Eye Distortions; Blurring / Exposure / Grain."
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_same_seed_same_files(tiny_dir, model, tmp_path):
    from safetensors.torch import load_file

    again = save_base(tmp_path / "again", seed=0)
    for name in TOKENIZER_FILES + ("config.json", "processor_config.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes(), name
    # Files on disk (save_pretrained writes the checkpoint's original key names) ...
    weights = load_file(str(again / "model.safetensors"))
    first = load_file(str(tiny_dir / "model.safetensors"))
    assert set(weights) == set(first)
    assert all(torch.equal(weights[k], first[k]) for k in first)
    assert (again / "model.safetensors").read_bytes() == (tiny_dir / "model.safetensors").read_bytes()
    # ... and the loaded modules.
    reloaded = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(again).state_dict()
    reference = model.state_dict()
    for key in ("model.language_model.embed_tokens.weight", "model.visual.patch_embed.proj.weight"):
        assert torch.equal(reloaded[key], reference[key]), key

    other = load_file(str(save_base(tmp_path / "other", seed=1) / "model.safetensors"))
    assert not torch.equal(other["lm_head.weight"], weights["lm_head.weight"])


def test_7b_shape_has_the_real_parameter_count():
    """The benchmark preset has Qwen2.5-VL-7B-Instruct's shape: its 8,292,166,656 parameters
    (built on the meta device: no memory, no weights)."""
    import torch

    from lmmeval.model.presets import build_base

    model, _ = build_base("7b", dtype=torch.bfloat16, device="meta")
    assert sum(p.numel() for p in model.parameters()) == 8_292_166_656


def test_shipped_vocabulary_is_what_the_tool_builds():
    """presets/tiny_bpe.json is made by tools/build_tiny_tokenizer.py (its corpus and BPE training):
    rebuilding it gives the shipped file byte for byte."""
    import importlib.util
    from pathlib import Path

    from lmmeval.model.presets import BPE_FILE

    path = Path(__file__).resolve().parents[1] / "tools" / "build_tiny_tokenizer.py"
    spec = importlib.util.spec_from_file_location("build_tiny_tokenizer", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.bpe_json() == BPE_FILE.read_text(encoding="utf-8")


def test_tokenizer_files_are_the_demo_checkpoints(tiny_dir):
    """The tiny base's tokenizer and processor files equal those the demo checkpoint's base shipped
    with (made when the BPE was still trained at build time): shipping the vocabulary as a file
    changed no token."""
    from lmmeval.model.factory import DEMO_CHECKPOINT

    for name in TOKENIZER_FILES + ("processor_config.json",):
        assert (tiny_dir / name).read_bytes() == (DEMO_CHECKPOINT / "base" / name).read_bytes(), name
