"""A differentiable reward for generator fine-tuning (reward feedback learning).

``Assessor.reward(frames)`` takes float videos in [0, 1] that carry gradients from
a generator, does Qwen2-VL's preprocessing in torch (resize, normalise, patchify;
no PIL, no uint8 round trip) and returns the regression head's score, so that
``(-reward).backward()`` pushes the generator towards faces the assessor rates higher.
The token layout (prompt, video placeholders) comes from the processor, exactly as
at inference; only the pixel values are replaced by their differentiable twins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..io.media import frame_size
from ..labels import DIMENSIONS
from ..model.processing import build_batch
from ..prompts import LEVEL_TASKS


def patchify(frames: torch.Tensor, mean, std, geometry) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1], H and W multiples of ``geometry.factor`` -> (patches, 3*temporal*patch*patch),
    in the order of transformers' Qwen2-VL video processor (merge units, then patches within them)."""
    patch, merge, temporal = geometry.patch_size, geometry.merge_size, geometry.temporal_patch_size
    t, c, h, w = frames.shape
    x = (frames - frames.new_tensor(mean)[:, None, None]) / frames.new_tensor(std)[:, None, None]
    gt, gh, gw = t // temporal, h // patch, w // patch
    x = x.reshape(gt, temporal, c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # (gt, gh/m, gw/m, m, m, c, temporal, patch, patch)
    return x.reshape(gt * gh * gw, c * temporal * patch * patch)


def reward(assessor, frames: torch.Tensor, dimension: str = "quality", as_loss: bool = False) -> torch.Tensor:
    """Scores (B,) on the MOS scale for float videos (B, T, 3, H, W) in [0, 1]; gradients flow to ``frames``.

    ``as_loss=True`` returns ``-scores.mean()``, ready for ``backward()``. The
    assessor is a fixed critic: its parameters get no gradients from this score
    (their ``requires_grad`` flags and train/eval mode are left as they were).
    """
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {DIMENSIONS}, got {dimension!r}")
    if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[2] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a float tensor (B, T, 3, H, W) in [0, 1], got {shape}")
    if not frames.is_floating_point():
        raise ValueError(f"frames must be floating point in [0, 1], got {frames.dtype}")
    sampling, geometry = assessor.config.sampling, assessor.parts.geometry
    processor = assessor.processor.video_processor
    model = assessor.model
    b, t, _, h, w = frames.shape
    if missing := -t % geometry.temporal_patch_size:  # fill the last temporal patch, as the processor does
        frames = torch.cat([frames] + [frames[:, -1:]] * missing, dim=1)
        t += missing
    nh, nw = frame_size(h, w, sampling, geometry)
    device = assessor.device
    resized = F.interpolate(frames.reshape(b * t, 3, h, w).to(device).float(), size=(nh, nw), mode="bilinear",
                            align_corners=False, antialias=True).clamp(0, 1).reshape(b, t, 3, nh, nw)
    pixels = torch.cat([patchify(v, processor.image_mean, processor.image_std, geometry) for v in resized])
    # The same vision inputs preprocess_videos gives, with frames sampling.fps apart.
    patch, temporal = geometry.patch_size, geometry.temporal_patch_size
    vision = {"pixel_values_videos": pixels,
              "video_grid_thw": torch.tensor([[t // temporal, nh // patch, nw // patch]] * b),
              "second_per_grid_ts": torch.full((b,), temporal / sampling.fps)}
    batch = build_batch(assessor.processor, None, LEVEL_TASKS, pixels=vision).to(device)
    # A fixed critic: no gradients for its parameters, no dropout. Both are restored afterwards;
    # the graph built here keeps its parameters as constants either way.
    modes, flags = [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    model.eval()
    try:
        with torch.enable_grad():
            scores = model(batch, with_saliency=False).scores[:, DIMENSIONS.index(dimension)]  # (B,)
    finally:
        for param, flag in zip(model.parameters(), flags):
            param.requires_grad_(flag)
        for module, mode in zip(model.modules(), modes):
            module.training = mode
    return -scores.mean() if as_loss else scores
