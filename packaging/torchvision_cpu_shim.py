"""Start-up hook that lets a CUDA-only torchvision wheel import next to a CPU torch.

Installed into the virtualenv by ``make`` *only* when ``import torchvision`` fails
with "operator torchvision::nms does not exist" (the registry serves torchvision
as a CUDA build, whose C extension cannot load against the CPU torch wheel).
torchvision's Python side registers fake kernels for two C++ ops without guarding
against a missing extension; defining their schemas first is enough for
``import torchvision`` (and so timm, segmentation-models-pytorch, qwen-vl-utils and
transformers' Qwen2-VL processors) to work. Only torchvision's C++ ops (nms,
roi_align, decode_jpeg, ...) stay unavailable; lmmeval uses none of them.

The hook is lazy: it costs nothing until something imports torchvision.
"""

import importlib.abc
import sys


class _DefineTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)  # run once
        try:
            import torch

            for op in ("nms", "qnms"):
                try:
                    torch.library.define(
                        f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
                    )
                except RuntimeError:
                    pass  # already defined
        except Exception:  # never break interpreter start-up
            pass
        return None  # let the normal finders import torchvision


sys.meta_path.insert(0, _DefineTorchvisionOps())
