"""Safe loading: a checkpoint and its base are read as data, never run as code.

Weights are safetensors only (a pickled ``*.bin`` is refused), every transformers ``from_pretrained``
says ``trust_remote_code=False``, a folder asking for custom code (``auto_map``) is refused without a
prompt, and every value of ``config.json``, of the heads and of the OOD statistics is checked before
the base's weights load. Each case corrupts a copy of the embedded demo checkpoint.
"""

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import lmmeval.model.factory as factory
from lmmeval.inference.assessor import Assessor
from lmmeval.model.factory import DEMO_CHECKPOINT, load_model

SOURCE = Path(__file__).resolve().parents[2] / "lmmeval"
PHOTO = SOURCE / "assets" / "real_photo" / "face.jpg"


def _calls():
    """(file relative to lmmeval/, receiver name, method name, {keyword: constant value}) of every
    ``RECEIVER.METHOD(...)`` call in lmmeval's code (parsed: docstrings and comments do not count)."""
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                receiver = node.func.value
                name = receiver.id if isinstance(receiver, ast.Name) else type(receiver).__name__
                keywords = {k.arg: k.value.value if isinstance(k.value, ast.Constant) else k.value
                            for k in node.keywords}
                yield path.relative_to(SOURCE).as_posix(), name, node.func.attr, keywords


def test_no_unsafe_torch_load_and_no_remote_code():
    """No torch.load without weights_only=True and no pickle.load in lmmeval. The one unpickling left
    is DeepSpeed's resume (``engine.load_checkpoint`` in training/recipe.py, which calls
    torch.load(weights_only=False)): it reads a training run's own checkpoint files, never a model
    someone hands over (training/recipe.py guards it); this test pins it to that one place. Every
    transformers ``from_pretrained`` says trust_remote_code=False (peft's has no such switch and runs
    no code; ``Assessor.from_pretrained`` is lmmeval's own)."""
    ours = {"Assessor", "cls", "PeftModel"}
    calls = list(_calls())
    assert any(method == "from_pretrained" and receiver not in ours for _, receiver, method, _ in calls)
    resumes = []
    for path, receiver, method, keywords in calls:
        where = f"{path}: {receiver}.{method}(... {', '.join(f'{k}=' for k in keywords)})"
        if (receiver, method) == ("torch", "load"):
            assert keywords.get("weights_only") is True, where
        assert (receiver, method) != ("pickle", "load"), where
        assert keywords.get("trust_remote_code", False) is False, where
        if method == "from_pretrained" and receiver not in ours:
            assert keywords.get("trust_remote_code") is False, where
        if method == "load_checkpoint":
            resumes.append(path)
    assert resumes == ["training/recipe.py"]


def test_weights_are_safetensors(tiny_assessor, tmp_path):
    ckpt = tiny_assessor.save_pretrained(tmp_path / "ckpt")
    assert not list(ckpt.rglob("*.bin")) and not list(ckpt.rglob("*.pt"))
    assert (ckpt / "heads.safetensors").is_file()


@pytest.fixture
def ckpt(tmp_path):
    """A copy of the demo checkpoint (its base, "base", inside it) to corrupt."""
    import shutil

    return Path(shutil.copytree(DEMO_CHECKPOINT, tmp_path / "ckpt"))


@pytest.fixture
def no_weights(monkeypatch):
    """Fails the test if the base's weights start loading: every refusal here must come first."""
    monkeypatch.setattr(factory, "load_backbone", lambda *a, **k: pytest.fail("the base's weights were loaded"))


def _edit_config(ckpt: Path, key: str, value) -> None:
    config = json.loads((ckpt / "config.json").read_text())
    *blocks, last = key.split(".")
    target = config
    for block in blocks:
        target = target[block]
    target[last] = value
    (ckpt / "config.json").write_text(json.dumps(config))  # NaN is written as NaN, which json reads back


