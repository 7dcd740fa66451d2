"""The `lmmeval` command line: one sub-command per job.

    lmmeval synth OUT_DIR [--n 200 --seed 5]      render a synthetic Gen3DHF-style study
    lmmeval prepare RAW_DIR OUT_DIR [--folds 5]    annotations -> manifest.jsonl
    lmmeval import-gen3dhf ROOT OUT_DIR --labels DIR   the published Gen3DHF release -> manifest.jsonl
    lmmeval stats MANIFEST [--truth RAW/truth.jsonl]  dataset statistics and learnability checks
    lmmeval render ASSET... --out DIR              3D heads -> videos in the Gen3DHF protocol
    lmmeval score INPUT... --out results.jsonl     score videos/images with an assessor checkpoint
    lmmeval evaluate --manifest M --fold K --out DIR   the paper's metrics on a held-out fold (or --split eval)
    lmmeval calibrate-ood --model CKPT --manifest M    a checkpoint's out-of-distribution flag
    lmmeval report RESULTS.jsonl --out DIR [--manifest M]   leaderboard, agreement with MOS, HTML report

Run `lmmeval COMMAND --help` for each command's options.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path

from .io.media import MEDIA_SUFFIXES
from .render.assets import MESH_SUFFIXES
from .labels import SCORE_RANGE


def _synth(args: argparse.Namespace) -> int:
    from .synth import SynthConfig, synthesize

    config = SynthConfig(n=args.n, seed=args.seed, size=args.size, fps=args.fps, seconds=args.seconds,
                         sweep_deg=args.sweep, workers=args.workers, grain_size=args.grain_size)
    out = synthesize(args.out_dir, config, progress=not args.quiet, overwrite=args.overwrite)
    print(f"wrote {config.n} videos ({config.num_frames} frames of {config.size}x{config.size} at {config.fps} fps) "
          f"and their simulated study to {out}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from .data.prepare import PrepareConfig, prepare
    from .data.stats import dataset_report

    config = PrepareConfig(folds=args.folds, seed=args.seed, min_votes=args.min_votes, sigma=args.sigma,
                           sweep_deg=args.sweep)
    manifest = prepare(args.raw_dir, args.out_dir, config, progress=not args.quiet, overwrite=args.overwrite)
    print(f"wrote {manifest}")
    if not args.quiet:
        print(dataset_report(manifest, check=False))
    return 0


def _import_gen3dhf(args: argparse.Namespace) -> int:
    import json

    from .data.gen3dhf import ImportConfig, import_gen3dhf

    config = ImportConfig(folds=args.folds, seed=args.seed, copy=args.copy, allow_missing=args.allow_missing,
                          saliency_pattern=args.saliency_pattern, view_order=tuple(args.view_order),
                          red_dots=args.red_dots)
    manifest = import_gen3dhf(args.root, args.out_dir, args.labels, config, progress=not args.quiet,
                              overwrite=args.overwrite)
    summary = json.loads((manifest.parent / "summary.json").read_text())
    splits = ", ".join(f"{n} {s}" for s, n in summary.get("splits", {}).items())
    sal = summary["saliency"]
    print(f"wrote {manifest}: {summary['videos']} videos ({splits})")
    print(f"saliency maps: {sal['maps_matched']} matched, {len(sal['videos_without_map'])} videos without one"
          + (f"; red-dot images: {sal['red_dot_images_matched']} matched" if args.red_dots else ""))
    for dim, agree in summary["level_words_eq4_vs_published"].items():
        print(f"{dim} levels by Eq. 4: {agree['same']} as published, {agree['different']} not (summary.json lists them)")
    if summary["missing_videos"]:
        print(f"skipped {len(summary['missing_videos'])} missing video(s) (listed in summary.json)", file=sys.stderr)
    return 0


def _render_config(args: argparse.Namespace):
    from .render import RenderConfig
    from .render.scene import requested_variant

    requested_variant()  # an unknown LMMEVAL_RENDER_VARIANT is an error now, before anything starts
    return RenderConfig(size=args.size, fps=args.fps, seconds=args.seconds, orbit_deg=args.orbit, spp=args.spp,
                        up=args.up, front=args.front, workers=args.render_workers)


def _render(args: argparse.Namespace) -> int:
    from .render import collect_assets, output_names, output_paths, render_assets

    config = _render_config(args)
    if args.resume and args.overwrite:
        raise ValueError("--resume skips finished assets and --overwrite renders them again: give one")
    files = collect_assets(args.assets)
    missing = [f for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such file or directory")
    if not files:
        raise ValueError(f"no 3D meshes to render in {', '.join(args.assets)} ({', '.join(MESH_SUFFIXES)})")
    names = output_names(files)
    outputs = {f: output_paths(f, args.out, names[f]) for f in files}
    inputs = {f.resolve() for f in files}
    for f, paths in outputs.items():
        for path in paths:
            if path.resolve() in inputs:
                raise ValueError(f"{path} is one of the assets: it would be overwritten; give another --out")
            if path.exists() and not (args.resume or args.overwrite):
                raise ValueError(f"{path} exists (an earlier render?): --resume skips finished assets, --overwrite "
                                 "renders them again")
    results = render_assets(args.assets, args.out, config, resume=args.resume, progress=not args.quiet)
    failed = [r for r in results if r.error]
    for r in results:
        if r.notes:
            print(f"{r.source}: {'; '.join(r.notes)}", file=sys.stderr)
    done = sum(r.error is None and not r.skipped for r in results)
    skipped = sum(r.skipped for r in results)
    print(f"{len(results)} assets: {done} rendered, {skipped} already complete in {args.out}, {len(failed)} failed "
          f"({config.num_frames} frames of {config.size}x{config.size} at {config.fps} fps each)")
    for r in failed:
        print(f"  {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _add_render_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The protocol options of `render` (and, prefixed, of `score`, for the meshes among its inputs)."""
    from .render import RenderConfig, default_workers

    d = RenderConfig()
    p.add_argument(f"--{prefix}size", dest="size", type=int, default=d.size,
                   help=f"frame side in pixels, even (default {d.size}, as in the paper)")
    p.add_argument(f"--{prefix}fps", dest="fps", type=int, default=d.fps, help=f"frames per second (default {d.fps})")
    p.add_argument(f"--{prefix}seconds", dest="seconds", type=float, default=d.seconds,
                   help=f"video length (default {d.seconds:g} s)")
    p.add_argument(f"--{prefix}orbit", dest="orbit", type=float, default=d.orbit_deg,
                   help=f"camera orbit in degrees, profile to profile through the front (default {d.orbit_deg:g})")
    p.add_argument(f"--{prefix}spp", dest="spp", type=int, default=d.spp,
                   help=f"samples per pixel (default {d.spp}; the light is direct only)")
    p.add_argument("--up", choices=("y", "z"), default=d.up, help=f"the assets' up axis (default {d.up})")
    p.add_argument("--front", choices=("+x", "-x", "+y", "-y", "+z", "-z"), default=d.front,
                   help=f"the direction the faces look in the assets' coordinates (default {d.front})")
    p.add_argument(f"--{prefix}workers", dest="render_workers", type=int, default=default_workers(), metavar="N",
                   help=f"rendering processes, each on one CPU core (default: one per core, {default_workers()} here)")


