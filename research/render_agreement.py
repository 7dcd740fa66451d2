"""Do the two ways `lmmeval score` scores a 3D mesh agree? Rerunnable measurement for docs/benchmarks.md.

By default `lmmeval score` renders only the frames the model reads of a mesh's protocol video, at
about the size it reads them (``lmmeval.render.sampled``); ``--keep-renders`` renders the whole
video (H.264) and scores that. This scores a set of meshes both ways with one assessor and reports,
per mesh and per dimension, the difference of the MOS scores and whether the levels agree.

The meshes: the four example heads of tools/make_example_heads.py, and, made here, a vertex-coloured
egg with a red patch, a textured .obj of the example head (with its .mtl and texture), a textured
.glb, and the example head turned to z up and facing -y (scored with --up z --front -y).

    python -m research.render_agreement                      # the paper's protocol, the demo checkpoint
    python -m research.render_agreement --size 128 --fps 15  # quicker, smaller

Exits 1 when a mean |difference| exceeds --tolerance (MOS points) or a level differs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"  # make_example_heads.py


def make_meshes(folder: Path) -> dict[str, list[Path]]:
    """{"y": meshes y up facing +z, "z": meshes z up facing -y}, written into ``folder``."""
    import trimesh
    from PIL import Image

    sys.path.insert(0, str(TOOLS))
    from make_example_heads import main as make_heads

    make_heads([str(folder / "heads")])
    y_up = sorted((folder / "heads").glob("*.ply"))
    clean = trimesh.load(folder / "heads" / "head_clean.ply", process=False)

    egg = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    egg.vertices[:, 1] *= 1.3
    colours = np.tile([205, 170, 150, 255], (len(egg.vertices), 1)).astype(np.uint8)
    colours[egg.vertices[:, 0] < -0.5] = [200, 30, 30, 255]
    egg.visual.vertex_colors = colours
    (folder / "egg").mkdir()
    egg.export(folder / "egg" / "egg_coloured.ply")

    # A texture from the head's vertex colours, painted at UVs from a cylindrical projection.
    v = clean.vertices
    uv = np.column_stack([0.5 + np.arctan2(v[:, 0], v[:, 2]) / (2 * np.pi),
                          (v[:, 1] - v[:, 1].min()) / np.ptp(v[:, 1])])
    side = 256
    texture = np.zeros((side, side, 3), np.uint8)
    texture[:] = (214, 176, 150)
    px = np.clip((uv * (side - 1)).round().astype(int), 0, side - 1)
    for dx in range(-3, 4):  # splat each vertex colour over a few texels
        for dy in range(-3, 4):
            texture[np.clip(side - 1 - px[:, 1] + dy, 0, side - 1), np.clip(px[:, 0] + dx, 0, side - 1)] = \
                clean.visual.vertex_colors[:, :3]
    textured = trimesh.Trimesh(v, clean.faces, process=False)
    textured.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(texture))
    (folder / "obj").mkdir()
    textured.export(folder / "obj" / "head_textured.obj")
    (folder / "glb").mkdir()
    textured.export(folder / "glb" / "head_textured.glb")

    turned = clean.copy()
    turned.vertices = np.column_stack([v[:, 0], -v[:, 2], v[:, 1]])  # y up -> z up, +z front -> -y front
    (folder / "zup").mkdir()
    turned.export(folder / "zup" / "head_z_up.ply")
    return {"y": [*y_up, folder / "egg" / "egg_coloured.ply", folder / "obj" / "head_textured.obj",
                  folder / "glb" / "head_textured.glb"],
            "z": [folder / "zup" / "head_z_up.ply"]}


def score_both(assessor, meshes: list[Path], config, work: Path, tag: str) -> tuple[dict, dict, float, float]:
    """Rows by mesh of the sampled path and of --keep-renders, and each path's seconds. Each row also
    gets ``read_frames``: the indices of the protocol video's frames the model read (the sampled
    path's, and those the loader picks from the kept video)."""
    import json

    from lmmeval.inference.scoring import score_files
    from lmmeval.io.media import load_visual, sample_video_frames
    from lmmeval.render.sampled import protocol_timestamps

    sampling, geometry = assessor.config.sampling, assessor.parts.geometry
    rows, seconds = {}, {}
    for keep in (False, True):
        out = work / f"{tag}-{'keep' if keep else 'sampled'}.jsonl"
        start = time.perf_counter()
        score_files(assessor, meshes, out, render=config, keep_renders=keep, progress=False, workers=0,
                    batch_size=4, render_cache=work / f"{tag}.renders")
        seconds[keep] = time.perf_counter() - start
        rows[keep] = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    read = sample_video_frames(protocol_timestamps(config), sampling, geometry)[0]
    for name, row in rows[True].items():
        rows[False][name]["read_frames"] = read
        video = next((n.removeprefix("rendered to ").removesuffix(" by lmmeval render") for n in row["notes"]
                      if n.startswith("rendered to ")), None)
        row["read_frames"] = load_visual(video, sampling, geometry).frame_indices if video else None
    return rows[False], rows[True], seconds[False], seconds[True]