# Each wrong value is named with its key, its allowed range and what was there.
@pytest.mark.parametrize("key, value, message", [
    ("regression.inner_size", -5, r"regression\.inner_size must be an integer in \[1, 65536\], got -5$"),
    ("regression.inner_size", "big", r"regression\.inner_size must be an integer in \[1, 65536\], got 'big'$"),
    ("regression.inner_size", 1e9, r"regression\.inner_size must be an integer in \[1, 65536\], got 1000000000\.0$"),
    ("regression.hidden_size", True, r"regression\.hidden_size must be an integer in \[1, 32768\], got True$"),
    ("regression.dropout", 1.0, r"regression\.dropout must be a number in \[0, 1\), got 1\.0$"),
    ("regression.video_mean", "false", r"regression\.video_mean must be true or false, got 'false'$"),
    ("saliency.merge", 0, r"saliency\.merge must be an integer in \[1, 16\], got 0$"),
    ("saliency.vision_channels", 10**6, r"saliency\.vision_channels must be an integer in \[1, 4096\], got 1000000$"),
    ("saliency.vision_depths", [-1],
     r"saliency\.vision_depths must be a list of block indices in \[0, 1023\], got \[-1\]$"),
    ("saliency.vision_depths", [1, 1], r"saliency\.vision_depths names 1 twice: \[1, 1\]$"),
    ("saliency.llm_dim", 64, r"saliency\.llm_dim must equal regression\.hidden_size \(the LLM's width, 128\), got 64$"),
    ("sampling.fps", float("nan"), r"sampling\.fps must be a number in \(0, 120\], got nan$"),
    ("sampling.fps", -1, r"sampling\.fps must be a number in \(0, 120\], got -1$"),
    ("sampling.fps", 1000.0, r"sampling\.fps must be a number in \(0, 120\], got 1000\.0$"),
    ("sampling.min_frames", 10, r"sampling\.max_frames must be >= min_frames \(10\), got 8$"),
    ("sampling.max_pixels", 10**12, r"sampling\.max_pixels must be an integer in \[1, 67108864\], got 1000000000000$"),
    ("sampling.min_pixels", 20000, r"sampling\.min_pixels must be <= max_pixels \(12544\), got 20000$"),
    ("base", 5, r"base must be a base model folder or preset:NAME, got 5$"),
    ("trained_stages", [4], r"trained_stages must be a list of stage numbers in \[1, 3\], got \[4\]$"),
    ("format_version", "2", r"format_version must be an integer in \[1, 1000\], got '2'$"),
    ("format_version", 99, r"format_version 99 is not supported"),
])
def test_config_values_are_refused_naming_the_key(ckpt, no_weights, key, value, message):
    _edit_config(ckpt, key, value)
    with pytest.raises(ValueError, match=re.escape(f"{ckpt / 'config.json'}: ") + message):
        load_model(ckpt, device="cpu")


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(extra=1), r"config\.json: unknown key\(s\) \['extra'\]"),
    (lambda c: c.pop("regression"), r"config\.json: missing key 'regression'"),
    (lambda c: c["regression"].pop("hidden_size"), r"config\.json\.regression: missing key 'hidden_size'"),
    (lambda c: c.update(regression=[128]), r"config\.json\.regression: expected a mapping, got list"),
    # Both LLM widths changed alike: the checkpoint no longer fits its base (from the JSON files alone).
    (lambda c: (c["regression"].update(hidden_size=64), c["saliency"].update(llm_dim=64)),
     r"was not trained on .*: LLM width 64 vs 128"),
])
def test_config_structure_is_validated(ckpt, no_weights, edit, message):
    config = json.loads((ckpt / "config.json").read_text())
    edit(config)
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message):
        load_model(ckpt, device="cpu")


@dataclass
class _Plain:
    """A config class with no checks of its own: the reader checks its annotations."""

    rate: float = 0.1
    count: int = 1
    names: list[str] = field(default_factory=list)
    note: str | None = None
    flag: bool = False


