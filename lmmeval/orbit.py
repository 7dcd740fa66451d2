"""The camera orbit of the Gen3DHF protocol: the one place it is written down.

A render is a camera orbiting the still head at a fixed distance, from one profile to the other
through the front: ``sweep_deg`` (the paper's 180 deg) spread evenly over the frames. Azimuth 0 is
the frontal view (the camera in front of the face, on the head's +z side); +90 looks at the head's
left side (+x), -90 at its right side (-x), which is where every render starts. The annotators'
snapshots were taken at -45, 0 and +45 degrees.

`lmmeval synth` renders on this orbit, `lmmeval render` turns meshes into videos on it, and
`lmmeval prepare` / `import-gen3dhf` tie each snapshot view to its video frame by it.
"""

from __future__ import annotations

import numpy as np

SNAPSHOT_VIEWS: tuple[int, ...] = (-45, 0, 45)


def orbit_azimuths(num_frames: int, sweep_deg: float = 180.0) -> np.ndarray:
    """Azimuth (degrees) of each frame of a uniform orbit from -sweep/2 to +sweep/2."""
    if num_frames == 1:
        return np.zeros(1)
    return np.linspace(-sweep_deg / 2, sweep_deg / 2, num_frames)


def view_to_frame(view_deg: float, num_frames: int, sweep_deg: float = 180.0) -> int:
    """Frame index whose camera azimuth is closest to ``view_deg`` on a uniform orbit."""
    if abs(view_deg) > sweep_deg / 2:
        raise ValueError(f"view {view_deg} deg lies outside the {sweep_deg} deg orbit")
    return int(round((view_deg + sweep_deg / 2) / sweep_deg * (num_frames - 1)))


def camera_direction(azimuth_deg: float) -> np.ndarray:
    """Unit vector from the head's centre towards the camera at ``azimuth_deg`` (y up, face towards +z)."""
    a = np.deg2rad(azimuth_deg)
    return np.array([np.sin(a), 0.0, np.cos(a)])
