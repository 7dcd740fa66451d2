"""GPU-only checks at real 7B shape (random weights, bf16); skipped without CUDA."""

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_7b_shape_assesses_a_video_in_bf16():
    from research.bench import build_assessor

    assessor = build_assessor("7b", torch.device("cuda"), max_pixels=448 * 448, max_frames=16)
    video = np.random.default_rng(0).integers(0, 255, (16, 512, 512, 3), dtype=np.uint8)
    r = assessor.assess(video)
    assert r.ok and 0 <= r.quality <= 100 and r.saliency.shape == (16, 512, 512)
    assert next(assessor.model.backbone.parameters()).dtype == torch.bfloat16


def test_flash_attention_path_agrees_with_sdpa(tiny_base):
    """With flash-attn installed and asked for, the vision tower keeps flash-attention's own varlen
    kernel (the batched-window path is off) and the scores agree with sdpa's batched windows."""
    pytest.importorskip("flash_attn")
    from lmmeval.inference.assessor import Assessor
    from lmmeval.model.configuration import SamplingConfig

    sampling = SamplingConfig(max_pixels=448 * 448, max_frames=8)
    video = np.random.default_rng(0).integers(0, 255, (8, 448, 448, 3), dtype=np.uint8)
    flash = Assessor.from_base(tiny_base, device="cuda", sampling=sampling, attention="flash_attention_2")
    sdpa = Assessor.from_base(tiny_base, device="cuda", sampling=sampling)
    assert not flash.fast_vision and sdpa.fast_vision
    assert abs(flash.assess(video).quality - sdpa.assess(video).quality) < 0.5
