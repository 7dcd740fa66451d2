"""A mesh scored without its video: only the frames the model reads, at the size it reads them.

`lmmeval score` reads a few frames of a video at its pixel budget (the demo checkpoint: 8 frames of
112x112 out of the protocol's 240 of 512x512). For a mesh it need not render the whole protocol
video first: ``sampled_video`` gives the frames the loader would pick from that video
(``lmmeval.io.media.sample_video_frames`` on the video's timestamps: the same rule, not a copy),
each rendered at the azimuth the video shows it and seeded by its index in the video, as
``render_asset`` seeds it. They are rendered at ``read_side``: twice the side the loader resizes
to, capped at the protocol's, so that the loader's own resize, which takes them down from there,
still averages several rendered pixels into each pixel the model sees. The loader then treats
them as frames of a ``size`` x ``size`` video: saliency maps and masks come at the protocol size.

The two paths differ by H.264 coding and the resize's starting size; research/render_agreement.py
measures what that does to the scores (docs/benchmarks.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..orbit import orbit_azimuths
from .interrupts import InterruptGuard

READ_MARGIN = 2  # frames render at this multiple of the side the model reads


def protocol_timestamps(config) -> np.ndarray:
    """Start times (seconds) of the frames of ``config``'s video: frame i at i / fps, as
    ``write_video`` writes them."""
    return np.arange(config.num_frames) / config.fps


def read_side(config, sampling, geometry) -> int:
    """Side at which to render frames for a model with ``sampling`` and ``geometry``: ``READ_MARGIN``
    times the side its loader resizes a protocol frame to, at most the protocol's. Where the loader
    would resize a frame of that side differently (a budget that upscales), the protocol's."""
    from ..io.media import frame_size

    target = frame_size(config.size, config.size, sampling, geometry)
    side = min(config.size, READ_MARGIN * max(target))
    side += side % 2
    return side if frame_size(side, side, sampling, geometry) == target else config.size


def sampled_video(asset: str | Path, config, sampling, geometry, pool, progress=None):
    """A ``lmmeval.io.media.SampledVideo`` of ``asset``'s protocol video (``config``) as a model with
    ``sampling`` and ``geometry`` reads it; its frames are rendered by ``pool`` (a ``RenderPool``)
    when the input is loaded, ``progress(n)`` called as they finish. Its load raises ``AssetError``
    (naming the file) for an asset that cannot be rendered."""
    from ..io.media import SampledVideo, sample_video_frames

    indices, fps, notes = sample_video_frames(protocol_timestamps(config), sampling, geometry)
    side = read_side(config, sampling, geometry)
    views = np.unique(indices)  # a short video's frames may be read twice; rendered once

    def load():
        from .assets import AssetError, load_asset
        from .pool import RenderError

        with InterruptGuard() as interrupt:  # trimesh swallows KeyboardInterrupt: checked after it
            head = load_asset(asset, config.up, config.front)
            interrupt.check()
        azimuths = orbit_azimuths(config.num_frames, config.orbit_deg)[views]
        try:
            frames = pool.render(head, azimuths, side, config.spp, seeds=views, progress=progress)
        except RenderError as err:
            raise AssetError(f"{asset}: rendering failed: {err}") from None
        return frames[np.searchsorted(views, indices)], list(head.notes)

    return SampledVideo(load, indices, fps, (config.size, config.size), notes)


def frames_to_render(config, sampling, geometry) -> int:
    """Frames ``sampled_video`` renders per mesh (for progress bars)."""
    from ..io.media import sample_video_frames

    return len(set(sample_video_frames(protocol_timestamps(config), sampling, geometry)[0]))


def describe(config, sampling, geometry, variant: str) -> str:
    """The note a scored mesh's row carries: what was rendered, and how to keep the video."""
    from ..io.media import sample_video_frames

    indices = sample_video_frames(protocol_timestamps(config), sampling, geometry)[0]
    side = read_side(config, sampling, geometry)
    return (f"rendered only the {len(set(indices))} frames the model reads, at {side}x{side} px ({variant}), of "
            f"the {config.num_frames}-frame {config.size}x{config.size} protocol video (not written; --keep-renders "
            "renders and keeps it)")