@pytest.mark.parametrize("key, value, message", [
    ("rate", "1e-4", r"rate must be a finite number, got '1e-4' \(YAML reads a number such as 1e-4 as text unless "
                     r"it has a dot: write 1\.0e-4\)$"),
    ("rate", float("inf"), r"rate must be a finite number, got inf$"),
    ("count", 2.0, r"count must be an integer, got 2\.0$"),
    ("count", True, r"count must be an integer, got True$"),
    ("names", ["a", 3], r"names must be a list of strings, got \['a', 3\]$"),
    ("note", 5, r"note must be a string or null, got 5$"),
    ("flag", "no", r"flag must be true or false, got 'no'$"),
])
def test_any_config_reader_checks_values_against_the_annotations(key, value, message):
    """``build_dataclass`` (every YAML and JSON config goes through it) refuses a value whose type is
    not its field's, even in a class that checks nothing itself; fitting values pass (an int is a float)."""
    from lmmeval.model.configuration import build_dataclass

    assert build_dataclass(_Plain, {"rate": 1, "names": ["a"], "note": None}, "x.yaml", {}) == \
        _Plain(rate=1, names=["a"])
    with pytest.raises(ValueError, match=r"^x\.yaml: " + message):
        build_dataclass(_Plain, {key: value}, "x.yaml", {})


def test_a_huge_width_is_refused_at_once_without_allocating(ckpt, no_weights, monkeypatch):
    """inner_size 10**9 would be a 10**9 x 128 float32 layer (512 GB): refused from config.json alone,
    before any layer is built (building one fails this test)."""
    _edit_config(ckpt, "regression.inner_size", 10**9)

    def no_layer(*args, **kwargs):
        raise AssertionError("a layer was built before config.json was checked")

    monkeypatch.setattr(torch.nn.Linear, "__init__", no_layer)
    monkeypatch.setattr(torch.nn.Embedding, "__init__", no_layer)
    with pytest.raises(ValueError, match=r"regression\.inner_size must be an integer in \[1, 65536\], got 1000000000$"):
        load_model(ckpt, device="cpu")


def test_heads_are_checked_against_the_config_before_the_base_loads(ckpt, no_weights):
    """A config whose head sizes differ from heads.safetensors is refused from the file's header."""
    _edit_config(ckpt, "regression.inner_size", 64)
    with pytest.raises(ValueError, match=r"heads\.safetensors: regression weights do not match config\.json .*"
                                         r"wrong shapes \['mlp\.1\.weight: \(256, 128\) vs \(64, 128\)'"):
        load_model(ckpt, device="cpu")


@pytest.mark.parametrize("tensor, bad", [("regression.mlp.4.bias", float("nan")),
                                         ("saliency.refine.4.weight", float("inf"))])
def test_non_finite_head_weights_are_refused_naming_the_tensor(ckpt, no_weights, tensor, bad):
    heads = load_file(ckpt / "heads.safetensors")
    heads[tensor].view(-1)[0] = bad
    save_file(heads, ckpt / "heads.safetensors")
    with pytest.raises(ValueError, match=rf"heads\.safetensors: tensor '{re.escape(tensor)}' is not finite"):
        load_model(ckpt, device="cpu")


