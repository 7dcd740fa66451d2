"""A simulated subjective study over the rendered videos (paper section 3.2).

Ratings: 24 subjects rate every video on two 0-5 sliders, quality and
authenticity. Each subject has a bias, a scale and a noise level; three of them
are unreliable (they answer mostly at random extremes), so that the BT.500
screening in ``compute_mos`` has something to reject and 21 reliable raters remain,
as in the paper. Quality and authenticity respond differently to each distortion
type (blur and seams cost quality; broken anatomy costs authenticity).

Marks: three annotators each notice every distortion with a probability growing
with its severity, click red dots near its centre on the snapshots at -45, 0 and
45 degrees where it is visible, and type a description with varied wording and
typos.
"""

from __future__ import annotations

import numpy as np

from ..orbit import SNAPSHOT_VIEWS
from .descriptions import describe
from .head import ACCESSORY, BLUR, EYE, FEATURE, HAIR, MOUTH, SEAM, STRUCTURE

N_SUBJECTS = 24
N_UNRELIABLE = 3
N_ANNOTATORS = 3

# MOS points lost at full severity, per dimension (the study's ground truth).
QUALITY_COST = {EYE: 12, MOUTH: 10, HAIR: 12, FEATURE: 11, STRUCTURE: 10, SEAM: 20, BLUR: 30, ACCESSORY: 10}
AUTHENTICITY_COST = {EYE: 27, MOUTH: 23, HAIR: 10, FEATURE: 22, STRUCTURE: 30, SEAM: 14, BLUR: 8, ACCESSORY: 9}
BASE_SCORE = 80.0
# Global softness costs quality (the paper's quality covers texture and detail):
# points per unit of (1 - internal render scale) and of (1 - texture detail).
RENDER_SCALE_COST = 45.0
DETAIL_COST = 12.0


def latent_scores(distortions: dict[str, float], profile, render_scale: float, detail: float,
                  rng: np.random.Generator) -> dict[str, float]:
    """The 'true' perceived quality and authenticity (0-100) of one sample."""
    quality = (BASE_SCORE + profile.quality_offset - RENDER_SCALE_COST * (1 - render_scale)
               - DETAIL_COST * (1 - detail))
    authenticity = BASE_SCORE + profile.authenticity_offset
    for kind, severity in distortions.items():
        quality -= QUALITY_COST[kind] * severity
        authenticity -= AUTHENTICITY_COST[kind] * severity
    # Content the profile does not explain (identity, pose, lighting taste).
    quality += rng.normal(0, 2.5)
    authenticity += rng.normal(0, 2.5)
    return {"quality": float(np.clip(quality, 2, 98)), "authenticity": float(np.clip(authenticity, 2, 98))}


def simulate_ratings(latents: dict[str, dict[str, float]], rng: np.random.Generator) -> tuple[list[tuple], list[str]]:
    """(subject, video, dimension, rating) rows for every subject, video and dimension.

    Returns the rows and the ids of the unreliable subjects (for tests and reports).
    """
    videos = sorted(latents)
    subjects = [f"S{i + 1:02d}" for i in range(N_SUBJECTS)]
    unreliable = set(rng.choice(subjects, size=N_UNRELIABLE, replace=False).tolist())
    rows = []
    for subject in subjects:
        bias, scale, noise = rng.normal(0, 0.3), rng.uniform(0.8, 1.25), rng.uniform(0.2, 0.45)
        for dimension in ("quality", "authenticity"):
            for video in videos:
                latent = latents[video][dimension]
                # 0-100 latent -> 0-5 slider around the middle, with this subject's habits;
                # an unreliable subject is far noisier and sometimes answers at random.
                rating = 2.5 + scale * (latent - 50) / 20 + bias + rng.normal(0, noise)
                if subject in unreliable:
                    rating = rng.uniform(0.5, 4.5) if rng.random() < 0.5 else rating + rng.normal(0, 1.2)
                rows.append((subject, video, dimension, round(float(np.clip(rating, 0, 5)), 2)))
    return rows, sorted(unreliable)


def simulate_marks(video: str, distortions: list[dict], size: int, rng: np.random.Generator) -> list[dict]:
    """marks.jsonl records (one per annotator and snapshot view) for one video.

    ``distortions``: [{"type", "severity", "views": {view: [x, y] or None}}] where
    ``views`` holds the distortion centre's pixel position in each snapshot, or None
    where it is hidden.
    """
    records = []
    for a in range(N_ANNOTATORS):
        noticed = [d for d in distortions if rng.random() < min(0.97, 0.6 + 0.45 * d["severity"])]
        text = describe([d["type"] for d in noticed], rng)
        for view in SNAPSHOT_VIEWS:
            points = []
            for d in noticed:
                centre = d["views"].get(str(view))
                if centre is None:
                    continue
                for _ in range(1 + int(rng.random() < 0.3)):  # some annotators click twice
                    x, y = np.asarray(centre) + rng.normal(0, 0.02 * size, size=2)
                    points.append([round(float(np.clip(x, 0, size - 1)), 1), round(float(np.clip(y, 0, size - 1)), 1)])
            records.append({"video": video, "annotator": f"A{a + 1}", "view": view, "points": points,
                            "description": text, "width": size, "height": size})
    return records
