"""A batched attention path for Qwen2.5-VL's vision tower.

With sdpa or eager attention, transformers runs the vision tower's windowed
attention one window at a time (a Python loop over ``cu_seqlens``): hundreds of
small kernel launches per layer for a 16-frame video. Here every window of a
layer goes through one ``scaled_dot_product_attention`` call: the tokens are
scattered into a padded (windows, max_window_len) layout, padded keys are masked
out, and the outputs are gathered back. The same code serves the full-attention
layers (one "window" per video). Numerically it is the same attention; the tests
compare it with transformers' implementation.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def batched_vision_attention(self, hidden_states: torch.Tensor, cu_seqlens: torch.Tensor,
                             position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
                             max_seqlen: int | None = None, **kwargs) -> torch.Tensor:
    """Drop-in ``forward`` for ``Qwen2_5_VLVisionAttention`` (bound per module by ``enable``)."""
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import apply_rotary_pos_emb_vision

    seq = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(seq, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)  # (s, h, d)
    cos, sin = position_embeddings
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)

    cu = cu_seqlens.to(hidden_states.device, torch.long)
    lengths = cu[1:] - cu[:-1]  # (windows,)
    n, longest = len(lengths), int(lengths.max())
    pos = torch.arange(seq, device=hidden_states.device)
    window = torch.searchsorted(cu[1:], pos, right=True)  # (s,) which window each token is in
    offset = pos - cu[window]  # (s,) its place inside the window

    def padded(x):  # (s, h, d) -> (windows, h, longest, d)
        out = x.new_zeros(n, longest, *x.shape[1:])
        out[window, offset] = x
        return out.transpose(1, 2)

    keep = torch.arange(longest, device=hidden_states.device)[None, :] < lengths[:, None]  # (windows, longest)
    attn = F.scaled_dot_product_attention(padded(q), padded(k), padded(v), attn_mask=keep[:, None, None, :],
                                          scale=self.scaling)  # (windows, h, longest, d)
    out = attn.transpose(1, 2)[window, offset]  # (s, h, d): padded query rows are dropped here
    return self.proj(out.reshape(seq, -1))


def enable_batched_vision_attention(backbone) -> int:
    """Use ``batched_vision_attention`` in every vision block of ``backbone``; returns how many."""
    blocks = backbone.model.visual.blocks
    for block in blocks:
        block.attn.forward = types.MethodType(batched_vision_attention, block.attn)
    return len(blocks)


def disable_batched_vision_attention(backbone) -> None:
    """Back to transformers' own vision attention."""
    for block in backbone.model.visual.blocks:
        block.attn.__dict__.pop("forward", None)