def main(argv: list[str] | None = None) -> int:
    from lmmeval.render import RenderConfig, default_workers

    d = RenderConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="checkpoint folder (default: the embedded demo checkpoint)")
    parser.add_argument("--size", type=int, default=d.size)
    parser.add_argument("--fps", type=int, default=d.fps)
    parser.add_argument("--seconds", type=float, default=d.seconds)
    parser.add_argument("--spp", type=int, default=d.spp)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--tolerance", type=float, default=1.0, help="mean |difference| allowed, MOS points")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)

    from lmmeval.inference.assessor import Assessor
    from lmmeval.labels import DIMENSIONS

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        meshes = make_meshes(work / "meshes")
        assessor = Assessor.from_pretrained(args.model, device="cpu")
        common = dict(size=args.size, fps=args.fps, seconds=args.seconds, spp=args.spp, workers=args.workers)
        sampled, kept, times = {}, {}, [0.0, 0.0]
        for up, front in (("y", "+z"), ("z", "-y")):
            a, b, ta, tb = score_both(assessor, meshes[up], RenderConfig(**common, up=up, front=front), work, up)
            sampled.update(a)
            kept.update(b)
            times[0] += ta
            times[1] += tb

    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    print(f"# {len(sampled)} meshes at {args.size}x{args.size}, {args.fps} fps, {args.seconds:g} s, {args.spp} spp; "
          f"model {args.model or 'demo checkpoint'}; commit {commit or '?'}")
    print(f"| mesh | {' | '.join(f'{d} sampled / full (diff)' for d in DIMENSIONS)} | levels agree | frames |")
    print("|---|" + "---|" * (len(DIMENSIONS) + 2))
    failed, diffs = [], {d: [] for d in DIMENSIONS}
    for name in sampled:
        s, k = sampled[name], kept[name]
        if s["error"] or k["error"]:
            failed.append(f"{name}: {s['error'] or k['error']}")
            continue
        same = all(s[f"{d}_level"] == k[f"{d}_level"] for d in DIMENSIONS)
        cells = []
        for d in DIMENSIONS:
            diffs[d].append(s[d] - k[d])
            cells.append(f"{s[d]:.2f} / {k[d]:.2f} ({s[d] - k[d]:+.2f})")
        frames = "same" if s["read_frames"] == k["read_frames"] else "DIFFER"
        print(f"| {name} | {' | '.join(cells)} | {'yes' if same else 'NO'} | {frames} |")
        if not same:
            failed.append(f"{name}: levels differ")
        if frames != "same":
            failed.append(f"{name}: other frames read")
    for d, values in diffs.items():
        values = np.abs(values)
        print(f"{d}: mean |diff| {values.mean():.3f}, max {values.max():.3f} MOS points")
        if values.mean() > args.tolerance:
            failed.append(f"{d}: mean |diff| {values.mean():.3f} > {args.tolerance}")
    print(f"seconds, all meshes: sampled {times[0]:.1f}, --keep-renders {times[1]:.1f}")
    for line in failed:
        print(f"DISAGREE: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