def _stats(args: argparse.Namespace) -> int:
    from .data.stats import dataset_report

    print(dataset_report(args.manifest, truth_path=args.truth, check=not args.no_check, input_size=args.input_size))
    return 0


def _assessor_loader(args: argparse.Namespace):
    """A function device -> Assessor, as the options of `score` and `evaluate` ask for it. A base
    without a checkpoint is an error (a checkpoint's heads are trained for one base) unless
    --untrained asks for fresh heads, whose scores mean nothing (each row's notes say so)."""
    from .inference.assessor import Assessor

    untrained = getattr(args, "untrained", False)
    if untrained and (args.model or not args.base):
        raise ValueError("--untrained builds fresh heads on --base: give --base and no --model")
    if args.base and not args.model and not untrained:
        raise ValueError(f"--base {args.base} needs a checkpoint trained on that base (--model DIR); the embedded demo "
                         "checkpoint was trained on the tiny preset. --untrained scores with freshly initialised "
                         "heads instead (their scores mean nothing)")

    def load(device):
        if getattr(args, "quiet", False):
            _quiet_third_parties(verbose=args.verbose, quiet=True)  # transformers is imported by now
        if untrained:
            print(f"lmmeval: untrained heads on {args.base}: the scores mean nothing", file=sys.stderr)
            assessor = Assessor.from_base(args.base, device=device, dtype=args.dtype, attention=args.attention)
        else:
            assessor = Assessor.from_pretrained(args.model, device=device, base=args.base, dtype=args.dtype,
                                                attention=args.attention)
        if getattr(args, "compile", False):
            assessor.compile()
        return assessor

    return load


