"""The assessor model on the tiny preset: shapes, ranges, window order, save/load, PEFT round trip."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lmmeval.inference.assessor import Assessor
from lmmeval.model import factory
from lmmeval.model.configuration import LoraSettings
from lmmeval.labels import DISTORTIONS, LEVELS
from lmmeval.model.heads import restore_patch_grid
from lmmeval.model.processing import build_batch, level_token_ids
from lmmeval.prompts import LEVEL_TASKS


@pytest.fixture(scope="module")
def video_path(synthetic_raw):
    return sorted((synthetic_raw / "videos").glob("*.mp4"))[0]


def _visual(assessor, item):
    """``item`` sampled and resized as ``assessor`` reads it."""
    from lmmeval.io.media import load_visual

    return load_visual(item, assessor.config.sampling, assessor.parts.geometry)


def _image(h=90, w=120, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_outputs_for_image_video_and_mixed_batch(tiny_assessor, video_path):
    results = tiny_assessor.assess([str(video_path), _image(), np.zeros((5, 60, 80, 3), np.uint8)], batch_size=3)
    video, image, array = results
    assert video.saliency.shape == (4, 112, 112)  # 2 s at 2 fps: 4 frames, at the video's own size
    assert image.saliency.shape == (90, 120)
    assert array.saliency.shape[0] == 4 and array.saliency.shape[1:] == (60, 80)
    for r in results:
        assert r.ok and 0 <= r.quality <= 100 and 0 <= r.authenticity <= 100
        assert r.quality_level in LEVELS and r.authenticity_level in LEVELS
        for dim in LEVEL_TASKS:
            probs = r.level_probs[dim]
            assert list(probs) == list(LEVELS) and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
            assert max(probs, key=probs.get) == getattr(r, f"{dim}_level")
            assert 1 <= r.expected_level[dim] <= 5
        assert r.saliency.dtype == np.float32 and 0 <= r.saliency.min() and r.saliency.max() <= 1
        assert r.distortions and set(r.distortions) <= set(DISTORTIONS)


def test_batching_does_not_change_results(tiny_assessor, video_path):
    alone = tiny_assessor.assess(str(video_path))
    batched = tiny_assessor.assess([_image(), str(video_path)], batch_size=2)[1]
    assert alone.quality == pytest.approx(batched.quality, abs=1e-3)
    np.testing.assert_allclose(alone.saliency, batched.saliency, atol=1e-4)


def test_shared_vision_features_equal_a_plain_forward(tiny_assessor, video_path):
    """The vision tower runs once per sample and its tokens are reused by each question;
    the LLM states must equal those of transformers' own forward with the video in every sequence."""
    model = tiny_assessor.model
    batch = build_batch(tiny_assessor.processor, [_visual(tiny_assessor, str(video_path))], LEVEL_TASKS)
    with torch.no_grad():
        ours = model(batch, with_saliency=False).level_logits
        pix = torch.cat([batch.pixel_values_videos] * 2)
        plain = model.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               mm_token_type_ids=batch.mm_token_type_ids, pixel_values_videos=pix,
                               video_grid_thw=batch.video_grid_thw.repeat(2, 1)).logits[:, -1, model.level_ids]
    torch.testing.assert_close(ours[0], plain, atol=1e-4, rtol=1e-4)


