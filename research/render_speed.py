"""Seconds per frame of each Mitsuba variant lmmeval renders with, and how alike their frames look.

Renders the clean example head (tools/make_example_heads.py) at azimuths spread over the orbit, in
this process, with ``lmmeval.render.scene.FrameRenderer`` (the scene built once, as a render worker
builds it), for every variant that loads here, each frame seeded by its index as `lmmeval render`
seeds it. Prints seconds per frame (after one warm-up frame: the LLVM variant compiles its kernel
there) and the PSNR of each variant's frames against the scalar variant's. The LLVM variant runs on
--threads threads (default every core); the scalar one renders a frame on one core.

    python -m research.render_speed               # 512x512, 4 samples per pixel, 8 frames
    python -m research.render_speed --threads 1   # the LLVM variant on one core
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOOLS = Path(__file__).resolve().parent.parent / "tools"  # make_example_heads.py


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--spp", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads of the LLVM variant")
    args = parser.parse_args(argv)

    import drjit as dr

    from lmmeval.orbit import orbit_azimuths
    from lmmeval.render.assets import load_asset
    from lmmeval.render.scene import FrameRenderer, variant_loads

    sys.path.insert(0, str(TOOLS))
    from make_example_heads import main as make_heads

    with tempfile.TemporaryDirectory() as tmp:
        make_heads([tmp])
        head = load_asset(Path(tmp) / "head_clean.ply")
    azimuths = orbit_azimuths(240)[np.linspace(0, 239, args.frames).round().astype(int)]
    seeds = np.linspace(0, 239, args.frames).round().astype(int)
    frames, seconds = {}, {}
    for variant in ("scalar_rgb", "llvm_ad_rgb", "cuda_ad_rgb"):
        if not variant_loads(variant):
            print(f"{variant}: does not load here")
            continue
        renderer = FrameRenderer(head, args.size, args.spp, variant)
        if variant.startswith("llvm"):
            dr.set_thread_count(args.threads)
        renderer.render(0.0, seed=0)  # warm-up (kernel compilation)
        start = time.perf_counter()
        frames[variant] = np.stack([renderer.render(float(a), seed=int(s)) for a, s in zip(azimuths, seeds)])
        seconds[variant] = (time.perf_counter() - start) / args.frames
    print(f"| variant | seconds per {args.size}x{args.size} frame ({args.spp} spp) | PSNR vs scalar_rgb |")
    print("|---|---|---|")
    for variant, s in seconds.items():
        look = "-" if variant == "scalar_rgb" or "scalar_rgb" not in frames else \
            f"{np.mean([psnr(a, b) for a, b in zip(frames[variant], frames['scalar_rgb'])]):.1f} dB " \
            f"(min {min(psnr(a, b) for a, b in zip(frames[variant], frames['scalar_rgb'])):.1f})"
        threads = f", {args.threads} threads" if variant.startswith("llvm") else ""
        print(f"| {variant}{threads} | {s:.3f} | {look} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