def _score(args: argparse.Namespace) -> int:
    from .inference.scoring import check_options, distributed_rank, plan_scoring

    check_options(args.batch_size, args.masks, args.mask_threshold, args.mask_dilate)
    check_device(args.device)
    ranks = distributed_rank()  # a stray WORLD_SIZE is an error here, not a KeyError later
    load_assessor = _assessor_loader(args)  # its argument errors now, before any input is looked at
    render = _render_config(args)  # likewise
    if args.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {args.workers}")
    # Every input and output path is checked before the model loads: a mistake costs seconds.
    plan = plan_scoring(args.inputs, args.out, csv_path=args.csv, saliency_dir=args.saliency_dir,
                        overlay=args.overlay, masks_dir=args.masks, render_cache=args.render_cache,
                        resume=args.resume, overwrite=args.overwrite, keep_failed=args.keep_failed,
                        include=tuple(args.include), exclude=tuple(args.exclude))
    _check_forced_variant(plan, render)
    note = plan.inputs.skipped_note()
    if note and (ranks is None or ranks[0] == 0):
        print(f"lmmeval score: {note}", file=sys.stderr)
    options = dict(batch_size=args.batch_size, render=render, mask_threshold=args.mask_threshold,
                   mask_dilate=args.mask_dilate, low_confidence_entropy=args.low_confidence, progress=not args.quiet,
                   workers=args.workers, keep_renders=args.keep_renders or args.render_cache is not None)
    if ranks is not None:  # torchrun / deepspeed launcher: one shard per rank
        from .inference.scoring import score_distributed

        summary = score_distributed(load_assessor, plan, **options)
        if ranks[0] != 0:
            return 1 if summary.failed else 0
    else:
        from .inference.scoring import run_plan

        summary = run_plan(load_assessor(args.device), plan, **options)
    retried = f", {summary.retried} of them failed before" if summary.retried else ""
    ood = f", {summary.out_of_distribution} out of distribution" if summary.ood_checked else ""
    print(f"{summary.total} inputs: {summary.scored_now} scored now{retried}, {summary.kept} already in {args.out}; "
          f"{args.out} holds {summary.scored} scored ({summary.low_confidence} flagged "
          f"low-confidence{ood}) and {summary.failed} failed")
    if summary.foreign:
        print(f"lmmeval score: {args.out} also holds {summary.foreign} row(s) for paths that are not among this "
              "run's inputs: left in the file, not counted above", file=sys.stderr)
    for input_id, error in summary.failures:
        print(f"  failed: {input_id}: {error}", file=sys.stderr)
    if summary.failed > len(summary.failures):
        print(f"  ... and {summary.failed - len(summary.failures)} more", file=sys.stderr)
    if summary.failed:
        print(f"failed inputs are listed with their 'error' in {args.out}", file=sys.stderr)
    return 1 if summary.failed else 0


def _check_forced_variant(plan, render) -> None:
    """A render variant forced by LMMEVAL_RENDER_VARIANT that does not load here is an error before the
    model loads (a render worker is started to ask: a second or so, only when one is forced)."""
    from .render.scene import requested_variant

    if requested_variant() is None or not any(f.suffix.lower() in MESH_SUFFIXES for f in plan.inputs.files):
        return
    try:
        from .render.pool import RenderError, RenderPool
    except ImportError:
        return  # without the extra each mesh gets that as its error
    with RenderPool(1, render.gpu) as pool:
        try:
            pool.start()
        except RenderError:
            pass  # a worker that does not start fails each mesh, with its error


