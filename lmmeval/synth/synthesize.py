"""`lmmeval synth`: render a Gen3DHF-style raw dataset and simulate its subjective study.

Output (the shape of the real study's raw data, so ``lmmeval prepare`` treats both alike):
    videos/<id>.mp4        H.264 turntable renders (180 deg orbit)
    snapshots/<id>_<view>.png  the -45/0/45 deg stills annotators marked
    ratings.csv            subject,video,dimension,rating   (0-5 sliders)
    marks.jsonl            video, annotator, view, points [[x, y], ...], description, width, height
    generators.csv         video,generator
    truth.jsonl            what the simulator knows and a real study would not:
                           applied distortions, severities, latent scores (for tests and analysis)
    synth_config.json      the command's arguments and the generator profiles
"""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..io.media import write_video
from .generators import GENERATORS, draw_distortions
from .head import BLUR, Head, apply_distortion, build_head
from ..orbit import SNAPSHOT_VIEWS, orbit_azimuths
from .render import is_visible, orbit_camera, render_view
from .study import latent_scores, simulate_marks, simulate_ratings


@dataclass(frozen=True)
class SynthConfig:
    n: int = 200  # videos in total, spread evenly over the ten generators
    seed: int = 0
    size: int = 512  # frame height = width, pixels (the paper: 512)
    fps: int = 60  # the paper: 60
    seconds: float = 4.0  # the paper: 4 s
    sweep_deg: float = 180.0  # the paper: a 180 deg orbit around the head
    workers: int = 1  # rendering processes
    # Grain drawn on a grid of this many pixels a side and resized to the frame, so that a frame
    # shrunk to that size shows the grain's full amplitude whatever the render size. None (the
    # benchmark's setting): one grain value per frame pixel, which a downscale averages away.
    grain_size: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16 (H.264), got {self.size}")
        if self.fps < 1 or self.seconds <= 0:
            raise ValueError(f"fps must be >= 1 and seconds > 0, got fps={self.fps}, seconds={self.seconds}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.grain_size is not None and not (2 <= self.grain_size <= self.size):
            raise ValueError(f"grain_size must be between 2 and the frame size ({self.size}), got {self.grain_size}")

    @property
    def num_frames(self) -> int:
        return max(1, int(round(self.fps * self.seconds)))


def _frame(head: Head, azimuth: float, size: int, render_scale: float, detail: float,
           rng: np.random.Generator, grain_size: int | None = None) -> np.ndarray:
    """One rendered frame, uint8 (size, size, 3), with the sample's softness and image effects."""
    inner = max(16, int(round(size * render_scale)))
    img = render_view(head.prims, azimuth, inner, detail=detail, seam=head.seam)
    if inner != size:  # low internal resolution, upsampled: the generator's softness
        img = np.asarray(Image.fromarray((img * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)) / 255.0
    fx = head.image_effects
    if fx:
        sigma = fx["blur_sigma"] * size / 256  # severity is defined at 256 px
        img = gaussian_filter(img, sigma=(sigma, sigma, 0))
        img = img * fx["gain"] + _grain(rng, fx["grain"], size, grain_size)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _grain(rng: np.random.Generator, sigma: float, size: int, grain_size: int | None) -> np.ndarray:
    """Gaussian grain for a (size, size, 3) frame: one value per pixel, or per cell of a
    grain_size x grain_size grid (nearest-neighbour upsampled, so each value keeps its amplitude)."""
    if grain_size is None or grain_size >= size:
        return rng.normal(0, sigma, size=(size, size, 3))
    cells = rng.normal(0, sigma, size=(grain_size, grain_size, 3))  # (g, g, 3)
    index = (np.arange(size) * grain_size) // size  # the cell of each frame row / column
    return cells[index][:, index]  # (size, size, 3)


def render_sample(index: int, config: SynthConfig, out_dir: Path) -> dict:
    """Render video ``index`` and its snapshots; return its ground-truth record."""
    profile = GENERATORS[index % len(GENERATORS)]
    content_seed = index // len(GENERATORS)
    video_id = f"{profile.name.split('-')[0].lower()}_{content_seed:04d}"
    rng = np.random.default_rng([config.seed, index])
    head = build_head(rng)
    distortions = draw_distortions(profile, rng)
    # Softness varies around the generator's typical value from sample to sample.
    render_scale = float(np.clip(profile.render_scale * rng.uniform(0.75, 1.15), 0.3, 1.0))
    detail = float(np.clip(profile.detail * rng.uniform(0.7, 1.2), 0.3, 1.2))
    applied = []
    for kind, severity in distortions.items():
        centre = apply_distortion(head, kind, severity, rng)
        applied.append({"type": kind, "severity": round(severity, 4), "centre": [round(float(c), 4) for c in centre]})
    # Where each distortion centre appears in each snapshot (None where hidden).
    for d in applied:
        d["views"] = {}
        for view in SNAPSHOT_VIEWS:
            cam = orbit_camera(view, config.size)
            visible = d["type"] == BLUR or is_visible(head.prims, cam, np.array(d["centre"]))
            x, y, _ = cam.project(np.array(d["centre"]))
            d["views"][str(view)] = [round(x, 2), round(y, 2)] if visible else None
    # The latent scores before any frame: the frames' grain draws from `rng` as many values as
    # the render has pixels, so drawn after it, one head's scores would change with the render's
    # size, fps or duration (which they did before this order was fixed).
    latent = latent_scores(distortions, profile, render_scale, detail, rng)
    frames = np.stack([_frame(head, az, config.size, render_scale, detail, rng, config.grain_size)
                       for az in orbit_azimuths(config.num_frames, config.sweep_deg)])
    write_video(out_dir / "videos" / f"{video_id}.mp4", frames, config.fps)
    for view in SNAPSHOT_VIEWS:
        Image.fromarray(_frame(head, view, config.size, render_scale, detail, rng, config.grain_size)).save(out_dir / "snapshots" / f"{video_id}_{view}.png")
    return {"video": video_id, "generator": profile.name, "content_seed": content_seed, "distortions": applied,
            "render_scale": round(render_scale, 4), "detail": round(detail, 4),
            "latent": latent}


def synthesize(out_dir: str | Path, config: SynthConfig = SynthConfig(), progress: bool = True,
               overwrite: bool = False) -> Path:
    """Render ``config.n`` videos into ``out_dir`` and simulate the study (see module docstring).

    The study is built in a temporary folder beside ``out_dir`` and renamed into place when complete,
    so an interrupted run leaves no folder that looks like a finished study; an existing non-empty
    ``out_dir`` (an earlier study: mixing two would pair one study's videos with another's ratings)
    is replaced only with ``overwrite``."""
    from ..data.folders import check_output_folder, staged_folder

    check_output_folder(out_dir, {}, overwrite)
    with staged_folder(out_dir) as staging:
        _synthesize_into(staging, config, progress)
    return Path(out_dir)


def _synthesize_into(out_dir: Path, config: SynthConfig, progress: bool) -> None:
    from tqdm import tqdm

    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    (out_dir / "snapshots").mkdir(exist_ok=True)
    bar = tqdm(total=config.n, desc="rendering", unit="video", disable=not progress)
    if config.workers == 1:
        truths = []
        for i in range(config.n):
            truths.append(render_sample(i, config, out_dir))
            bar.update()
    else:
        with ProcessPoolExecutor(config.workers) as pool:
            futures = [pool.submit(render_sample, i, config, out_dir) for i in range(config.n)]
            truths = []
            for future in futures:
                truths.append(future.result())
                bar.update()
    bar.close()

    # The study runs after rendering, over all videos at once (one panel of raters).
    study_rng = np.random.default_rng([config.seed, 10**6])
    ratings, unreliable = simulate_ratings({t["video"]: t["latent"] for t in truths}, study_rng)
    with open(out_dir / "ratings.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["subject", "video", "dimension", "rating"])
        writer.writerows(ratings)
    with open(out_dir / "marks.jsonl", "w") as f:
        for t in truths:
            for record in simulate_marks(t["video"], t["distortions"], config.size, study_rng):
                f.write(json.dumps(record) + "\n")
    with open(out_dir / "generators.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "generator"])
        writer.writerows((t["video"], t["generator"]) for t in truths)
    with open(out_dir / "truth.jsonl", "w") as f:
        for t in truths:
            f.write(json.dumps(t) + "\n")
    meta = {"config": asdict(config), "unreliable_subjects": unreliable,
            "generators": [asdict(g) for g in GENERATORS]}
    (out_dir / "synth_config.json").write_text(json.dumps(meta, indent=2))


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))
