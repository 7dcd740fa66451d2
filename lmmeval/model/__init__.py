"""Model side of lmmeval: the Qwen2.5-VL base (real 7B or the offline tiny stand-in) and its heads."""

from .tiny import build_tiny_base

__all__ = ["build_tiny_base"]
