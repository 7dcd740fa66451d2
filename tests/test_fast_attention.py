"""The batched vision-attention path equals transformers' window-by-window implementation."""

import numpy as np
import pytest
import torch

from lmmeval.io.media import load_visual
from lmmeval.model.configuration import SamplingConfig
from lmmeval.model.fast_attention import disable_batched_vision_attention, enable_batched_vision_attention
from lmmeval.model.processing import build_batch
from lmmeval.prompts import LEVEL_TASKS


def test_batched_windows_match_transformers(tiny_assessor):
    # 224 x 224 frames: 16 x 16 patches -> four 112-px windows; 168 x 112 frames: partial windows at the edge;
    # two videos of different sizes in one call exercise unequal window lengths.
    rng = np.random.default_rng(0)
    sampling = SamplingConfig(max_pixels=224 * 224, max_frames=4)
    geometry = tiny_assessor.parts.geometry
    visuals = [load_visual(rng.integers(0, 255, (4, 224, 224, 3), dtype=np.uint8), sampling, geometry),
               load_visual(rng.integers(0, 255, (4, 168, 112, 3), dtype=np.uint8), sampling, geometry)]
    batch = build_batch(tiny_assessor.processor, visuals, LEVEL_TASKS)
    backbone = tiny_assessor.model.backbone
    visual = backbone.model.visual
    with torch.no_grad():
        ref = visual(batch.pixel_values_videos, grid_thw=batch.video_grid_thw)
        try:
            assert enable_batched_vision_attention(backbone) == len(visual.blocks)
            assert all(b.attn.forward.__func__.__name__ == "batched_vision_attention" for b in visual.blocks)
            fast = visual(batch.pixel_values_videos, grid_thw=batch.video_grid_thw)
            scores_fast = tiny_assessor.model(batch, with_saliency=False).level_logits
        finally:
            disable_batched_vision_attention(backbone)
        scores_ref = tiny_assessor.model(batch, with_saliency=False).level_logits
    err = (fast.last_hidden_state - ref.last_hidden_state).abs().max().item()
    print(f"max abs error, fp32 patch features: {err:.2e}")
    torch.testing.assert_close(fast.last_hidden_state, ref.last_hidden_state, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.pooler_output, ref.pooler_output, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scores_fast, scores_ref, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batched_windows_match_in_bf16_on_gpu(tiny_base):
    from lmmeval.inference.assessor import Assessor

    a = Assessor.from_base(tiny_base, device="cuda")
    a.model.backbone.to(torch.bfloat16)
    rng = np.random.default_rng(0)
    visuals = [load_visual(rng.integers(0, 255, (8, 448, 448, 3), dtype=np.uint8), SamplingConfig(max_pixels=50176),
                           a.parts.geometry)]
    batch = build_batch(a.processor, visuals, LEVEL_TASKS).to("cuda")
    visual = a.model.backbone.model.visual
    with torch.no_grad():
        ref = visual(batch.pixel_values_videos.bfloat16(), grid_thw=batch.video_grid_thw).last_hidden_state
        enable_batched_vision_attention(a.model.backbone)
        fast = visual(batch.pixel_values_videos.bfloat16(), grid_thw=batch.video_grid_thw).last_hidden_state
    torch.testing.assert_close(fast.float(), ref.float(), atol=5e-2, rtol=5e-2)
