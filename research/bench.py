"""Benchmarks: `python -m research.bench` (a benchmark, never a timed test).

Times the assessor end to end (decode -> sampling -> vision -> LLM -> heads ->
saliency) on rendered synthetic face videos, and one stage-2 training step,
with random weights at a chosen shape:

    python -m research.bench --preset tiny --device cpu                  # CPU, seconds
    python -m research.bench --preset 7b --device cuda --out bench.json  # real 7B shape, bf16

Prints ms/video, videos/s, peak memory, the FLOP floor (2 x LLM params x tokens at
``--peak-tflops``) and the ratio to it; writes everything to ``--out`` as JSON
with the command, device and commit.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from lmmeval.labels import SCORE_RANGE
from lmmeval.model.factory import ATTENTIONS
from lmmeval.model.presets import PRESET_NAMES
from lmmeval.provenance import git_commit


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_assessor(preset: str, device: torch.device, max_pixels: int, max_frames: int, attention: str = "sdpa",
                   sample_fps: float = 2.0):
    """An untrained assessor on ``preset:<preset>`` (random weights at that shape)."""
    from lmmeval.inference.assessor import Assessor
    from lmmeval.model.configuration import SamplingConfig

    sampling = SamplingConfig(fps=sample_fps, max_frames=max_frames, max_pixels=max_pixels)
    return Assessor.from_base(f"preset:{preset}", device, sampling, attention=attention)


def bench_assess(assessor, videos: list[str], batch_size: int, repeats: int, device: torch.device,
                 distortions: bool = True) -> dict:
    """Time ``assess`` (no saliency files, no description); ``distortions=False``: scores only, no text."""
    assessor.assess(videos[:batch_size], batch_size=batch_size, distortions=distortions)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    n = 0
    for _ in range(repeats):
        assessor.assess(videos, batch_size=batch_size, distortions=distortions)
        n += len(videos)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"batch_size": batch_size, "videos": n, "ms_per_video": 1000 * seconds / n, "videos_per_s": n / seconds,
            "peak_memory_gib": _peak_memory_gib(device),
            "mode": "with the distortion answer" if distortions else "scores only"}


def bench_train_step(assessor, videos: list[str], batch_size: int, steps: int, device: torch.device) -> dict:
    """Stage-2 step (LoRA + regression, LM loss kept): forward, backward, AdamW, without DeepSpeed."""
    from lmmeval.io.media import load_visual
    from lmmeval.model import factory
    from lmmeval.model.configuration import LoraSettings
    from lmmeval.model.processing import build_batch
    from lmmeval.prompts import TASKS
    from lmmeval.training.losses import regression_loss

    factory.add_lora(assessor.parts, LoraSettings())
    params = [p for n, p in assessor.model.named_parameters() if "lora_" in n or n.startswith("regression.")]
    for p in assessor.model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-5)
    visuals = [load_visual(v, assessor.config.sampling, assessor.parts.geometry) for v in videos[:batch_size]]
    answers = [{"quality": " good.", "authenticity": " fair.", "distortions": " Eye Distortions."}] * len(visuals)
    batch = build_batch(assessor.processor, visuals, TASKS, answers=answers).to(device)
    mos = torch.full((len(visuals), 2), sum(SCORE_RANGE) / 2, device=device)  # mid-scale targets
    assessor.model.train()

    def step():
        out = assessor.model(batch, with_saliency=False)
        loss = regression_loss(out.scores, mos) + 0.1 * out.lm_loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / steps
    return {"batch_size": len(visuals), "step_s": seconds, "videos_per_s": len(visuals) / seconds,
            "peak_memory_gib": _peak_memory_gib(device)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=PRESET_NAMES, default="tiny",
                        help="random weights at this preset's shape (default tiny; 7b: Qwen2.5-VL-7B's)")
    parser.add_argument("--attention", choices=ATTENTIONS, default="sdpa",
                        help="transformers' attention implementation (default sdpa); under sdpa and eager both vision "
                             "paths are timed (transformers' window loop and lmmeval's batched windows)")
    parser.add_argument("--modes", default="scores,answer",
                        help="what each assess pass produces: scores (no text) and/or answer (with the distortion "
                             "answer); comma-separated (default both)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--videos", type=int, default=8, help="videos per timed pass (default 8)")
    parser.add_argument("--size", type=int, default=512, help="rendered frame size (default 512, the paper's)")
    parser.add_argument("--fps", type=int, default=60, help="rendered fps (default 60, the paper's)")
    parser.add_argument("--seconds", type=float, default=4.0, help="rendered length (default 4 s, the paper's)")
    parser.add_argument("--max-frames", type=int, default=16, help="frames sampled per video at most (default 16)")
    parser.add_argument("--sample-fps", type=float, default=2.0,
                        help="frames sampled per second of video (default 2; 4 takes 16 frames of a 4 s render)")
    parser.add_argument("--max-pixels", type=int, default=448 * 448, help="pixel budget per frame (default 448^2)")
    parser.add_argument("--batch-sizes", default="1,4", help="comma-separated assess batch sizes (default 1,4)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=5, help="timed stage-2 steps (0: skip)")
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--peak-tflops", type=float, default=790.0,
                        help="dense bf16 peak used for the FLOP floor (default 790, an H100 SXM)")
    parser.add_argument("--workers", type=int, default=4, help="rendering processes")
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args(argv)
    device = torch.device(args.device)

    from lmmeval.synth import SynthConfig, synthesize

    work = Path(tempfile.mkdtemp(prefix="lmmeval-bench-"))
    print(f"rendering {args.videos} videos ({args.size}px, {args.fps} fps, {args.seconds:g} s) ...", flush=True)
    synthesize(work, SynthConfig(n=args.videos, seed=0, size=args.size, fps=args.fps, seconds=args.seconds,
                                 workers=args.workers), progress=False)
    videos = sorted(str(p) for p in (work / "videos").glob("*.mp4"))
    modes = args.modes.split(",")
    if not modes or set(modes) - {"scores", "answer"}:
        parser.error(f"--modes takes scores and/or answer, got {args.modes!r}")
    assessor = build_assessor(args.preset, device, args.max_pixels, args.max_frames, args.attention, args.sample_fps)
    llm_params = sum(p.numel() for n, p in assessor.model.backbone.named_parameters() if "visual" not in n)
    vis_params = sum(p.numel() for n, p in assessor.model.backbone.named_parameters() if "visual" in n)

    from lmmeval.io.media import load_visual
    from lmmeval.model.processing import build_batch
    from lmmeval.prompts import LEVEL_TASKS

    probe = build_batch(assessor.processor, [load_visual(videos[0], assessor.config.sampling, assessor.parts.geometry)],
                        LEVEL_TASKS)
    tokens = int(probe.attention_mask.sum())  # both questions of one video
    patches = int(probe.video_grid_thw.prod())
    # Floor: 2 FLOPs per parameter per token for the LLM over both questions, plus the ViT over its patches.
    floor_ms = 1000 * 2 * (llm_params * tokens + vis_params * patches) / (args.peak_tflops * 1e12)
    results = {"command": " ".join([Path(sys.executable).name, "-m", "research.bench",
                                    *(argv or sys.argv[1:])]),
               "device": _device_name(device), "commit": git_commit(), "torch": torch.__version__,
               "preset": args.preset, "attention": args.attention, "llm_params": llm_params, "vision_params": vis_params,
               "tokens_per_video": tokens, "vision_patches_per_video": patches, "flop_floor_ms": floor_ms,
               "assess": [], "train_stage2": None}
    # The vision-attention paths on the same inputs in one run, and how far their outputs differ:
    # transformers' window loop and lmmeval's batched windows under sdpa/eager; flash-attention's own.
    paths = {"transformers": False, "batched windows": True}
    if args.attention == "flash_attention_2":
        paths = {"flash-attention varlen": False}
    outputs = {}
    for path, fast in paths.items():
        assessor.set_fast_vision(fast)
        outputs[path] = assessor.assess(videos[:2], batch_size=2)
        for mode in modes:
            for bs in map(int, args.batch_sizes.split(",")):
                r = bench_assess(assessor, videos, bs, args.repeats, device, distortions=mode == "answer")
                r["ratio_to_floor"] = r["ms_per_video"] / floor_ms
                r["vision_path"] = path
                results["assess"].append(r)
                print(f"assess  {path:<22} {r['mode']:<26} batch {bs}: {r['ms_per_video']:.1f} ms/video, "
                      f"{r['videos_per_s']:.2f} videos/s, peak {r['peak_memory_gib']:.2f} GiB, "
                      f"{r['ratio_to_floor']:.1f}x the FLOP floor ({floor_ms:.1f} ms)", flush=True)
    if len(outputs) == 2:
        diff = max(abs(a.quality - b.quality) for a, b in zip(*outputs.values()))
        results["max_abs_score_difference_fast_vs_transformers"] = diff
        print(f"max |quality(batched windows) - quality(transformers)|: {diff:.2e} MOS points")
    if args.train_steps:
        r = bench_train_step(assessor, videos, args.train_batch, args.train_steps, device)
        results["train_stage2"] = r
        print(f"stage-2 step, batch {r['batch_size']}: {r['step_s'] * 1000:.0f} ms, {r['videos_per_s']:.2f} videos/s, "
              f"peak {r['peak_memory_gib']:.2f} GiB")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