def test_window_permutation_is_undone():
    """Feed transformers' own window permutation a feature map whose values encode
    their (t, y, x) position; restoring must give back the map exactly."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel
    from transformers.vision_utils import get_vision_window_index

    t, h, w, merge = 2, 16, 20, 2  # 8x10 merge units: several 112-px windows, with padding
    grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"), -1).float()
    # The processor's patch order: merge units in raster order, patches raster within a unit.
    seq = grid.reshape(t, h // merge, merge, w // merge, merge, 3).permute(0, 1, 3, 2, 4, 5).reshape(-1, 3)
    index, _ = get_vision_window_index(torch.tensor([[t, h, w]]), spatial_merge_size=merge, window_size=112, patch_size=14)
    assert not torch.equal(index, torch.arange(len(index)))  # the permutation is not trivial here

    class Stub:  # the vision tower's own permutation method, on our sequence
        spatial_merge_unit = merge * merge

    permuted = Qwen2_5_VisionTransformerPretrainedModel.permute_input_for_window_attn(Stub(), seq, index, len(seq))
    restored = restore_patch_grid(permuted, (t, h, w), merge, index)
    torch.testing.assert_close(restored, grid)


def test_level_words_start_with_distinct_tokens(tiny_assessor):
    ids = level_token_ids(tiny_assessor.processor.tokenizer)
    assert len(set(ids)) == 5

    class Splitter:  # a tokenizer that splits every level word after its first letters
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [7, ord(text[2])]}

        def convert_ids_to_tokens(self, i):
            return str(i)

    with pytest.raises(ValueError, match="distinct tokens"):
        level_token_ids(Splitter())


def test_save_load_identical_and_peft_round_trip(tiny_base, tmp_path, video_path):
    from peft import PeftModel
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from lmmeval.model.configuration import SamplingConfig

    a = Assessor.from_base(tiny_base, device="cpu", sampling=SamplingConfig(max_pixels=112 * 112, max_frames=8))
    factory.add_lora(a.parts, LoraSettings())
    with torch.no_grad():  # make the adapter non-trivial, so the round trip has something to carry
        for name, p in a.parts.peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ckpt = a.save_pretrained(tmp_path / "ckpt")
    config = json.loads((ckpt / "config.json").read_text())
    assert config["sampling"]["max_pixels"] == 112 * 112  # sampling travels with the checkpoint
    b = Assessor.from_pretrained(ckpt, device="cpu")
    ra, rb = a.assess(str(video_path)), b.assess(str(video_path))
    assert ra.quality == pytest.approx(rb.quality, abs=1e-5)
    assert ra.level_probs == rb.level_probs and ra.distortions == rb.distortions
    np.testing.assert_array_equal(ra.saliency, rb.saliency)

    # Plain transformers + peft read the same folder (docs/api.md: "Loading without lmmeval").
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_base)
    plain = PeftModel.from_pretrained(base, ckpt)
    AutoProcessor.from_pretrained(ckpt)
    ours = dict(a.parts.peft_model.named_parameters())
    for name, p in plain.named_parameters():
        if "lora_B" in name:
            torch.testing.assert_close(p, ours[name])


def test_bad_inputs_are_named(tiny_assessor, tmp_path):
    with pytest.raises(ValueError, match="no such video file"):
        tiny_assessor.assess(str(tmp_path / "missing.mp4"))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) or \(T, H, W, 3\)"):
        tiny_assessor.assess(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tiny_assessor.assess(np.full((8, 8, 3), 2.0))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    r = tiny_assessor.assess([str(text)], on_error="return")[0]
    assert not r.ok and "notes.mp4" in r.error and "cannot decode" in r.error


def test_checkpoint_config_is_validated(tiny_assessor, tmp_path):
    ckpt = tiny_assessor.save_pretrained(tmp_path / "ck")
    config = json.loads((ckpt / "config.json").read_text())
    config["sampling"]["fps_typo"] = 3
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json.sampling: unknown key\(s\) \['fps_typo'\]"):
        Assessor.from_pretrained(ckpt, device="cpu")
    del config["sampling"]["fps_typo"]
    config["saliency"]["vision_channels"] = 48
    (ckpt / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="saliency weights do not match"):
        Assessor.from_pretrained(ckpt, device="cpu")


def test_embedded_demo_checkpoint(capsys, video_path):
    from lmmeval.model.factory import DEMO_CHECKPOINT

    size = sum(f.stat().st_size for f in DEMO_CHECKPOINT.rglob("*") if f.is_file())
    assert size <= 20 * 2**20, f"demo checkpoint is {size / 2**20:.1f} MiB"
    a = Assessor.from_pretrained(device="cpu")
    assert "demo checkpoint" in capsys.readouterr().err  # the one-line notice
    assert a.config.trained_stages == [1, 2, 3]
    r = a.assess(str(video_path))
    assert r.ok and 0 <= r.quality <= 100 and r.saliency.shape[1:] == (112, 112)


def test_fallback_without_shared_encoder_outputs_gives_the_same_result(tiny_assessor, video_path, monkeypatch):
    """Older transformers (no ``mm_encoder_outputs``): the vision tower runs per sequence and
    generate encodes the pixels itself; same numbers and answers."""
    import lmmeval.inference.assessor as assessor
    import lmmeval.model.modeling as modeling

    shared = tiny_assessor.assess(str(video_path))
    for module in (modeling, assessor):
        monkeypatch.setattr(module, "takes_encoder_outputs", lambda model: False)
    fallback = tiny_assessor.assess(str(video_path))
    assert fallback.distortions == shared.distortions
    assert fallback.quality == pytest.approx(shared.quality, abs=1e-4)
    assert fallback.level_probs["quality"] == pytest.approx(shared.level_probs["quality"], abs=1e-5)
    np.testing.assert_allclose(fallback.saliency, shared.saliency, atol=1e-5)


def test_worker_processes_give_the_same_results(tiny_assessor, synthetic_raw, tmp_path):
    videos = [str(p) for p in sorted((synthetic_raw / "videos").glob("*.mp4"))[:5]] + [str(tmp_path / "gone.mp4")]
    inline = tiny_assessor.assess(videos, batch_size=2, on_error="return")
    workers = tiny_assessor.assess(videos, batch_size=2, on_error="return", workers=2)
    assert [r.error is None for r in workers] == [True] * 5 + [False] and "gone.mp4" in workers[-1].error
    for a, b in zip(inline[:5], workers[:5]):
        assert a.quality == pytest.approx(b.quality, abs=1e-5) and a.frame_indices == b.frame_indices


def test_random_preset_base_round_trips(tmp_path, video_path):
    """A random-weight preset base (for benchmarks) is rebuilt identically on load."""
    from lmmeval.model.configuration import SamplingConfig

    a = Assessor.from_base("preset:tiny", device="cpu", sampling=SamplingConfig(max_pixels=112 * 112))
    assert a.config.base == "preset:tiny"
    b = Assessor.from_pretrained(a.save_pretrained(tmp_path / "ck"), device="cpu")
    assert a.assess(str(video_path)).quality == pytest.approx(b.assess(str(video_path)).quality, abs=1e-5)


def test_build_batch_matches_the_processor(tiny_assessor, video_path):
    """Pixels are processed once per video and the video tokens expanded by hand: the result
    must equal transformers' processor given the video once per sequence."""
    from lmmeval.prompts import TASKS, question_prompt

    proc = tiny_assessor.processor
    visuals = [_visual(tiny_assessor, str(video_path)), _visual(tiny_assessor, _image())]
    ours = build_batch(proc, visuals, TASKS)
    texts = [question_prompt(proc, t) for _ in visuals for t in TASKS]
    videos = [torch.from_numpy(v.frames).permute(0, 3, 1, 2) for v in visuals for _ in TASKS]
    meta = [{"fps": v.fps, "total_num_frames": len(v.frames)} for v in visuals for _ in TASKS]
    proc.tokenizer.padding_side = "left"
    ref = proc(text=texts, videos=videos, video_metadata=meta, do_sample_frames=False, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        torch.testing.assert_close(getattr(ours, key), ref[key])
    k = len(TASKS)
    torch.testing.assert_close(ours.video_grid_thw, ref["video_grid_thw"][::k])
    torch.testing.assert_close(ours.second_per_grid_ts.float(), torch.as_tensor(ref["second_per_grid_ts"])[::k].float())
    per_seq = torch.split(ref["pixel_values_videos"], ref["video_grid_thw"].prod(-1).tolist())
    torch.testing.assert_close(ours.pixel_values_videos, torch.cat(per_seq[::k]))


@pytest.mark.slow
def test_compiled_blocks_give_the_same_results(tiny_base, video_path):
    """Regional torch.compile traces every vision block and decoder layer (dynamo + AOT
    autograd; the kernel-generating backend only changes the code that runs them)."""
    from lmmeval.model.configuration import SamplingConfig

    sampling = SamplingConfig(max_pixels=112 * 112, max_frames=8)
    assessor = Assessor.from_base(tiny_base, device="cpu", sampling=sampling)
    before = assessor.assess(video_path)
    from torch._dynamo.testing import CompileCounterWithBackend

    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    assessor.compile(backend=counter)
    core = assessor.model.backbone.model
    assert all(getattr(b, "_compiled_call_impl", None) is not None
               for b in [*core.visual.blocks, *core.language_model.layers])
    after = assessor.assess(video_path)
    assert counter.frame_count > 0  # compiled graphs ran
    assert after.quality == pytest.approx(before.quality, abs=1e-4)
    for dim in ("quality", "authenticity"):
        for level in LEVELS:
            assert after.level_probs[dim][level] == pytest.approx(before.level_probs[dim][level], abs=1e-5)
    np.testing.assert_allclose(after.saliency, before.saliency, atol=1e-5)


def test_answers_are_generated_on_the_forward_pass_vision_features(synthetic_raw, monkeypatch):
    """The distortion answer and the description reuse the forward pass's vision tokens:
    the same text as encoding the pixels again, and no second vision-tower run."""
    from lmmeval.model.processing import preprocess_videos

    a = Assessor.from_pretrained(device="cpu")  # the demo checkpoint: its answers name categories
    a.model.eval()
    videos = sorted((synthetic_raw / "videos").glob("*.mp4"))[:4]
    visuals = [_visual(a, str(p)) for p in videos]
    pixels = preprocess_videos(a.processor, visuals)
    with torch.inference_mode():
        features = a.model(build_batch(a.processor, visuals, LEVEL_TASKS, pixels=pixels), with_saliency=False).video_features
        visual = a.model.backbone.model.visual
        calls = []
        handle = visual.register_forward_hook(lambda *args: calls.append(1))
        reused = {task: a._generate(visuals, task, pixels, features) for task in ("distortions", "describe")}
        assert calls == []
        fresh = {task: a._generate(visuals, task) for task in ("distortions", "describe")}
        assert len(calls) == 2
        handle.remove()
    assert reused == fresh
    from lmmeval.prompts import DISTORTION_ANSWER_STEM, parse_distortion_answer

    assert all(t.startswith(DISTORTION_ANSWER_STEM) and parse_distortion_answer(t) for t in reused["distortions"])


def test_from_pretrained_reads_only_the_checkpoint_processor(monkeypatch):
    """The checkpoint carries its processor; the base's would be read and thrown away."""
    from transformers import AutoProcessor

    calls, original = [], AutoProcessor.from_pretrained
    monkeypatch.setattr(AutoProcessor, "from_pretrained", lambda path, *a, **k: calls.append(str(path)) or original(path, *a, **k))
    from lmmeval.model.factory import DEMO_CHECKPOINT

    Assessor.from_pretrained(device="cpu")  # the demo checkpoint, with its base inside
    assert calls == [str(DEMO_CHECKPOINT)]


def test_video_token_mean_averages_exactly_the_video_positions():
    from lmmeval.model.modeling import video_token_mean

    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(3, 7, 4)).astype(np.float32)
    video = 9
    ids = np.array([[0, 0, 9, 9, 9, 5, 6],   # left padding, then three video tokens
                    [1, 9, 2, 9, 3, 9, 9],   # scattered
                    [9, 4, 4, 4, 4, 4, 4]])  # one
    expected = np.stack([hidden[0, 2:5].mean(0), hidden[1, [1, 3, 5, 6]].mean(0), hidden[2, 0]])
    got = video_token_mean(torch.from_numpy(hidden), torch.from_numpy(ids), video)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="no video tokens"):
        video_token_mean(torch.from_numpy(hidden), torch.zeros(3, 7, dtype=torch.long), video)