def test_corrupt_heads_file_is_a_clear_error(ckpt, no_weights):
    (ckpt / "heads.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=r"heads\.safetensors: not a readable safetensors file"):
        load_model(ckpt, device="cpu")


def test_a_pickled_adapter_is_refused(ckpt, no_weights):
    torch.save(load_file(ckpt / "adapter_model.safetensors"), ckpt / "adapter_model.bin")
    (ckpt / "adapter_model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"adapter_model\.bin: a pickled LoRA adapter, which lmmeval does not load "
                                         r".*convert it to safetensors"):
        load_model(ckpt, device="cpu")


def test_a_base_with_pickled_weights_only_is_refused(ckpt, monkeypatch):
    """As a checkpoint's base and as the base of a fresh assessor; transformers never gets to read it."""
    base = ckpt / "base"
    torch.save(load_file(base / "model.safetensors"), base / "pytorch_model.bin")
    (base / "model.safetensors").unlink()
    import transformers

    monkeypatch.setattr(transformers.Qwen2_5_VLForConditionalGeneration, "from_pretrained",
                        lambda *a, **k: pytest.fail("transformers was asked to load the base"))
    message = (r"its weights are pickle files \(pytorch_model\.bin\), which lmmeval does not load "
               r".*convert them to safetensors")
    with pytest.raises(ValueError, match=re.escape(str(base.resolve())) + ": " + message):
        load_model(ckpt, device="cpu")
    with pytest.raises(ValueError, match=message):
        Assessor.from_base(base, device="cpu")


# A folder asking for code beside it; the code would leave a marker file if it ever ran.
CUSTOM_CODE = [
    ("tokenizer_config.json", {"AutoTokenizer": ["evil.EvilTokenizer", None]}),  # transformers prompts for this one
    ("processor_config.json", {"AutoProcessor": "evil.EvilProcessor"}),
    ("base/config.json", {"AutoModel": "evil.EvilModel"}),
    ("base/tokenizer_config.json", {"AutoTokenizer": ["evil.EvilTokenizer", None]}),
]


def _ask_for_custom_code(ckpt: Path, name: str, auto_map: dict) -> Path:
    """Add ``auto_map`` to ``name`` (without the class names that would let transformers do without
    the code) and an ``evil.py`` beside it that writes a marker; returns the marker's path."""
    path = ckpt / name
    marker = ckpt.parent / "custom_code_ran"
    (path.parent / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                         "from transformers import Qwen2_5_VLProcessor as EvilProcessor\n"
                                         "from transformers import Qwen2Tokenizer as EvilTokenizer\n"
                                         "from transformers import Qwen2_5_VLForConditionalGeneration as EvilModel\n")
    data = json.loads(path.read_text())
    for key in ("tokenizer_class", "processor_class"):
        data.pop(key, None)
    path.write_text(json.dumps(data | {"auto_map": auto_map}))
    return marker


@pytest.mark.parametrize("name, auto_map", CUSTOM_CODE, ids=[n for n, _ in CUSTOM_CODE])
def test_a_folder_asking_for_custom_code_is_refused_without_a_prompt(ckpt, no_weights, monkeypatch, name, auto_map):
    marker = _ask_for_custom_code(ckpt, name, auto_map)
    monkeypatch.setattr("builtins.input", lambda *a: pytest.fail("a prompt was shown"))
    with pytest.raises(ValueError, match=re.escape(f"{ckpt / name}: asks for custom code (auto_map ")
                       + r".*\); lmmeval never runs code shipped with a model"):
        load_model(ckpt, device="cpu")
    assert not marker.exists()


@pytest.mark.slow
def test_custom_code_with_stdin_closed_is_one_line_exit_2(ckpt, tmp_path):
    """The command line as a user runs it, stdin closed: no "[y/N]" prompt, no code run, one line."""
    marker = _ask_for_custom_code(ckpt, "tokenizer_config.json", CUSTOM_CODE[0][1])
    cli = "import sys; from lmmeval.cli import main; sys.exit(main(sys.argv[1:]))"
    argv = ["score", str(PHOTO), "--out", str(tmp_path / "r.jsonl"), "--model", str(ckpt), "--device", "cpu", "-q"]
    run = subprocess.run([sys.executable, "-c", cli, *argv], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 2, run.stderr
    assert "[y/N]" not in run.stdout + run.stderr
    assert run.stderr == (f"lmmeval score: error: {ckpt / 'tokenizer_config.json'}: asks for custom code (auto_map "
                          '{"AutoTokenizer": ["evil.EvilTokenizer", null]}); lmmeval never runs code shipped with a '
                          "model: remove the auto_map entry, or use a folder saved by lmmeval or transformers\n")
    assert not marker.exists()


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
