"""Procedural heads and the eight distortion types, applied in 3D.

A head is a list of ellipsoids (skull, face, jaw, nose, eyes, brows, lips, ears,
hair, neck, shoulders, optional earrings or hat), with shape, skin, hair and
lighting-relevant colours drawn from a seed. A distortion edits the primitives
(moves, deforms, recolours or adds some), so it moves with the head through the
orbit, and returns the 3D point an annotator would mark: the centre of the
distorted region on the surface. Image-space effects (blur, exposure, grain) have
no 3D edit; they are applied per frame by the caller and marked at the face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..labels import DISTORTIONS
from .render import Ellipsoid, rotation

DISTORTION_TYPES = DISTORTIONS[:-1]  # the eight real types; "No Distortion" is their absence
EYE, MOUTH, HAIR, FEATURE, STRUCTURE, SEAM, BLUR, ACCESSORY = DISTORTION_TYPES

SKIN_TONES = np.array(
    [(0.96, 0.80, 0.69), (0.90, 0.72, 0.60), (0.80, 0.60, 0.46), (0.66, 0.47, 0.34), (0.47, 0.32, 0.22), (0.36, 0.24, 0.16)],
    dtype=np.float32,
)
HAIR_COLORS = np.array(
    [(0.08, 0.06, 0.05), (0.25, 0.16, 0.09), (0.45, 0.30, 0.16), (0.75, 0.60, 0.35), (0.55, 0.20, 0.08), (0.6, 0.6, 0.6)],
    dtype=np.float32,
)
IRIS_COLORS = np.array([(0.25, 0.35, 0.55), (0.35, 0.22, 0.10), (0.25, 0.40, 0.25), (0.15, 0.10, 0.06)], dtype=np.float32)
CLOTH_COLORS = np.array([(0.2, 0.3, 0.55), (0.6, 0.15, 0.15), (0.2, 0.45, 0.3), (0.85, 0.85, 0.82), (0.15, 0.15, 0.17)], dtype=np.float32)


@dataclass
class Head:
    prims: list[Ellipsoid]
    seam: dict | None = None  # overlap/blending seam, applied while shading
    image_effects: dict = field(default_factory=dict)  # blur / exposure / grain, applied per frame

    def get(self, tag: str) -> Ellipsoid:
        for prim in self.prims:
            if prim.tag == tag:
                return prim
        raise KeyError(tag)

    def has(self, tag: str) -> bool:
        return any(p.tag == tag for p in self.prims)


def build_head(rng: np.random.Generator) -> Head:
    """A random, undistorted head and shoulders."""
    u = rng.uniform
    width, height, depth = u(0.74, 0.86), u(0.92, 1.06), u(0.86, 0.98)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * u(0.95, 1.05)
    hair = HAIR_COLORS[rng.integers(len(HAIR_COLORS))]
    skin_p = {"color": skin}
    eye_y, eye_x = u(0.08, 0.16), u(0.27, 0.33)
    nose_len = u(0.17, 0.25)
    prims = [
        Ellipsoid("skull", (0, 0.12, -0.06), (width, height, depth), "skin", params=skin_p),
        Ellipsoid("face", (0, -0.30, 0.16), (width * 0.80, 0.62, 0.62), "skin", params=skin_p),
        Ellipsoid("jaw", (0, -0.58, 0.22), (width * 0.55, 0.32, 0.45), "skin", params=skin_p),
        Ellipsoid("nose", (0, -0.12, 0.78), (0.10, nose_len, 0.15), "skin", rot=rotation(pitch=-0.25), params=skin_p),
        Ellipsoid("left_ear", (width * 0.98, -0.02, -0.02), (0.07, 0.24, 0.15), "skin", params=skin_p),
        Ellipsoid("right_ear", (-width * 0.98, -0.02, -0.02), (0.07, 0.24, 0.15), "skin", params=skin_p),
        Ellipsoid("neck", (0, -0.95, -0.08), (0.36, 0.5, 0.34), "skin", params=skin_p),
        Ellipsoid("torso", (0, -1.72, -0.1), (u(1.15, 1.4), 0.58, 0.62), "cloth", params={"color": CLOTH_COLORS[rng.integers(len(CLOTH_COLORS))]}),
        Ellipsoid("lips", (0, -0.45, 0.70), (u(0.18, 0.24), u(0.05, 0.07), 0.08), "lips", params={"color": skin * np.array([1.0, 0.62, 0.62])}),
    ]
    iris = IRIS_COLORS[rng.integers(len(IRIS_COLORS))]
    for side, sign in (("left", 1), ("right", -1)):
        prims.append(Ellipsoid(f"{side}_eye", (sign * eye_x, eye_y, 0.66), (0.115, 0.115, 0.115), "eye", params={"iris": iris}))
        prims.append(
            Ellipsoid(f"{side}_brow", (sign * eye_x, eye_y + 0.2, 0.72), (0.15, 0.03, 0.06), "hair",
                      rot=rotation(roll=sign * -0.12), params={"color": hair * 0.9})
        )
    style = rng.choice(["short", "long", "bald", "bun"], p=[0.45, 0.3, 0.1, 0.15])
    if style != "bald":
        # A cap slightly larger than the skull, cut open at the front-bottom for the face.
        cut = (np.array([0.0, 0.75, -0.66]), u(-0.35, -0.15))
        prims.append(Ellipsoid("hair", (0, 0.14, -0.08), (width * 1.07, height * 1.06, depth * 1.07), "hair", clip=cut, params={"color": hair}))
    if style == "long":
        prims.append(Ellipsoid("hair_back", (0, -0.45, -0.45), (width * 0.95, 0.8, 0.45), "hair", params={"color": hair}))
    if style == "bun":
        prims.append(Ellipsoid("hair_bun", (0, 0.85, -0.6), (0.28, 0.26, 0.26), "hair", params={"color": hair}))
    if rng.random() < 0.3:
        for side, sign in (("left", 1), ("right", -1)):
            prims.append(Ellipsoid(f"{side}_earring", (sign * width * 1.0, -0.32, 0.02), (0.045, 0.045, 0.045), "metal", params={"color": (0.9, 0.75, 0.3)}))
    if rng.random() < 0.15:
        hat = CLOTH_COLORS[rng.integers(len(CLOTH_COLORS))]
        prims.append(Ellipsoid("hat", (0, 0.32, -0.06), (width * 1.12, height * 0.95, depth * 1.12), "cloth", clip=(np.array([0, 1.0, 0]), 0.25), params={"color": hat}))
    return Head(prims)


def _random_unit(rng: np.random.Generator, y_range=(-0.3, 0.9), z_min=-0.6) -> np.ndarray:
    """A random direction on the upper head, not pointing far backwards (so the orbit sees it)."""
    while True:
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        if y_range[0] <= v[1] <= y_range[1] and v[2] >= z_min:
            return v.astype(np.float32)


def apply_distortion(head: Head, kind: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Edit ``head`` in place with one distortion; return the 3D point to mark."""
    s = float(severity)
    if kind == EYE:
        side = rng.choice(["left", "right"])
        eye = head.get(f"{side}_eye")
        sign = 1 if side == "left" else -1
        eye.center = eye.center + np.array([sign * 0.07 * s, -0.14 * s, 0.02], dtype=np.float32)
        eye.radii = eye.radii * np.array([1 + 0.3 * s, 1 + 0.9 * s, 1.0], dtype=np.float32)  # melts downwards
        eye.params = dict(eye.params, iris=np.array([0.75, 0.12, 0.1]) * s + eye.params["iris"] * (1 - s), iris_cos=0.8 - 0.25 * s)
        return eye.surface_point((0, 0, 1))
    if kind == MOUTH:
        lips = head.get("lips")
        lips.rot = rotation(roll=rng.choice([-1, 1]) * 0.5 * s)
        lips.center = lips.center + np.array([rng.choice([-1, 1]) * 0.1 * s, -0.03 * s, 0], dtype=np.float32)
        lips.radii = lips.radii * np.array([1 + 0.35 * s, 1 + 1.2 * s, 1.0], dtype=np.float32)
        lips.params = dict(lips.params, smear=0.4 + 0.6 * s, slit=0.12 + 0.2 * s)
        return lips.surface_point((0, 0, 1))
    if kind == HAIR:
        base = head.get("hair") if head.has("hair") else head.get("skull")
        color = base.params.get("color", (0.2, 0.15, 0.1))
        if head.has("hair"):
            base.params = dict(base.params, patch_strength=0.4 + 0.6 * s, patch_seed=float(rng.uniform(0, 6)),
                               patch_color=tuple(rng.uniform(0.3, 1.0, size=3)))
        direction = _random_unit(rng, y_range=(0.2, 0.9), z_min=-0.2)
        anchor = base.surface_point(direction)
        outward = base.rot @ (direction / base.radii)
        outward /= np.linalg.norm(outward)
        clumps = []
        for k in range(1 + int(round(3 * s))):  # detached clumps floating off the scalp
            jitter = rng.normal(scale=0.08, size=3).astype(np.float32)
            # Clump 0 floats farthest out, the others closer to the scalp, so the
            # mark on clump 0's outer side is not hidden behind its neighbours.
            center = anchor + outward * (0.1 + 0.25 * s) * (1.0 if k == 0 else 0.5) + jitter * k
            clumps.append(Ellipsoid(f"hair_clump{k}", center, rng.uniform(0.06, 0.1 + 0.12 * s, size=3), "hair",
                                    params={"color": color}))
        head.prims.extend(clumps)
        return clumps[0].surface_point(outward)  # the first clump's outer side, where a viewer sees it
    if kind == FEATURE:
        nose = head.get("nose")
        sign = rng.choice([-1, 1])
        nose.center = nose.center + np.array([sign * 0.16 * s, 0.04 * s, 0], dtype=np.float32)
        nose.rot = rotation(pitch=-0.25, roll=sign * 0.6 * s, yaw=sign * 0.3 * s)
        brow = head.get(f"{'left' if sign > 0 else 'right'}_brow")
        head.prims.append(Ellipsoid("extra_brow", brow.center + np.array([0, 0.07 + 0.08 * s, 0.0], dtype=np.float32),
                                    brow.radii, "hair", rot=rotation(roll=0.5 * s), params=brow.params))
        return nose.surface_point((0, 0, 1))
    if kind == STRUCTURE:
        skull = head.get("skull")
        direction = _random_unit(rng, y_range=(-0.1, 0.8), z_min=-0.3)
        direction[2] = min(direction[2], 0.5)  # not on the face itself
        direction /= np.linalg.norm(direction)
        anchor = skull.surface_point(direction)
        r = 0.22 + 0.4 * s
        center = anchor - direction * r * 0.35
        head.prims.append(Ellipsoid("bulge", center, (r, r * rng.uniform(0.7, 1.0), r), "skin", params=skull.params))
        # Hair over the bulge would hide the malformation: the bulge breaks through.
        return center + direction * r
    if kind == SEAM:
        normal = _random_unit(rng, y_range=(-0.6, 0.6), z_min=-1.0)
        normal[2] *= 0.3  # mostly vertical or horizontal cuts across the face
        normal /= np.linalg.norm(normal)
        face = head.get("face")
        point = face.surface_point(np.array([normal[0] * 0.3, normal[1] * 0.3, 1.0]))
        head.seam = {"normal": normal, "point": point, "width": 0.015 + 0.03 * s,
                     "shift": 1 + np.array([0.35, -0.25, -0.2]) * s * rng.choice([-1, 1]),
                     "band_color": rng.uniform(0, 1, size=3)}
        return point
    if kind == BLUR:
        # Image-space: blur, exposure and grain are strong together as severity grows.
        head.image_effects = {"blur_sigma": 1.0 + 3.5 * s, "gain": 1.0 + rng.choice([-0.4, 0.5]) * s, "grain": 0.01 + 0.03 * s}
        return head.get("nose").surface_point((0, 0, 1))
    if kind == ACCESSORY:
        if head.has("left_earring") and rng.random() < 0.5:
            ring = head.get("left_earring")
            ring.center = ring.center + np.array([0.15 + 0.2 * s, -0.1 - 0.2 * s, 0.2 * s], dtype=np.float32)
            ring.radii = ring.radii * (1 + 2.5 * s)
            return ring.surface_point((1, 0, 0.5))
        torso = head.get("torso")
        torso.params = dict(torso.params, glitch=0.4 + 0.6 * s)
        collar = Ellipsoid("collar", (0, -1.22, 0.12), (0.52, 0.14, 0.42), "cloth", rot=rotation(roll=rng.uniform(-0.4, 0.4) * s),
                           params={"color": rng.uniform(0.2, 0.9, size=3), "glitch": 0.5 + 0.5 * s})
        head.prims.append(collar)
        return collar.surface_point((0, 0.3, 1))
    raise ValueError(f"unknown distortion type {kind!r}; expected one of {DISTORTION_TYPES}")