def test_regression_head_reads_the_video_mean_only_when_configured():
    from lmmeval.model.configuration import RegressionHeadConfig
    from lmmeval.model.heads import RegressionHead

    torch.manual_seed(0)
    states, v1, v2 = torch.randn(2, 2, 16), torch.randn(2, 16), torch.randn(2, 16)
    head = RegressionHead(RegressionHeadConfig(hidden_size=16, video_mean=True)).eval()
    assert not torch.allclose(head(states, v1), head(states, v2))  # the video mean is an input
    torch.testing.assert_close(head(states, v1), head(states, v1.clone()))
    with pytest.raises(ValueError, match="pass it"):
        head(states)
    plain = RegressionHead(RegressionHeadConfig(hidden_size=16)).eval()
    assert plain.video_norm is None and plain.mlp[0].normalized_shape == (16,)  # the paper's head, unchanged
    with pytest.raises(ValueError, match="stem states only"):
        plain(states, v1)


def test_video_mean_head_gets_the_video_token_states_and_round_trips(tiny_base, tmp_path, video_path):
    """The mean the head receives is the mean of the video-token states the saliency decoder gets
    (picked by a separate path), and a checkpoint with such a head loads and scores the same."""
    from lmmeval.model.configuration import SamplingConfig

    a = Assessor.from_base(tiny_base, device="cpu", sampling=SamplingConfig(max_pixels=112 * 112, max_frames=8))
    factory.replace_regression_head(a.parts, video_mean=True, seed=1)
    assert a.config.regression.video_mean
    seen = []
    hook = a.model.regression.register_forward_hook(lambda m, args, out: seen.append(args[1]))
    visuals = [_visual(a, str(video_path)), _visual(a, _image())]
    with torch.no_grad():
        out = a.model(build_batch(a.processor, visuals, LEVEL_TASKS))
    hook.remove()
    expected = torch.stack([s.mean(0) for s in out.video_states])
    torch.testing.assert_close(seen[0], expected, atol=1e-5, rtol=1e-5)

    ckpt = a.save_pretrained(tmp_path / "vm")
    assert json.loads((ckpt / "config.json").read_text())["regression"]["video_mean"] is True
    b = Assessor.from_pretrained(ckpt, device="cpu")
    assert a.assess(str(video_path)).quality == pytest.approx(b.assess(str(video_path)).quality, abs=1e-5)


