"""Safe loading: safetensors for weights, no pickle loads, no remote code, validated configs."""

import json
import re
from pathlib import Path

import pytest

from lmmeval.inference.assessor import Assessor

SOURCE = Path(__file__).resolve().parents[2] / "lmmeval"


def _sources():
    return [(p, p.read_text()) for p in SOURCE.rglob("*.py")]


def test_no_unsafe_torch_load_and_no_remote_code():
    for path, text in _sources():
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{path}: {call}"
        assert not re.search(r"trust_remote_code\s*=\s*True", text), path
        assert "pickle.load" not in text, path


def test_weights_are_safetensors(tiny_assessor, tmp_path):
    ckpt = tiny_assessor.save_pretrained(tmp_path / "ckpt")
    assert not list(ckpt.rglob("*.bin")) and not list(ckpt.rglob("*.pt"))
    assert (ckpt / "heads.safetensors").is_file()


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(extra=1), r"unknown key\(s\) \['extra'\]"),
    (lambda c: c.pop("regression"), r"missing key 'regression'"),
    (lambda c: c["sampling"].update(fps=-1), r"sampling.fps must be > 0"),
    (lambda c: c.update(format_version=99), r"format_version 99 is not supported"),
    (lambda c: c["regression"].update(inner_size=64), r"regression weights do not match .*wrong shapes"),
    (lambda c: c["regression"].update(hidden_size=64), r"was not trained on .*: LLM width 64 vs 128"),
])
def test_checkpoint_config_is_validated(tiny_assessor, tmp_path, edit, message):
    ckpt = tiny_assessor.save_pretrained(tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    edit(config)
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        Assessor.from_pretrained(ckpt, device="cpu")


def test_corrupt_heads_file_is_a_clear_error(tiny_assessor, tmp_path):
    ckpt = tiny_assessor.save_pretrained(tmp_path / "ckpt")
    (ckpt / "heads.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="heads.safetensors"):
        Assessor.from_pretrained(ckpt, device="cpu")


def test_a_version_1_config_still_loads(tiny_assessor, tmp_path, synthetic_raw):
    """Version 1 of config.json also repeated the LoRA settings that adapter_config.json holds: such
    a checkpoint loads (the block unread) and scores as it did."""
    ckpt = tiny_assessor.save_pretrained(tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    assert config["format_version"] == 2 and "lora" not in config
    config |= {"format_version": 1, "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "x",
                                             "modules_to_save": []}}
    (ckpt / "config.json").write_text(json.dumps(config))
    video = str(sorted((synthetic_raw / "videos").glob("*.mp4"))[0])
    loaded = Assessor.from_pretrained(ckpt, device="cpu")
    assert loaded.config.format_version == 2
    assert loaded.assess(video).quality == pytest.approx(tiny_assessor.assess(video).quality, abs=1e-6)
