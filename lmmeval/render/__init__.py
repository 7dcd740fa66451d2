"""`lmmeval render`: 3D head assets -> videos in the Gen3DHF protocol, ready to score.

Each asset (.glb, .gltf, .obj with .mtl, .ply) becomes ``<stem>.mp4``, the camera orbiting the still
head from one profile to the other through the front (``lmmeval.orbit``; the paper's 512x512, 60 fps,
4 s, 180 deg by default), and ``<stem>_views.png``, its -45/0/+45 degree snapshots side by side (as
the annotators saw them). Frames are rendered in worker processes (``pool``), never in the calling
one, so that Ctrl-C and SIGTERM (KeyboardInterrupt here) stop a run within moments: the workers are
ended, the asset under way leaves nothing behind, the finished ones stay. The video and the views
image are each written to a temporary name and renamed when complete, so ``resume`` skips exactly
the assets whose two outputs exist. Frame i of a video is seeded by i: the same video whatever the
number of workers. Mitsuba's variant: ``scene.pick_variant`` (CUDA on a GPU, LLVM on a
CPU, the scalar one where LLVM does not load; ``LMMEVAL_RENDER_VARIANT`` forces one).

``render_key`` (``keys``) names a render by what makes its pixels, for caches of rendered videos;
``sampled`` renders only the frames a model reads of a video, for `lmmeval score`.

An optional extra: ``pip install 'lmmeval[render]'`` (Mitsuba 3 and trimesh).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..orbit import SNAPSHOT_VIEWS, orbit_azimuths
from .assets import MAX_TEXTURE_SIDE, MESH_SUFFIXES, AssetError, load_asset, referenced_files
from .interrupts import InterruptGuard
from .keys import render_key
from .pool import RenderError
from .scene import RENDERER_VERSION

__all__ = ["MAX_TEXTURE_SIDE", "MESH_SUFFIXES", "RENDERER_VERSION", "AssetError", "RenderConfig", "Rendered",
           "referenced_files", "render_asset", "render_assets", "render_frames", "render_key"]


@dataclass(frozen=True)
class RenderConfig:
    size: int = 512  # frame side, pixels (the paper: 512)
    fps: int = 60  # the paper: 60
    seconds: float = 4.0  # the paper: 4 s
    orbit_deg: float = 180.0  # the paper: 180 deg, profile to profile
    spp: int = 4  # samples per pixel (the light is direct only: a few are clean)
    up: str = "y"  # the asset's up axis: y or z
    front: str = "+z"  # the direction the face looks in the asset's coordinates
    workers: int = 1  # rendering processes, each on one core (one where the variant renders on the GPU)
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
                 progress=None, name: str | None = None, pool=None) -> Rendered:
    """Render one asset (see the module docstring) to ``output_paths(asset, out_dir, name)``;
    ``progress(n)`` is called as frames finish; ``pool``: a ``RenderPool`` to render with (default:
    one for this asset). Raises ``AssetError`` (naming the file) for an asset that cannot be
    rendered. Interrupted (or failing), it leaves no file of the asset: neither output, nor a
    temporary one."""
    from PIL import Image

    from ..io.media import write_video

    video, views = output_paths(asset, out_dir, name)
    video.parent.mkdir(parents=True, exist_ok=True)
    with InterruptGuard() as interrupt:  # trimesh swallows KeyboardInterrupt: checked after it
        head = load_asset(asset, config.up, config.front)
        interrupt.check()
        azimuths = orbit_azimuths(config.num_frames, config.orbit_deg)
        try:
            with _pool_for(config, pool) as renderer:
                frames = renderer.render(head, azimuths, config.size, config.spp, progress=progress)
                snapshots = renderer.render(head, np.array(SNAPSHOT_VIEWS, dtype=float), config.size, config.spp)
        except RenderError as err:
            raise AssetError(f"{asset}: rendering failed: {err}") from None
        interrupt.check()
        _write_atomically(views, lambda path: Image.fromarray(np.concatenate(list(snapshots), axis=1)).save(path))
        try:
            _write_atomically(video, lambda path: write_video(path, frames, config.fps))
        except BaseException:
            views.unlink(missing_ok=True)  # an asset's outputs are there both or not at all
            raise
        interrupt.check()  # the outputs are complete: they stay, and the run stops
    return Rendered(source=str(asset), video=video, views=views, notes=head.notes)


def partial_path(path: Path) -> Path:
    """Where ``path`` is written before it is complete: ``x.mp4`` -> ``x.partial.mp4`` (the suffix
    kept: it tells the writers the format)."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def _write_atomically(path: Path, write) -> None:
    """``write(temporary)``, then rename it to ``path``: ``path`` exists only once complete, and an
    interrupted write leaves nothing."""
    partial = partial_path(path)
    try:
        write(partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def render_frames(head, azimuths: np.ndarray, config: RenderConfig, progress=None, pool=None) -> np.ndarray:
    """uint8 (T, size, size, 3) frames of ``head`` at ``azimuths`` (frame i seeded by i), over
    ``config.workers`` processes (or ``pool``'s)."""
    with _pool_for(config, pool) as renderer:
        return renderer.render(head, azimuths, config.size, config.spp, progress=progress)


class _Borrowed:
    """A caller's pool, lent for a ``with`` block: ended on an exception, left open otherwise."""

    def __init__(self, pool):
        self.pool = pool

    def __enter__(self):
        return self.pool

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None and not issubclass(kind, RenderError):  # RenderPool ends itself on those
            self.pool.terminate()


def _pool_for(config: RenderConfig, pool=None):
    from .pool import RenderPool

    return RenderPool(config.workers, config.gpu) if pool is None else _Borrowed(pool)


def render_assets(assets: list[str | Path], out_dir: str | Path, config: RenderConfig = RenderConfig(),
                  resume: bool = False, progress: bool = True, names: dict[Path, str] | None = None,
                  pool=None) -> list[Rendered]:
    """Render every asset (files, or folders searched for mesh files) into ``out_dir``; an asset that
    fails becomes a ``Rendered`` with its ``error`` and the batch goes on. ``names``: output names
    (see ``output_paths``) for some of the asset files, the others named by ``output_names``. With
    ``resume``, assets whose video and views image are both complete are skipped. ``pool``: a
    ``RenderPool`` to render with (default: one for this call). The progress bar moves with every
    frame (rate and time left) and names the asset under way. A forced variant that does not load
    (``pool.VariantUnavailable``, a ``ValueError``) stops the batch before anything is written. On
    KeyboardInterrupt the render workers are ended and the asset under way leaves no file; the
    finished assets' files stay."""
    from contextlib import nullcontext

    from tqdm import tqdm

    from .pool import RenderError, RenderPool

    files = collect_assets(assets)
    names = {**output_names(files), **{Path(f): n for f, n in (names or {}).items()}}
    paths = {f: output_paths(f, out_dir, names[f]) for f in files}
    todo = [f for f in files if not (resume and all(p.is_file() for p in paths[f]))]
    results = {str(f): Rendered(source=str(f), video=paths[f][0], views=paths[f][1], skipped=True)
               for f in files if f not in todo}
    if not todo:
        return [results[str(f)] for f in files]
    # Its workers serve every asset in turn; started before the bar, whose line the variant's note would cut.
    with (RenderPool(config.workers, config.gpu) if pool is None else nullcontext(pool)) as pool:
        try:
            pool.start()
        except RenderError as err:  # no worker starts (its error is printed above): every asset fails so
            return [results.get(str(f)) or Rendered(source=str(f), error=f"{f}: rendering failed: {err}")
                    for f in files]
        bar = tqdm(total=len(todo) * config.num_frames, desc="rendering", unit="frame", disable=not progress)
        try:
            for n, f in enumerate(todo, start=1):
                bar.set_postfix_str(f"asset {n}/{len(todo)}: {Path(f).name}")
                try:
                    results[str(f)] = render_asset(f, out_dir, config, progress=bar.update, name=names[f], pool=pool)
                except AssetError as err:
                    results[str(f)] = Rendered(source=str(f), error=str(err))
                    bar.write(f"render: {err}")
        finally:
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
