"""`lmmeval render`: 3D head assets -> videos in the Gen3DHF protocol, ready to score.

Each asset (.glb, .gltf, .obj with .mtl, .ply) becomes ``<stem>.mp4``, the camera orbiting the still
head from one profile to the other through the front (``lmmeval.orbit``; the paper's 512x512, 60 fps,
4 s, 180 deg by default), and ``<stem>_views.png``, its -45/0/+45 degree snapshots side by side (as
the annotators saw them). Frames are rendered in parallel over worker processes; a video is written
to a temporary file and renamed when complete, so ``resume`` skips exactly the finished assets.

An optional extra: ``pip install 'lmmeval[render]'`` (Mitsuba 3 and trimesh).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..orbit import SNAPSHOT_VIEWS, orbit_azimuths
from .assets import MESH_SUFFIXES, AssetError, load_asset

__all__ = ["MESH_SUFFIXES", "AssetError", "RenderConfig", "Rendered", "render_asset", "render_assets"]


@dataclass(frozen=True)
class RenderConfig:
    size: int = 512  # frame side, pixels (the paper: 512)
    fps: int = 60  # the paper: 60
    seconds: float = 4.0  # the paper: 4 s
    orbit_deg: float = 180.0  # the paper: 180 deg, profile to profile
    spp: int = 4  # samples per pixel (the light is direct only: a few are clean)
    up: str = "y"  # the asset's up axis: y or z
    front: str = "+z"  # the direction the face looks in the asset's coordinates
    workers: int = 1  # rendering processes
    gpu: bool = True  # use Mitsuba's CUDA variant when a GPU is there

    def __post_init__(self) -> None:
        from .assets import orientation

        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16 (H.264), got {self.size}")
        if self.fps < 1 or self.seconds <= 0 or self.spp < 1 or self.workers < 1:
            raise ValueError(f"fps, spp and workers must be >= 1 and seconds > 0, got fps={self.fps}, "
                             f"spp={self.spp}, workers={self.workers}, seconds={self.seconds}")
        if not 0 < self.orbit_deg <= 360:
            raise ValueError(f"orbit must be in (0, 360] degrees, got {self.orbit_deg}")
        orientation(self.up, self.front)  # its errors now

    @property
    def num_frames(self) -> int:
        return max(2, int(round(self.fps * self.seconds)))


@dataclass
class Rendered:
    """What rendering one asset produced (or why it did not)."""

    source: str
    video: Path | None = None
    views: Path | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False  # already complete (resume)


def output_paths(asset: str | Path, out_dir: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """(video, views image) an asset renders to: ``<name>.mp4`` and ``<name>_views.png`` (``name``,
    default the file's stem, may hold folders: see ``output_names``)."""
    name = name or Path(asset).stem
    return Path(out_dir) / f"{name}.mp4", Path(out_dir) / f"{name}_views.png"


def output_names(files: list[Path]) -> dict[Path, str]:
    """Each asset's output name: its stem, unless another asset has the same stem (generators often
    write every asset as model.glb in a folder of its own); those are named by their path below the
    folder the assets share, and, should that still clash (head.obj beside head.ply), with the suffix."""
    stems = Counter(f.stem for f in files)
    if max(stems.values(), default=0) < 2:
        return {f: f.stem for f in files}
    common = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    names = {f: f.stem if stems[f.stem] == 1 else f.resolve().with_suffix("").relative_to(common).as_posix()
             for f in files}
    clashes = Counter(names.values())
    return {f: f"{n}_{f.suffix.lstrip('.').lower()}" if clashes[n] > 1 else n for f, n in names.items()}


def render_asset(asset: str | Path, out_dir: str | Path, config: RenderConfig = RenderConfig(),
                 progress=None, name: str | None = None) -> Rendered:
    """Render one asset (see the module docstring) to ``output_paths(asset, out_dir, name)``;
    ``progress(n)`` is called as frames finish. Raises ``AssetError`` (naming the file) for an asset
    that cannot be rendered."""
    from PIL import Image

    from ..io.media import write_video

    video, views = output_paths(asset, out_dir, name)
    video.parent.mkdir(parents=True, exist_ok=True)
    head = load_asset(asset, config.up, config.front)
    azimuths = orbit_azimuths(config.num_frames, config.orbit_deg)
    frames = render_frames(head, azimuths, config, progress)
    snapshots = render_frames(head, np.array(SNAPSHOT_VIEWS, dtype=float), config)
    Image.fromarray(np.concatenate(list(snapshots), axis=1)).save(views)
    partial = video.with_name(video.stem + ".partial.mp4")
    write_video(partial, frames, config.fps)
    partial.replace(video)  # a video exists only once complete
    return Rendered(source=str(asset), video=video, views=views, notes=head.notes)


def render_frames(head, azimuths: np.ndarray, config: RenderConfig, progress=None) -> np.ndarray:
    """uint8 (T, size, size, 3) frames of ``head`` at ``azimuths``, over ``config.workers`` processes."""
    from .scene import FrameRenderer, pick_variant

    variant = pick_variant(config.gpu)
    if config.workers == 1 or variant.startswith("cuda") or len(azimuths) < 2 * config.workers:
        renderer = FrameRenderer(head, config.size, config.spp, variant)
        frames = []
        for i, azimuth in enumerate(azimuths):
            frames.append(renderer.render(float(azimuth), seed=i))
            if progress:
                progress(1)
        return np.stack(frames)
    from concurrent.futures import ProcessPoolExecutor

    # Chunks of a few frames: the progress bar moves as they finish, and a slow chunk holds no one up.
    chunks = np.array_split(np.arange(len(azimuths)), min(len(azimuths), 4 * config.workers))
    frames = [None] * len(azimuths)
    with ProcessPoolExecutor(config.workers, initializer=_init_worker, initargs=(head, config, variant)) as pool:
        for indices, rendered in zip(chunks, pool.map(_render_chunk, [(c, azimuths[c]) for c in chunks])):
            for i, frame in zip(indices, rendered):
                frames[i] = frame
            if progress:
                progress(len(indices))
    return np.stack(frames)


_WORKER: dict = {}


def _init_worker(head, config: RenderConfig, variant: str) -> None:
    from .scene import FrameRenderer

    _WORKER["renderer"] = FrameRenderer(head, config.size, config.spp, variant)


def _render_chunk(job) -> list[np.ndarray]:
    indices, azimuths = job
    # Seeded by frame index: the same frames whatever the number of workers.
    return [_WORKER["renderer"].render(float(a), seed=int(i)) for i, a in zip(indices, azimuths)]


def render_assets(assets: list[str | Path], out_dir: str | Path, config: RenderConfig = RenderConfig(),
                  resume: bool = False, progress: bool = True) -> list[Rendered]:
    """Render every asset (files, or folders searched for mesh files) into ``out_dir``; an asset that
    fails becomes a ``Rendered`` with its ``error`` and the batch goes on. With ``resume``, assets whose
    video is complete are skipped."""
    from tqdm import tqdm

    files = collect_assets(assets)
    names = output_names(files)
    paths = {f: output_paths(f, out_dir, names[f]) for f in files}
    todo = [f for f in files if not (resume and all(p.is_file() for p in paths[f]))]
    results = {str(f): Rendered(source=str(f), video=paths[f][0], views=paths[f][1], skipped=True)
               for f in files if f not in todo}
    bar = tqdm(total=len(todo) * config.num_frames, desc="rendering", unit="frame", disable=not progress)
    for f in todo:
        bar.set_postfix_str(Path(f).name)
        try:
            results[str(f)] = render_asset(f, out_dir, config, progress=bar.update, name=names[f])
        except AssetError as err:
            results[str(f)] = Rendered(source=str(f), error=str(err))
            bar.write(f"render: {err}")
    bar.close()
    return [results[str(f)] for f in files]


def collect_assets(paths: list[str | Path]) -> list[Path]:
    """Mesh files to render: given files as they are, folders searched recursively (sorted)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MESH_SUFFIXES))
        else:
            found.append(p)  # a missing or odd file is reported as that asset's error
    return list(dict.fromkeys(found))


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)