def check_device(name: str | None) -> None:
    """A ``--device`` that this machine cannot use is one line, before anything loads."""
    if name is None:
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name}: not a torch device (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cpu":
        return
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise ValueError(f"--device {name}: {why}; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: there are {torch.cuda.device_count()} CUDA device(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return
    if device.type == "mps" and torch.backends.mps.is_available():
        return
    raise ValueError(f"--device {name}: not available here (use cpu{' or cuda' if torch.cuda.is_available() else ''})")


def _evaluate(args: argparse.Namespace) -> int:
    from .eval.evaluate import run

    fold = args.fold if args.fold is not None else (-1 if args.split else 0)
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_device(args.device)
    _check_report_folder(Path(args.out), args.overwrite)  # before minutes of assessing, not after
    run(args.model, args.manifest, fold, args.out, base=args.base, device=args.device, batch_size=args.batch_size,
        command=args.command_line, split=args.split, load_assessor=_assessor_loader(args))
    print((Path(args.out) / "report.md").read_text())
    return 0


def _check_report_folder(out: Path, overwrite: bool) -> None:
    """`evaluate`'s report folder: creatable, writable, and not holding an earlier report unless asked."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for the report")
    if (out / "report.json").exists() and not overwrite:
        raise ValueError(f"--out {out} holds an earlier report (report.json): --overwrite replaces it, or give "
                         "another folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the report folder {out}: {err.strerror or err}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write into the report folder {out}: permission denied")


def _calibrate_ood(args: argparse.Namespace) -> int:
    import numpy as np

    from .inference.ood_calibration import calibrate_checkpoint

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    ood, scores = calibrate_checkpoint(args.model, args.manifest, held_out_fold=args.held_out_fold,
                                       held_out_split=args.held_out_split, components=args.components,
                                       quantile=args.quantile, folds=args.folds, batch_size=args.batch_size,
                                       device=args.device, base=args.base, progress=not args.quiet,
                                       command=args.command_line, overwrite=args.overwrite)
    print(f"wrote {Path(args.model) / 'ood.safetensors'}: fitted on {ood.n_fit} training videos, {ood.axes.shape[0]} "
          f"axes of {ood.dim}; threshold {ood.threshold:.3f} (the {ood.quantile:g} quantile of held-out folds' scores); "
          f"training videos' scores: median {np.median(scores):.3f}, max {scores.max():.3f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmmeval",
        description="LMME3DHF: quality, authenticity, distortion categories and distortion saliency "
                    "for AI-generated 3D human face videos.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
               "  lmmeval synth data/raw --n 200 --seed 5          # the paper's protocol: 512x512, 60 fps, 4 s\n"
               "  lmmeval synth data/small --n 40 --seed 5 --size 112 --fps 8 --seconds 2\n"
               "                  # (seeds 0-3 made the embedded checkpoint's training and test studies)\n"
               "  lmmeval prepare data/raw data/prepared --folds 5\n"
               "  lmmeval stats data/prepared/manifest.jsonl --truth data/raw/truth.jsonl",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="render a synthetic Gen3DHF-style dataset with a simulated subjective study",
                       description="Render procedural 3D heads from ten simulated generators (each with its own "
                                   "distortion profile) as turntable videos, and simulate the study: 24 raters on "
                                   "quality and authenticity sliders (3 unreliable), 3 annotators marking distortions "
                                   "on -45/0/45 deg snapshots with free-text descriptions.")
    p.add_argument("out_dir", help="output folder (created)")
    p.add_argument("--n", type=int, default=200, help="number of videos, dealt over the 10 generators (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=512, help="frame size in pixels, even (default 512, as in the paper)")
    p.add_argument("--fps", type=int, default=60, help="frames per second (default 60, as in the paper)")
    p.add_argument("--seconds", type=float, default=4.0, help="video length in seconds (default 4, as in the paper)")
    p.add_argument("--sweep", type=float, default=180.0, help="camera orbit in degrees (default 180)")
    p.add_argument("--grain-size", type=int, metavar="PX",
                   help="draw the film grain on a PX x PX grid resized to the frame, so a frame shrunk to PX "
                        "keeps it (default: one grain value per pixel, the benchmark's setting)")
    p.add_argument("--workers", type=int, default=1, help="rendering processes (default 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing, non-empty OUT_DIR (the new study takes its place only when complete)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)

    p = sub.add_parser("prepare", help="turn raw study annotations into a manifest (MOS, levels, categories, saliency, folds)",
                       description="Compute MOS (BT.500 screening, per-subject Z-scores, paper Eq. 1-3), text levels "
                                   "(Eq. 4), distortion categories from the descriptions, saliency maps from the dots "
                                   "(Gaussian, sigma 5 px) and a generator-stratified k-fold split, "
                                   "into OUT_DIR/manifest.jsonl. Works on real annotations in "
                                   "the same format as `lmmeval synth` output.")
    p.add_argument("raw_dir", help="folder with videos/, ratings.csv, marks.jsonl, generators.csv")
    p.add_argument("out_dir", help="output folder (created)")
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--min-votes", type=int, default=1,
                   help="annotators who must name a distortion category for it to count (default 1: any)")
    p.add_argument("--sigma", type=float, default=5.0, help="saliency Gaussian sigma in pixels (default 5)")
    p.add_argument("--sweep", type=float, default=180.0, help="camera orbit of the videos in degrees (default 180)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing, non-empty OUT_DIR (the new one is built beside it and takes its "
                        "place only when complete)")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("import-gen3dhf", help="import the published Gen3DHF release with its official split",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Turn the unzipped Gen3DHF release (ROOT/video_RGB/ required; ROOT/saliency_map/ "
                                   "optional) and the authors' four label files (their datasets/numerical/ folder: "
                                   "{train,eval}_{quality,authenticity}.json) into OUT_DIR/manifest.jsonl, the schema "
                                   "`lmmeval prepare` writes: the published MOS as they are, levels by Eq. 4 over all "
                                   "videos, the official train/eval split, MOS-stratified folds, distortion categories "
                                   "marked not labelled, each saliency map split into its views. summary.json says "
                                   "how Eq. 4 agrees with the published level words and what did not match.",
                       epilog="Example:\n"
                              "  lmmeval import-gen3dhf Gen3DHF/ data/gen3dhf --labels LMME3DHF/main/datasets/numerical\n"
                              "  python train/stage1_instruct.py --config configs/qwen7b/stage1.yaml \\\n"
                              "      --set manifest=data/gen3dhf/manifest.jsonl split=eval")
    p.add_argument("root", help="the unzipped release: video_RGB/ (and saliency_map/, image/)")
    p.add_argument("out_dir", help="output folder (created)")
    p.add_argument("--labels", required=True, metavar="DIR",
                   help="folder with the four numerical label files, under their published names")
    p.add_argument("--folds", type=int, default=5, help="folds over all videos, stratified by MOS (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    p.add_argument("--copy", action="store_true", help="copy the videos into OUT_DIR (default: symlinks)")
    p.add_argument("--allow-missing", action="store_true",
                   help="skip labelled videos that video_RGB/ lacks (listed in summary.json) instead of stopping")
    p.add_argument("--saliency-pattern", metavar="REGEX",
                   help="regex with a named group (?P<id>...) that finds the video in a map's file name "
                        "(default: the file name's leading letters and digits, e.g. seed0123 in seed0123_saliency.png)")
    p.add_argument("--view-order", nargs="+", default=["-45", "0", "45"], metavar="DEG",
                   help="the views of a map, left to right, in degrees (default: -45 0 45)")
    p.add_argument("--red-dots", metavar="DIR",
                   help="annotated snapshot images with the red dots: fixations at the dots' centroids "
                        "(default: the maps thresholded at 0.95, as the authors' fixation maps)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing, non-empty OUT_DIR (the new one is built beside it and takes its "
                        "place only when complete)")
    p.set_defaults(func=_import_gen3dhf)

    p = sub.add_parser("render", help="render 3D head assets (.glb/.gltf/.obj/.ply) as videos in the Gen3DHF protocol",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Render each asset as the Gen3DHF videos were made: the camera orbiting the still "
                                   "head from one profile to the other through the front, the head framed from its "
                                   "bounding box (the same apparent size for every asset), a fixed light that "
                                   "follows the camera. Writes OUT/<stem>.mp4 and OUT/<stem>_views.png (the -45/0/45 "
                                   "degree views side by side; assets sharing a file name are named by their path "
                                   "below the folder they share, e.g. OUT/a/model.mp4). Needs the [render] extra (Mitsuba 3, trimesh); "
                                   "renders on a GPU when there is one, else with Mitsuba's LLVM variant on every core "
                                   "(the scalar one, about 8 times slower, where no libLLVM loads; the environment "
                                   "variable LMMEVAL_RENDER_VARIANT=scalar_rgb|llvm_ad_rgb|cuda_ad_rgb forces one).",
                       epilog="Examples:\n"
                              "  lmmeval render heads/ --out renders/                      # the paper's protocol, one process per core\n"
                              "  lmmeval render head.glb --out renders/ --up z --front -y   # a z-up asset facing -y\n"
                              "  lmmeval score heads/ --out r.jsonl         # renders only the frames the model reads")
    p.add_argument("assets", nargs="+", metavar="ASSET", help="mesh files, or folders searched for them")
    p.add_argument("--out", required=True, help="output folder (created)")
    _add_render_options(p)
    p.add_argument("--resume", action="store_true", help="skip assets whose video is already complete in --out")
    p.add_argument("--overwrite", action="store_true", help="render again assets whose video is already in --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_render)

    p = sub.add_parser("stats", help="statistics and learnability checks of a prepared manifest")
    p.add_argument("manifest", help="manifest.jsonl written by `lmmeval prepare`")
    p.add_argument("--truth", help="truth.jsonl of a synthetic set: also check MOS against the latent scores")
    p.add_argument("--no-check", action="store_true", help="skip the checks that decode videos")
    p.add_argument("--input-size", type=int, metavar="PX",
                   help="measure sharpness on frames as a model with a PX x PX pixel budget reads them "
                        "(its loader's resize; e.g. 112 for the tiny preset's max_pixels, 448 for 448 x 448)")
    p.set_defaults(func=_stats)

    p = sub.add_parser("score", help="score videos and images: quality, authenticity, levels, distortions, saliency",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Score every input (files, or folders searched recursively for "
                                   f"{', '.join(s.lstrip('.') for s in MEDIA_SUFFIXES)}, and 3D meshes "
                                   f"{', '.join(s.lstrip('.') for s in MESH_SUFFIXES)}, which are rendered as in "
                                   "`lmmeval render`, only the frames the model reads unless --keep-renders) and write one JSON line per input: id, path, quality and authenticity (MOS scale "
                                   f"{SCORE_RANGE[0]:g}-{SCORE_RANGE[1]:g}), their text levels and level probabilities, distortion categories, runtime. "
                                   "What lmmeval wrote into the folders is not scored (view strips beside rendered "
                                   "videos, render caches, heat maps, overlays, masks), nor are the textures of meshes "
                                   "among the inputs; the run says how many it skipped. "
                                   "A failing input gets a line with its error and the run continues; the exit status "
                                   "is 1 if the results file holds a failure (earlier runs' included, after --resume). "
                                   "Every output path is checked before the model loads: an existing results file "
                                   "needs --resume or --overwrite, and no output may be an input.",
                       epilog="Examples:\n"
                              "  lmmeval score renders/ --out results.jsonl                 # the embedded demo model\n"
                              "  lmmeval score renders/ --model ckpt/ --base Qwen2.5-VL-7B-Instruct/ --out r.jsonl --csv r.csv\n"
                              "  lmmeval score a.mp4 b.png --out r.jsonl --saliency-dir maps/ --overlay\n"
                              "  lmmeval score renders/ --out r.jsonl --resume               # continue an interrupted run\n"
                              "  lmmeval score renders/ --out r.jsonl --overwrite --include '*.mp4' --exclude 'old/*'\n"
                              "  torchrun --nproc_per_node 8 -m lmmeval.cli score renders/ --model ckpt/ --out r.jsonl\n"
                              "                                    # one shard per GPU, merged into r.jsonl (resumable)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video, image or 3D mesh files, or folders")
    p.add_argument("--out", required=True, help="results file (JSON lines)")
    _model_options(p, untrained=True)
    p.add_argument("--csv", help="also write a flat CSV of the results here")
    p.add_argument("--saliency-dir", help="write a saliency heat map PNG per input here")
    p.add_argument("--overlay", action="store_true", help="also write heat maps over the frames (GIF for videos)")
    p.add_argument("--masks", metavar="DIR", help="write binary refinement masks (PNG, 255 = refine) here, "
                   "and a refine_strength per row (0..1, higher for lower predicted quality)")
    p.add_argument("--mask-threshold", type=float, default=0.5, help="saliency level that enters a mask (default 0.5)")
    p.add_argument("--mask-dilate", type=int, default=3, help="grow masks by this many pixels (default 3)")
    p.add_argument("--low-confidence", type=float, default=1.2, metavar="NATS",
                   help="flag rows whose level distribution has more entropy than this in a dimension "
                        "(default 1.2; uniform over 5 levels is 1.609)")
    p.add_argument("--resume", action="store_true",
                   help="continue into an existing --out: skip inputs already scored there, score again those that "
                        "failed (a torn last line is dropped; rows of other paths are left alone and not counted)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (and --csv, heat maps, masks) instead of refusing to")
    p.add_argument("--keep-failed", action="store_true",
                   help="with --resume, also skip inputs that failed before (their error rows stay)")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="score only files whose path below the folder (or name) matches GLOB, e.g. '*.mp4' "
                        "(repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="leave out files whose path below the folder (or name) matches GLOB, e.g. 'old/*' "
                        "(repeatable)")
    p.add_argument("--batch-size", type=int, default=4, help="inputs per forward pass (default 4)")
    p.add_argument("--workers", type=int, default=1,
                   help="decode inputs in this many separate processes, ahead of the model (default 1; a file that "
                        "crashes its decoder then fails alone; 0 decodes in the main process)")
    p.add_argument("--keep-renders", action="store_true",
                   help="render each 3D mesh's whole protocol video into --render-cache and score it (default: "
                        "render only the frames the model reads, at about the size it reads them, and keep nothing)")
    p.add_argument("--render-cache", metavar="DIR",
                   help="where --keep-renders renders the 3D meshes among the inputs (default OUT.renders/; a video "
                        "is reused only for the same mesh files, render settings and renderer); implies --keep-renders")
    _add_render_options(p, prefix="render-")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the vision blocks and decoder layers (pays off on large runs: the first "
                        "batches are slow while kernels are built)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_score)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a manifest fold (SRCC/PLCC/KRCC, distortions, saliency)",
                       description="Assess every video of one fold of a manifest and compare with its annotations: "
                                   "SRCC, PLCC (raw and after a logistic-4 fit), KRCC, pairwise and level accuracy per "
                                   "dimension; distortion exact-set accuracy and per-category precision/recall; "
                                   "saliency AUC-Judd, NSS, CC, SIM, KLD. Writes report.json, report.md and plots.")
    _model_options(p, untrained=False)
    p.add_argument("--manifest", required=True, help="manifest.jsonl from `lmmeval prepare` or `import-gen3dhf`")
    held = p.add_mutually_exclusive_group()
    held.add_argument("--fold", type=int, help="fold to evaluate (default 0; -1: every record)")
    held.add_argument("--split", help="an official split to evaluate instead of a fold, e.g. eval (Gen3DHF)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out")
    p.add_argument("--batch-size", type=int, default=4, help="videos per forward pass (default 4)")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("calibrate-ood", help="fit a checkpoint's out-of-distribution flag on its training videos",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Compute every training video's vision feature (the mean merged vision token), fit "
                                   "their distribution (a Gaussian with a low-rank covariance) and a threshold (a "
                                   "quantile of held-out folds' distances), and write ood.safetensors into the "
                                   "checkpoint. From then on every scored input gets ood_score (about 1 for a typical "
                                   "training input) and out_of_distribution (above the threshold). Give the manifests "
                                   "the checkpoint was trained on, and what training held out.",
                       epilog="Examples:\n"
                              "  lmmeval calibrate-ood --model runs/demo/stage3/final --manifest runs/cv/prepared/manifest.jsonl\n"
                              "  lmmeval calibrate-ood --model ckpt/ --base /models/Qwen2.5-VL-7B-Instruct "
                              "--manifest gen3dhf/manifest.jsonl --held-out-split eval")
    p.add_argument("--model", required=True, help="checkpoint folder (ood.safetensors is written into it)")
    p.add_argument("--base", help="base Qwen2.5-VL folder for the checkpoint, instead of the one it records")
    p.add_argument("--manifest", required=True, nargs="+", help="the manifest(s) the checkpoint was trained on")
    held = p.add_mutually_exclusive_group()
    held.add_argument("--held-out-fold", type=int, default=-1, help="a fold training left out (default: none)")
    held.add_argument("--held-out-split", help="an official split training left out, e.g. eval (Gen3DHF)")
    p.add_argument("--components", type=int, default=32, help="principal axes modelled (default 32)")
    p.add_argument("--quantile", type=float, default=0.99,
                   help="held-out quantile used as the threshold (default 0.99: about 1%% of inputs like the "
                        "training videos are flagged)")
    p.add_argument("--folds", type=int, default=5, help="folds for the held-out scores (default 5)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per forward pass (default 4)")
    p.add_argument("--device", help="torch device (default: cuda if available)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoint's existing ood.safetensors (refused otherwise)")
    p.set_defaults(func=_calibrate_ood)

    from .report import command as report_command  # argparse only: the report's libraries load when it runs

    report_command.add_parser(sub)
    return parser


def _model_options(p: argparse.ArgumentParser, untrained: bool) -> None:
    """The options that pick and load the assessor (`score`, `evaluate`)."""
    from .model.configuration import ATTENTIONS, DTYPES

    p.add_argument("--model", help="checkpoint folder (default: the embedded synthetic-data demo checkpoint)")
    p.add_argument("--base", help="base Qwen2.5-VL folder (or preset:NAME) for the checkpoint, instead of the one it "
                                  "records; it must be the base the checkpoint was trained on (checked first)")
    if untrained:
        p.add_argument("--untrained", action="store_true",
                       help="with --base and no --model: fresh, untrained heads (for timing and plumbing; the "
                            "scores mean nothing)")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="precision of the base (default auto: bfloat16 on a GPU, float32 on a CPU); heads stay float32")
    p.add_argument("--attention", choices=ATTENTIONS, default="sdpa",
                   help="transformers' attention implementation (default sdpa; flash_attention_2 needs flash-attn)")
    p.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)")


# Options whose values may start with a dash (an axis: --front -y); argparse would read "-y" as an option.
_NEGATIVE_VALUED = ("--front",)


def _join_negative_axes(argv: list[str]) -> list[str]:
    """``--front -y`` -> ``--front=-y``, so the form `render -h` shows parses."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] in _NEGATIVE_VALUED and i + 1 < len(argv) and argv[i + 1][:1] == "-" and len(argv[i + 1]) == 2:
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _quiet_third_parties(verbose: bool, quiet: bool) -> None:
    """What users see is lmmeval's own output: libraries' deprecation notices (FutureWarning,
    DeprecationWarning: for developers, -v shows them) never, and with -q neither transformers'
    loading bars nor its warnings."""
    if not verbose:
        for category in (FutureWarning, DeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
    if quiet:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"  # read when transformers is first imported
        if "transformers" in sys.modules:  # already imported (main() called in-process)
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()


_terminated = threading.Event()


def _terminate_as_interrupt(signum, frame) -> None:
    """SIGTERM (a job scheduler, `kill`) stops a command the way Ctrl-C does: the same clean-up runs
    (worker processes ended, partial files removed, finished rows and videos kept). The flag is kept
    too: an exception raised while Python runs a finaliser is printed and dropped ("Exception
    ignored in ..."), and the command must still end as interrupted, not as a success."""
    _terminated.set()
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = _join_negative_axes(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    args.command_line = "lmmeval " + shlex.join(argv)  # recorded by the reports a command writes
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    # Signal handlers can only be set from the main thread; the previous one (and the warning
    # filters) are put back afterwards, so that main() called in-process (tests, notebooks) leaves
    # its caller as it was.
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt) if on_main_thread else None
    _terminated.clear()
    try:
        with warnings.catch_warnings():
            _quiet_third_parties(verbose=args.verbose, quiet=getattr(args, "quiet", False))
            status = args.func(args)
        if _terminated.is_set():  # the signal's KeyboardInterrupt was swallowed on the way
            raise KeyboardInterrupt("signal 15")
        return status
    except (ValueError, OSError, ImportError) as err:  # a user's input, a file, a missing optional package
        print(f"lmmeval {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lmmeval {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
