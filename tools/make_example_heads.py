"""Write a few small, hand-made 3D heads (vertex-coloured .ply, y up, facing +z) to try `lmmeval render`
and mesh scoring without downloading anything: a clean head and three copies, each with one kind of
distortion the Gen3DHF annotators describe (rough geometry, blotchy colour, a coarse low-poly mesh).

    python tools/make_example_heads.py heads/
    lmmeval render heads/ --out renders/ --size 256 --fps 15

They are stand-ins for a generator's output, not faces anyone would mistake for real ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SKIN = np.array([214, 176, 150])
HAIR = np.array([60, 42, 30])
LIPS = np.array([170, 80, 80])
EYE = np.array([35, 30, 30])


def head(subdivisions: int = 4):
    """An egg-shaped head with a nose, brow, eyes, lips and hair; returns a trimesh.Trimesh."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    v = mesh.vertices.copy()  # (n, 3): x right-to-left of the viewer, y up, z towards the viewer
    v[:, 1] *= 1.28  # taller than wide
    v[:, 2] *= 1.08
    front = np.clip(v[:, 2], 0, None)
    # The nose: a bump on the front, centred a little below the middle.
    nose = np.exp(-((v[:, 0] / 0.16) ** 2 + ((v[:, 1] + 0.05) / 0.32) ** 2)) * front
    v[:, 2] += 0.28 * nose
    # Brow ridge and chin.
    v[:, 2] += 0.08 * np.exp(-(((v[:, 1] - 0.35) / 0.12) ** 2)) * front
    v[:, 2] += 0.06 * np.exp(-((v[:, 0] / 0.3) ** 2 + ((v[:, 1] + 0.95) / 0.15) ** 2)) * front
    mesh.vertices = v

    colors = np.tile(SKIN, (len(v), 1)).astype(float)
    u = mesh.vertices
    hair = (u[:, 1] > 0.55) | ((u[:, 2] < -0.2) & (u[:, 1] > -0.3))
    colors[hair] = HAIR
    for side in (-1, 1):
        eye = ((u[:, 0] - side * 0.33) / 0.12) ** 2 + ((u[:, 1] - 0.18) / 0.07) ** 2 < 1
        colors[eye & (u[:, 2] > 0)] = EYE
    lips = (u[:, 0] / 0.25) ** 2 + ((u[:, 1] + 0.55) / 0.06) ** 2 < 1
    colors[lips & (u[:, 2] > 0)] = LIPS
    mesh.visual.vertex_colors = np.column_stack([colors.clip(0, 255), np.full(len(v), 255)]).astype(np.uint8)
    return mesh


def rough(mesh, rng: np.random.Generator, amount: float = 0.035):
    """Geometric noise: every vertex moved along its normal (lumpy, cratered skin)."""
    out = mesh.copy()
    out.vertices = out.vertices + out.vertex_normals * rng.normal(0, amount, (len(out.vertices), 1))
    return out


def blotchy(mesh, rng: np.random.Generator):
    """Colour noise in patches: a texture with stains and shifted hues."""
    out = mesh.copy()
    colors = out.visual.vertex_colors[:, :3].astype(float)
    centres = rng.normal(size=(12, 3))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    direction = out.vertices / np.linalg.norm(out.vertices, axis=1, keepdims=True)
    for centre in centres:
        weight = np.exp(-np.sum((direction - centre) ** 2, axis=1) / 0.05)[:, None]
        colors = colors * (1 - weight) + rng.uniform(40, 255, 3) * weight
    out.visual.vertex_colors = np.column_stack([colors.clip(0, 255), np.full(len(colors), 255)]).astype(np.uint8)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="folder to write the .ply heads into (created)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import trimesh  # noqa: F401
    except ImportError:
        print("error: needs trimesh: pip install 'lmmeval[render]'", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clean = head()
    heads = {"clean": clean, "rough": rough(clean, rng), "blotchy": blotchy(clean, rng), "low_poly": head(2)}
    for name, mesh in heads.items():
        mesh.export(out / f"head_{name}.ply")
        print(out / f"head_{name}.ply")
    return 0


if __name__ == "__main__":
    sys.exit(main())