def test_vision_depths_at_picks_the_blocks_at_those_fractions():
    from lmmeval.model.configuration import SaliencyDecoderConfig

    assert SaliencyDecoderConfig.vision_depths_at([0.25, 0.5, 0.75], 32) == [7, 15, 23]  # the 7B tower
    assert SaliencyDecoderConfig.vision_depths_at([0.25, 0.5, 0.75], 4) == [0, 1, 2]  # the tiny one
    with pytest.raises(ValueError, match="vision_depths"):
        SaliencyDecoderConfig(vision_dim=8, llm_dim=8, vision_depths=[1, 1])


@pytest.mark.parametrize("vision_dim,llm_dim,depths", [(64, 128, [0, 1, 2]), (1280, 3584, [7, 15, 23])],
                         ids=["tiny", "7b"])
def test_multi_depth_decoder_shapes(vision_dim, llm_dim, depths):
    """At the tiny and the 7B widths: one visual branch per earlier block, their maps stacked into the
    fusion's skip, one saliency map per temporal group at the asked size; the wrong number of grids
    is refused."""
    from lmmeval.model.configuration import SaliencyDecoderConfig
    from lmmeval.model.heads import SaliencyDecoder

    config = SaliencyDecoderConfig.scaled_to(vision_dim, llm_dim, 2)
    config.vision_depths = depths
    decoder = SaliencyDecoder(config)
    assert len(decoder.earlier_vision) == 3
    assert decoder.fuse.conv1[0].in_channels == config.llm_channels + 4 * config.vision_channels
    t, h, w = 2, 6, 8  # patches
    grid = lambda: torch.randn(t, h, w, vision_dim)  # noqa: E731
    tokens = torch.randn(t * (h // 2) * (w // 2), llm_dim)
    with torch.no_grad():
        maps = decoder(grid(), tokens, (84, 112), [grid() for _ in depths])
    assert maps.shape == (t, 84, 112) and torch.isfinite(maps).all()
    with pytest.raises(ValueError, match="reads 3 earlier vision blocks"):
        decoder(grid(), tokens, (84, 112))


def test_earlier_blocks_are_captured_in_the_same_window_order_as_the_last(tiny_base, video_path):
    """The hook that captures an earlier block's output, asked for the last block, returns exactly the
    tower's last_hidden_state (the order restore_patch_grid undoes); the hooks are gone afterwards; and
    a model whose decoder reads blocks 0-2 gives maps of the usual shape, its scores unchanged."""
    from lmmeval.model.configuration import SamplingConfig

    a = Assessor.from_base(tiny_base, device="cpu", sampling=SamplingConfig(max_pixels=112 * 112, max_frames=8))
    visual = a.model.backbone.model.visual
    batch = build_batch(a.processor, [_visual(a, str(video_path)), _visual(a, _image())], LEVEL_TASKS)
    last = len(visual.blocks) - 1
    with torch.no_grad():
        _, patches, (captured,) = a.model.encode_videos(batch, [last])
    for p, c in zip(patches, captured):
        torch.testing.assert_close(c, p)
    assert not any(block._forward_hooks for block in visual.blocks)

    before = a.assess(str(video_path))
    factory.replace_saliency_decoder(a.parts, [0, 1, 2], seed=0)
    after = a.assess(str(video_path))
    assert after.saliency.shape == before.saliency.shape and after.quality == pytest.approx(before.quality, abs=1e-5)
    with pytest.raises(ValueError, match="4 blocks"):
        factory.replace_saliency_decoder(a.parts, [3])
