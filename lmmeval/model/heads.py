"""The two heads LMME3DHF adds to Qwen2.5-VL (paper section 4.1, Fig. 7).

- ``RegressionHead``: an MLP from the LLM's last hidden states to the two MOS-scale
  scores (quality, authenticity): the state where each level word is predicted, and
  optionally also the mean state over the video tokens.
- ``SaliencyDecoder``: a U-Net style decoder fusing the vision encoder's patch
  features (restored to spatial order) with the LLM's hidden states at the video
  tokens, producing one distortion-saliency map per temporal group.

Both are small, plain ``nn.Module``s sized by their configs (``configuration.py``), saved as
safetensors next to the LoRA adapter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..labels import SCORE_RANGE
from .configuration import RegressionHeadConfig, SaliencyDecoderConfig


class RegressionHead(nn.Module):
    """(b, 2, d) last-token states of the quality and authenticity prompts -> (b, 2) scores on SCORE_RANGE.

    Each dimension's score is read from the hidden state at the end of its own
    prompt (where its level word is predicted), through one shared MLP with a
    per-dimension output, so the head sees what the language model decided. With
    ``video_mean`` the (b, d) mean state over the video tokens, normalised on its own,
    is concatenated to each prompt's state before the MLP.
    """

    def __init__(self, config: RegressionHeadConfig):
        super().__init__()
        self.config = config
        d = config.hidden_size
        # Own LayerNorm: a mean over hundreds of tokens is on another scale than one token's state.
        self.video_norm = nn.LayerNorm(d) if config.video_mean else None
        d_in = 2 * d if config.video_mean else d
        self.mlp = nn.Sequential(
            nn.LayerNorm(d_in),
            nn.Linear(d_in, config.inner_size),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.inner_size, 2),
        )

    def forward(self, last_states: torch.Tensor, video_mean: torch.Tensor | None = None) -> torch.Tensor:
        """last_states (b, 2, d); video_mean (b, d), required exactly when the config asks for it."""
        dtype = self.mlp[1].weight.dtype
        x = last_states.to(dtype)
        if self.video_norm is not None:
            if video_mean is None:
                raise ValueError("this regression head reads the video tokens' mean state (video_mean=True); pass it")
            v = self.video_norm(video_mean.to(dtype))  # (b, d)
            x = torch.cat([x, v[:, None, :].expand_as(x)], dim=-1)  # (b, 2, 2d)
        elif video_mean is not None:
            raise ValueError("this regression head reads the stem states only (video_mean=False)")
        out = self.mlp(x).float()  # (b, 2 prompts, 2 outputs)
        own = torch.diagonal(out, dim1=1, dim2=2)  # (b, 2): quality from the quality prompt, etc.
        lo, hi = SCORE_RANGE
        # A sigmoid keeps predictions on the MOS scale; its midpoint sits mid-scale.
        return lo + (hi - lo) * torch.sigmoid(own)


def restore_patch_grid(features: torch.Tensor, grid_thw: tuple[int, int, int], merge: int, window_index: torch.Tensor) -> torch.Tensor:
    """Undo Qwen2.5-VL's window permutation: (t*h*w, d) window-ordered patches -> (t, h, w, d).

    The processor lays patches out merge-unit by merge-unit (``merge x merge``
    patches, raster order inside the unit), units in raster order over
    (t, h/merge, w/merge). The vision tower then reorders whole units by
    ``window_index`` (transformers' ``get_vision_window_index``) so each attention
    window is contiguous, and its ``last_hidden_state`` stays in that order.
    """
    t, h, w = grid_thw
    unit = merge * merge
    d = features.shape[-1]
    units = features.reshape(-1, unit, d)  # (units, merge*merge, d) in window order
    units = units[torch.argsort(window_index)]  # raster order of units
    grid = units.reshape(t, h // merge, w // merge, merge, merge, d)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(t, h, w, d)


class SaliencyDecoder(nn.Module):
    """Vision patch features + LLM video-token states -> saliency logits per temporal group."""

    def __init__(self, config: SaliencyDecoderConfig):
        # Imported here: segmentation-models-pytorch pulls in timm and torchvision (seconds), which
        # nothing needs until a decoder is built.
        from segmentation_models_pytorch.base.modules import Conv2dReLU
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock

        super().__init__()
        self.config = config
        c = config
        # Visual branch: convs, then PixelShuffle doubles the patch grid's resolution; one branch for
        # the last vision block and one per earlier block of ``vision_depths``.
        def visual_branch():
            return nn.Sequential(
                Conv2dReLU(c.vision_dim, c.vision_channels, 3, padding=1, use_norm=False),
                nn.Conv2d(c.vision_channels, 4 * c.vision_channels, 1),
                nn.PixelShuffle(2),
            )

        self.vision = visual_branch()
        self.earlier_vision = nn.ModuleList([visual_branch() for _ in c.vision_depths])
        # Multimodal branch: an MLP per token, then 3D convs over (t, h, w).
        self.llm_mlp = nn.Sequential(nn.Linear(c.llm_dim, c.llm_channels), nn.GELU(), nn.Linear(c.llm_channels, c.llm_channels))
        self.llm_3d = nn.Sequential(
            nn.Conv3d(c.llm_channels, c.llm_channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv3d(c.llm_channels, c.llm_channels, 3, padding=1), nn.ReLU(inplace=True),
        )
        # Fusion: a U-Net decoder block upsamples the multimodal map onto the visual one (the skip).
        # With earlier blocks, their maps are stacked onto the last block's as one wider skip.
        skip_channels = c.vision_channels * (1 + len(c.vision_depths))
        self.fuse = UnetDecoderBlock(c.llm_channels, skip_channels, c.fused_channels, use_norm=False,
                                     interpolation_mode="bilinear")
        # Refinement: spatial convs, PixelShuffle again, final convs to one channel.
        self.refine = nn.Sequential(
            Conv2dReLU(c.fused_channels, c.fused_channels, 3, padding=1, use_norm=False),
            nn.Conv2d(c.fused_channels, 4 * c.refine_channels, 1),
            nn.PixelShuffle(2),
            Conv2dReLU(c.refine_channels, c.refine_channels, 3, padding=1, use_norm=False),
            nn.Conv2d(c.refine_channels, 1, 1),
        )

    def forward(self, vision_grid: torch.Tensor, llm_tokens: torch.Tensor, out_size: tuple[int, int],
                depth_grids: list[torch.Tensor] | None = None) -> torch.Tensor:
        """One sample.

        vision_grid: (t, h, w, vision_dim) the last vision block's patch features in spatial order.
        llm_tokens: (t * h/merge * w/merge, llm_dim) LLM states at the video tokens, raster order.
        depth_grids: the earlier blocks' patch features, as vision_grid, one per ``config.vision_depths``.
        Returns saliency logits (t, H_out, W_out); ``sigmoid`` gives maps in [0, 1].
        """
        t, h, w, _ = vision_grid.shape
        m = self.config.merge
        dtype = self.llm_mlp[0].weight.dtype
        depth_grids = depth_grids or []
        if len(depth_grids) != len(self.earlier_vision):
            raise ValueError(f"this decoder reads {len(self.earlier_vision)} earlier vision blocks "
                             f"({self.config.vision_depths}), got {len(depth_grids)} grids")
        vis = self.vision(vision_grid.to(dtype).permute(0, 3, 1, 2))  # (t, cv, 2h, 2w)
        if depth_grids:
            earlier = [branch(g.to(dtype).permute(0, 3, 1, 2)) for branch, g in zip(self.earlier_vision, depth_grids)]
            vis = torch.cat([vis, *earlier], dim=1)  # (t, cv * (1 + depths), 2h, 2w)
        mm = self.llm_mlp(llm_tokens.to(dtype))  # (t*h/m*w/m, cm)
        mm = mm.reshape(t, h // m, w // m, -1).permute(3, 0, 1, 2).unsqueeze(0)  # (1, cm, t, h/m, w/m)
        mm = self.llm_3d(mm).squeeze(0).permute(1, 0, 2, 3)  # (t, cm, h/m, w/m)
        fused = self.fuse(mm, vis.shape[-2], vis.shape[-1], skip_connection=vis)  # (t, cf, 2h, 2w)
        logits = self.refine(fused)  # (t, 1, 4h, 4w)
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False).squeeze(1)
