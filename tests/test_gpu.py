"""GPU-only checks at real 7B shape (random weights, bf16); skipped without CUDA."""

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_7b_shape_assesses_a_video_in_bf16():
    from lmmeval.experiments.bench import build_assessor

    assessor = build_assessor("7b", torch.device("cuda"), max_pixels=448 * 448, max_frames=16)
    video = np.random.default_rng(0).integers(0, 255, (16, 512, 512, 3), dtype=np.uint8)
    r = assessor.assess(video)
    assert r.ok and 0 <= r.quality <= 100 and r.saliency.shape == (16, 512, 512)
    assert next(assessor.model.backbone.parameters()).dtype == torch.bfloat16
