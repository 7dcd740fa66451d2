"""Stage 0 (vision-tower distillation): target geometry against a hand-worked case, and a short
run that writes a base whose tower, and only its tower, was trained."""

import pytest
import torch

from lmmeval.model.configuration import SamplingConfig
from lmmeval.data.manifest import load_manifest
from lmmeval.training.vision_pretrain import (VisionPretrainConfig, load_corpus, load_vision_pretrain_config,
                                                 pool_to_tokens, pretrain_vision)

SAMPLING = SamplingConfig(fps=4.0, max_frames=8, max_pixels=112 * 112)


def test_pool_to_tokens_matches_hand_worked_grid():
    """4 frames of a 1-channel 4x4 map onto a 2x2 token grid: each token is the mean of its 2x2
    block over the frame pair, rows in (t, h, w) order."""
    fmap = torch.arange(4 * 16, dtype=torch.float32).reshape(4, 1, 4, 4)  # frame f, pixel (i, j) = 16 f + 4 i + j
    tokens = pool_to_tokens(fmap, (2, 2), temporal=2)
    # block (0, 0) of frame f: mean of 16f + {0, 1, 4, 5} = 16 f + 2.5; pair (0, 1) -> 8 + 2.5.
    expected = []
    for pair in (0, 1):
        for i in (0, 1):
            for j in (0, 1):
                expected.append(16 * (2 * pair + 0.5) + 4 * 2 * i + 2 * j + 2.5)
    assert tokens.shape == (8, 1)
    assert tokens[:, 0].tolist() == expected


def test_pool_to_tokens_rejects_a_partial_temporal_patch():
    with pytest.raises(ValueError, match="whole temporal patches of 2 frames, got 3"):
        pool_to_tokens(torch.zeros(3, 8, 4, 4), (2, 2), temporal=2)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="student_epochs"):
        VisionPretrainConfig(student_epochs=0)
    with pytest.raises(ValueError, match="not both 0"):
        VisionPretrainConfig(distill_weight=0, label_weight=0)


def test_shipped_config_parses_and_opens_with_its_command(tmp_path):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "tiny" / "stage0_vision.yaml"
    config = load_vision_pretrain_config(path)
    assert config.teacher_epochs >= 1 and config.seed == 0  # stage 1's tiny base is seed 0 too
    assert "python train/stage0_vision.py" in "".join(path.read_text().splitlines()[:4])
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text() + "student_lr_typo: 1\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown key\(s\) \['student_lr_typo'\]"):
        load_vision_pretrain_config(bad)


@pytest.mark.slow
def test_pretrain_trains_the_tower_only_and_writes_a_loadable_base(prepared_manifest, tiny_base, tmp_path):
    from safetensors.torch import load_file

    from lmmeval.inference.assessor import Assessor

    records = load_manifest(prepared_manifest)
    corpus, held_out = records[:32], records[32:]
    config = VisionPretrainConfig(teacher_epochs=2, student_epochs=3, batch_size=8, teacher_frames=2)
    report = pretrain_vision(corpus, SAMPLING, tmp_path / "base", config, eval_records=held_out, progress=False)

    assert [h["epoch"] for h in report["student"]] == [1, 2, 3]
    assert report["student"][-1]["train_loss"] < report["student"][0]["train_loss"]  # the distillation trains
    assert all(0 <= h["exact_set_accuracy"] <= 1 for h in report["teacher"] + report["student"])

    # Same seed as the conftest base: every language-model tensor is identical, the tower's are not.
    before, after = load_file(tiny_base / "model.safetensors"), load_file(tmp_path / "base" / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".visual." in k or k.startswith("visual.") for k in changed)
    assert any("patch_embed" in k for k in changed) and any("merger" in k for k in changed)

    # Stage 1 loads it exactly as it loads any Qwen2.5-VL folder.
    assessor = Assessor.from_base(tmp_path / "base", device="cpu", sampling=SAMPLING)
    result = assessor.assess(str(held_out[0].video_path))
    assert 0 <= result.quality <= 100


def test_corpus_refuses_shared_videos_and_repeated_manifests(prepared_manifest, tmp_path):
    """Every corpus manifest is checked against the held-out study, not only the first: by the
    recorded render seed, else by file hashes (here the first is a re-encoded copy, different bytes,
    and the second is the study itself). A manifest named twice is refused too (it would count its
    videos twice). ``train/stage0_vision.py`` calls this before training anything."""
    import json
    import shutil
    from pathlib import Path

    copy = tmp_path / "copy"
    shutil.copytree(Path(prepared_manifest).parent, copy)
    for video in (copy / "videos").iterdir():
        video.write_bytes(video.read_bytes() + b"\0")  # other bytes, same names
    assert json.loads((copy / "summary.json").read_text())["synth"]["seed"] == 0  # prepare records the render seed
    corpus = [str(copy / "manifest.jsonl"), str(prepared_manifest)]
    # Same seed, different bytes (as a re-render can give): refused on the seed alone.
    with pytest.raises(ValueError, match="both rendered with `lmmeval synth --seed 0`"):
        load_corpus(corpus[:1], str(prepared_manifest))
    # A held-out study with no recorded seed (a real one, say): the file hashes decide. The copy's
    # bytes differ and pass; the study's own files are byte-identical to the held-out copy's.
    held_out = tmp_path / "held_out"
    shutil.copytree(Path(prepared_manifest).parent, held_out)
    (held_out / "summary.json").unlink()
    n = len(load_manifest(prepared_manifest))
    with pytest.raises(ValueError, match=f"shares {n} video\\(s\\) with {prepared_manifest} \\(byte-identical") as err:
        load_corpus(corpus, str(held_out / "manifest.jsonl"))
    assert str(copy) not in str(err.value).split("shares")[1]
    records, held = load_corpus(corpus[:1], str(held_out / "manifest.jsonl"))
    assert len(records) == n and len(held) == n
    (held_out / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match=f"{held_out / 'summary.json'}: not the JSON object"):
        load_corpus(corpus[:1], str(held_out / "manifest.jsonl"))
    with pytest.raises(ValueError, match=f"--manifest names {copy / 'manifest.jsonl'} more than once"):
        load_corpus([corpus[0], corpus[0]])
