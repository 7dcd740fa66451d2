"""Ten simulated 3D-face "generators": which distortions each tends to produce, and how badly.

Like the paper's Fig. 3b, every generator has its own distortion profile; like its
Fig. 2b, some are sharp but structurally wrong (good quality, poor authenticity)
and some soft but plausible (the reverse). ``render_scale`` < 1 means the
generator's output is rendered at a lower internal resolution and upsampled, which
softens every frame: a global quality cue that a sharpness statistic can see.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .head import ACCESSORY, BLUR, EYE, FEATURE, HAIR, MOUTH, SEAM, STRUCTURE


@dataclass(frozen=True)
class GeneratorProfile:
    name: str
    description: str
    render_scale: float  # internal resolution / output resolution
    detail: float  # amplitude of fine skin/hair texture
    probabilities: dict[str, float]  # chance of each distortion type per sample
    severity: tuple[float, float]  # severity range, drawn uniformly
    quality_offset: float  # generator-level shift of the latent quality (MOS points)
    authenticity_offset: float


def _p(eye=0.1, mouth=0.1, hair=0.1, feature=0.15, structure=0.1, seam=0.1, blur=0.1, accessory=0.05):
    return {EYE: eye, MOUTH: mouth, HAIR: hair, FEATURE: feature, STRUCTURE: structure, SEAM: seam, BLUR: blur, ACCESSORY: accessory}


GENERATORS: tuple[GeneratorProfile, ...] = (
    GeneratorProfile("G01-sharp-tri-plane", "sharp textures, frequent head-structure and feature errors",
                     1.0, 1.0, _p(eye=0.25, feature=0.4, structure=0.45, seam=0.15, blur=0.03), (0.3, 1.0), 5.0, -6.0),
    GeneratorProfile("G02-soft-panoramic", "soft, low-detail output that is anatomically plausible",
                     0.5, 0.5, _p(eye=0.05, mouth=0.05, hair=0.2, feature=0.1, structure=0.03, seam=0.05, blur=0.35), (0.2, 0.8), -6.0, 5.0),
    GeneratorProfile("G03-grainy-diffusion", "grain, exposure problems and texture seams",
                     0.85, 0.9, _p(blur=0.6, seam=0.35, feature=0.2), (0.3, 1.0), -2.0, 0.0),
    GeneratorProfile("G04-hair-field", "detached or discoloured hair, accessory glitches",
                     0.9, 1.0, _p(hair=0.65, accessory=0.3, feature=0.15), (0.3, 1.0), 0.0, -1.0),
    GeneratorProfile("G05-expression-gan", "eye and mouth failures",
                     0.8, 0.9, _p(eye=0.5, mouth=0.5, feature=0.25), (0.3, 1.0), 0.0, -3.0),
    GeneratorProfile("G06-refined-sdf", "mostly clean, occasional mild artefacts",
                     1.0, 1.0, _p(eye=0.06, mouth=0.06, hair=0.06, feature=0.1, structure=0.05, seam=0.05, blur=0.04, accessory=0.04), (0.2, 0.6), 6.0, 6.0),
    GeneratorProfile("G07-multi-view-fusion", "blending seams where views were fused",
                     0.9, 0.9, _p(seam=0.6, feature=0.3, structure=0.15), (0.3, 1.0), -1.0, -2.0),
    GeneratorProfile("G08-avatar-cloth", "clothing and accessory artefacts, hair errors",
                     0.9, 1.0, _p(accessory=0.6, hair=0.3, feature=0.15), (0.3, 1.0), 1.0, 0.0),
    GeneratorProfile("G09-low-res-occupancy", "low internal resolution, facial feature errors",
                     0.4, 0.6, _p(blur=0.3, feature=0.4, eye=0.15), (0.3, 1.0), -8.0, -2.0),
    GeneratorProfile("G10-generalist", "a bit of everything",
                     0.7, 0.8, _p(eye=0.2, mouth=0.2, hair=0.2, feature=0.3, structure=0.2, seam=0.2, blur=0.2, accessory=0.15), (0.2, 0.9), 0.0, 0.0),
)


def draw_distortions(profile: GeneratorProfile, rng: np.random.Generator) -> dict[str, float]:
    """The distortions (type -> severity in (0, 1]) of one sample of this generator."""
    lo, hi = profile.severity
    return {kind: float(rng.uniform(lo, hi)) for kind, p in profile.probabilities.items() if rng.random() < p}
