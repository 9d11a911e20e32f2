"""Tiny PET geometries shared by the physics and classical tests."""
from __future__ import annotations

import numpy as np
import torch

from diffrecon.physics.geometry import ImageGrid, ScannerGeometry


def tiny_scanner(max_ring_difference: int = 3, span: int = 1, n_rings: int = 8) -> ScannerGeometry:
    return ScannerGeometry(ring_radius_mm=60.0, n_detectors_per_ring=48, n_rings=n_rings, ring_spacing_mm=3.0,
                           n_views=16, n_bins=24, bin_size_mm=3.0, max_ring_difference=max_ring_difference, span=span)


def tiny_grid(nz: int = 8) -> ImageGrid:
    return ImageGrid((16, 16, nz), (3.0, 3.0, 3.0))


def cylinder(grid: ImageGrid, radius_mm: float, value: float = 1.0) -> torch.Tensor:
    """A uniform cylinder along z, centred on the axis."""
    x, y = np.meshgrid(grid.axis_mm(0), grid.axis_mm(1), indexing="ij")
    disk = (x ** 2 + y ** 2 <= radius_mm ** 2).astype(np.float32) * value
    return torch.tensor(np.repeat(disk[:, :, None], grid.shape[2], axis=2))
