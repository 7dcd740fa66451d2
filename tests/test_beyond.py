"""Beyond the paper: differentiable reward, refinement masks, pairwise ranking loss, uncertainty."""

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from lmmeval.inference.assessor import Assessment, Assessor
from lmmeval.cli import main
from lmmeval.labels import LEVELS
from lmmeval.io.media import read_video
from lmmeval.inference.reward import patchify
from lmmeval.training.losses import pairwise_loss


@pytest.fixture(scope="module")
def demo():
    return Assessor.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def blurred_video(synthetic_raw):
    frames, _ = read_video(sorted((synthetic_raw / "videos").glob("*.mp4"))[0], list(range(0, 16, 2)))  # (8, 112, 112, 3)
    blurred = gaussian_filter(frames.astype(np.float32) / 255, sigma=(0, 2.0, 2.0, 0))
    return torch.from_numpy(blurred).permute(0, 3, 1, 2)[None].contiguous()  # (1, 8, 3, 112, 112)


def test_patchify_matches_the_processor(demo, blurred_video):
    """The differentiable preprocessing reproduces transformers' Qwen2-VL video processor."""
    frames = blurred_video[0]
    uint8 = (frames * 255).round().byte()
    ref = demo.processor.video_processor(videos=[uint8], do_sample_frames=False, return_tensors="pt")
    vp = demo.processor.video_processor
    ours = patchify(uint8.float() / 255, vp.image_mean, vp.image_std, demo.parts.geometry)
    torch.testing.assert_close(ours, ref["pixel_values_videos"], atol=1e-5, rtol=1e-5)


def test_reward_gradient_and_ascent(demo, blurred_video):
    video = blurred_video.clone().requires_grad_(True)
    start = demo.reward(video)
    assert start.shape == (1,) and 0 <= float(start) <= 100
    loss = demo.reward(video, as_loss=True)
    assert float(loss) == pytest.approx(-float(start), abs=1e-4)
    loss.backward()
    assert torch.isfinite(video.grad).all() and video.grad.abs().sum() > 0
    # A few steps of gradient ascent on the pixels raise the predicted quality.
    opt = torch.optim.Adam([video], lr=0.01)
    for _ in range(5):
        opt.zero_grad()
        demo.reward(video, as_loss=True).backward()
        opt.step()
        with torch.no_grad():
            video.clamp_(0, 1)
    assert float(demo.reward(video)) > float(start) + 0.1
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        demo.reward(torch.zeros(8, 3, 32, 32))


def test_reward_equals_the_inference_score_and_leaves_the_critic_as_it_was(demo, blurred_video):
    """Same pixels through `assess` (processor path) and `reward` (torch path): same score. The
    critic's parameters get no gradient and keep their requires_grad flags and mode."""
    uint8 = (blurred_video[0] * 255).round().byte()  # (8, 3, 112, 112)
    expected = demo.assess(uint8.permute(0, 2, 3, 1).numpy(), saliency=False).quality
    head = demo.model.regression
    before = head.training, [p.requires_grad for p in head.parameters()]
    head.train()
    head.requires_grad_(True)
    try:
        video = (uint8.float() / 255)[None].requires_grad_(True)
        score = demo.reward(video)
        assert float(score) == pytest.approx(expected, abs=1e-3)
        score.sum().backward()
        assert video.grad is not None and all(p.grad is None for p in head.parameters())
        assert head.training and all(p.requires_grad for p in head.parameters())
    finally:  # the demo assessor is shared by the module's tests: put it back even when this one fails
        head.train(before[0])
        for p, flag in zip(head.parameters(), before[1]):
            p.requires_grad_(flag)


def test_refine_mask_threshold_dilation_strength():
    saliency = np.zeros((9, 9), np.float32)
    saliency[4, 4] = 0.9
    saliency[0, 0] = 0.3  # below the threshold
    r = Assessment(source="x", quality=70.0, saliency=saliency)
    m = r.refine_mask(threshold=0.5, dilate=1)
    expected = np.zeros((9, 9), bool)
    expected[4, 3:6] = expected[3:6, 4] = True  # the marked pixel and its 4 neighbours
    np.testing.assert_array_equal(m.mask, expected)
    assert m.strength == pytest.approx(0.3)
    assert r.refine_mask(threshold=0.2, dilate=0).mask.sum() == 2
    video = Assessment(source="v", quality=20.0, saliency=np.stack([saliency, saliency * 0]))
    vm = video.refine_mask(0.5, 1)
    assert vm.mask.shape == (2, 9, 9) and vm.mask[0].sum() == 5 and vm.mask[1].sum() == 0 and vm.strength == 0.8


def test_uncertainty_of_known_distributions():
    uniform = Assessment(source="u", level_probs={"quality": {lvl: 0.2 for lvl in LEVELS}})
    assert uniform.uncertainty["quality"]["entropy"] == pytest.approx(np.log(5))
    assert uniform.uncertainty["quality"]["std"] == pytest.approx(np.sqrt(2))  # variance of 1..5 uniform
    sure = Assessment(source="s", level_probs={"quality": {lvl: float(lvl == "good") for lvl in LEVELS}})
    assert sure.uncertainty["quality"]["entropy"] == pytest.approx(0, abs=1e-9)
    assert sure.uncertainty["quality"]["std"] == pytest.approx(0)


def test_pairwise_loss_hand_worked():
    scores = torch.tensor([[60.0, 30.0], [40.0, 50.0]])
    mos = torch.tensor([[70.0, 20.0], [50.0, 20.0]])
    # quality: video 0 beats 1, scores differ by +20 -> softplus(-2); authenticity: tie in MOS -> no pair
    assert float(pairwise_loss(scores, mos, 10.0)) == pytest.approx(np.log1p(np.exp(-2.0)), abs=1e-6)
    assert float(pairwise_loss(scores, torch.zeros(2, 2), 10.0)) == 0.0


def test_score_cli_masks_and_confidence(synthetic_raw, tmp_path):
    video = sorted((synthetic_raw / "videos").glob("*.mp4"))[0]
    out = tmp_path / "r.jsonl"
    assert main(["score", str(video), "--out", str(out), "--masks", str(tmp_path / "masks"), "--mask-threshold", "0.0",
                 "--low-confidence", "0.0", "-q"]) == 0
    row = json.loads(out.read_text())
    assert row["low_confidence"] is True and 0 <= row["refine_strength"] <= 1
    pngs = sorted((tmp_path / "masks").rglob("*.png"))
    assert len(pngs) == 8 and row["mask"].endswith(".mask")  # one mask per sampled frame


def test_score_rejects_bad_mask_options_before_touching_the_output(synthetic_raw, tmp_path):
    """An out-of-range --mask-threshold is one error up front: the old results file stays as it was."""
    from lmmeval.inference.assessor import Assessor
    from lmmeval.inference.scoring import score_files

    video = sorted((synthetic_raw / "videos").glob("*.mp4"))[0]
    out = tmp_path / "r.jsonl"
    out.write_text('{"id": "earlier"}\n')
    with pytest.raises(ValueError, match="mask threshold must be in"):
        score_files(Assessor.__new__(Assessor), [video], out, masks_dir=tmp_path / "m", mask_threshold=1.5, progress=False)
    assert out.read_text() == '{"id": "earlier"}\n'
