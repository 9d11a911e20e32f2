"""2D slices of (x, y, z) volumes in the three perpendicular orientations."""
from __future__ import annotations

import numpy as np

from diffrecon.checks import InputError, check_choice

# Axis of the (x, y, z) volume that each orientation slices along.
ORIENTATIONS = {"axial": 2, "coronal": 1, "sagittal": 0}


def slices(volume: np.ndarray, orientation: str) -> np.ndarray:
    """All slices of ``volume`` (x, y, z) in ``orientation`` as a stack (n, rows, cols):
    axial (z, x, y), coronal (y, x, z), sagittal (x, y, z)."""
    check_choice("orientation", orientation, ORIENTATIONS)
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise InputError(f"volume must be 3D (x, y, z), got shape {volume.shape}")
    return np.moveaxis(volume, ORIENTATIONS[orientation], 0)
