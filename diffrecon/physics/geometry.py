"""Cylindrical PET scanner geometry and image grids, with named presets.

Sinogram layout: (..., n_sinograms, n_views, n_bins). Span-1 sinograms are ordered like STIR's segments:
ring difference 0, -1, +1, -2, +2, ... up to ``max_ring_difference``; inside a segment by axial position.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diffrecon.checks import InputError, check_choice


@dataclass(frozen=True)
class ImageGrid:
    """A voxel grid: ``shape`` (nx, ny, nz), ``voxel_size_mm`` (dx, dy, dz), centred on the scanner axis.

    ``affine`` maps voxel indices to RAS millimetres; by default the grid centre is at the origin.
    """

    shape: tuple[int, int, int]
    voxel_size_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or any(int(n) < 1 for n in self.shape):
            raise InputError(f"ImageGrid shape must be three positive integers (nx, ny, nz), got {self.shape}")
        if len(self.voxel_size_mm) != 3 or any(not np.isfinite(v) or v <= 0 for v in self.voxel_size_mm):
            raise InputError(f"ImageGrid voxel_size_mm must be three numbers > 0, got {self.voxel_size_mm}")

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-RAS-mm matrix."""
        affine = np.diag([*map(float, self.voxel_size_mm), 1.0])
        if self.origin_mm is None:
            affine[:3, 3] = [-(n - 1) / 2 * v for n, v in zip(self.shape, self.voxel_size_mm)]
        else:
            affine[:3, 3] = self.origin_mm
        return affine

    def axis_mm(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates (mm, relative to the grid centre) along ``axis`` (0=x, 1=y, 2=z)."""
        n, v = self.shape[axis], self.voxel_size_mm[axis]
        return (np.arange(n) - (n - 1) / 2) * v


@dataclass(frozen=True)
class ScannerGeometry:
    """Cylindrical PET scanner sampled as parallel sinograms (non-TOF).

    Args:
        ring_radius_mm: detector ring radius.
        n_detectors_per_ring: crystals per ring (sets the natural number of views, n_detectors_per_ring / 2).
        n_rings: number of detector rings.
        ring_spacing_mm: axial distance between ring centres.
        n_views: projection angles over 180 degrees.
        n_bins: tangential bins per view.
        bin_size_mm: tangential bin width.
        max_ring_difference: largest |ring1 - ring2| kept (0 = 2D, direct planes only).
        span: axial compression (1 = every ring pair its own sinogram; odd values >= 3 merge ring differences
            into segments as in STIR/Siemens).
    """

    ring_radius_mm: float
    n_detectors_per_ring: int
    n_rings: int
    ring_spacing_mm: float
    n_views: int
    n_bins: int
    bin_size_mm: float
    max_ring_difference: int = 0
    span: int = 1
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        for key in ("n_detectors_per_ring", "n_rings", "n_views", "n_bins"):
            if int(getattr(self, key)) < 1:
                raise InputError(f"ScannerGeometry {key} must be >= 1, got {getattr(self, key)}")
        for key in ("ring_radius_mm", "ring_spacing_mm", "bin_size_mm"):
            value = getattr(self, key)
            if not np.isfinite(value) or value <= 0:
                raise InputError(f"ScannerGeometry {key} must be a number > 0, got {value}")
        if not 0 <= self.max_ring_difference < self.n_rings:
            raise InputError(f"ScannerGeometry max_ring_difference must be in [0, n_rings - 1 = {self.n_rings - 1}], "
                             f"got {self.max_ring_difference}")
        if self.span < 1 or (self.span > 1 and self.span % 2 == 0):
            raise InputError(f"ScannerGeometry span must be 1 or an odd number >= 3, got {self.span}")
        if self.n_bins * self.bin_size_mm / 2 >= self.ring_radius_mm:
            raise InputError(f"ScannerGeometry tangential field of view ({self.n_bins} bins x {self.bin_size_mm} mm) "
                             f"must fit inside the ring (radius {self.ring_radius_mm} mm)")

    @property
    def ring_differences(self) -> list[int]:
        """Ring differences of the span-1 segments in storage order: 0, -1, +1, -2, +2, ..."""
        return [0] + [sign * d for d in range(1, self.max_ring_difference + 1) for sign in (-1, 1)]

    @property
    def ring_pairs(self) -> np.ndarray:
        """(n_sinograms_span1, 2) array of (ring1, ring2) per span-1 sinogram, in storage order."""
        pairs = []
        for diff in self.ring_differences:
            for ring1 in range(self.n_rings):
                ring2 = ring1 + diff
                if 0 <= ring2 < self.n_rings:
                    pairs.append((ring1, ring2))
        return np.asarray(pairs, dtype=np.int64)

    @property
    def n_sinograms(self) -> int:
        """Number of span-1 sinograms (all ring pairs with |difference| <= max_ring_difference)."""
        return len(self.ring_pairs)

    @property
    def segments(self) -> list[tuple[int, int]]:
        """(min, max) ring difference of each segment in storage order 0, -1, +1, -2, +2, ...

        Span 1 gives one ring difference per segment; span S merges ring differences as STIR/Siemens do:
        segment 0 holds |d| <= (S - 1) / 2, the next pair the following S differences, and so on.
        """
        if self.span == 1:
            return [(d, d) for d in self.ring_differences]
        half = min((self.span - 1) // 2, self.max_ring_difference)
        segments = [(-half, half)]
        low = half + 1
        while low <= self.max_ring_difference:
            high = min(low + self.span - 1, self.max_ring_difference)
            segments += [(-high, -low), (low, high)]
            low = high + 1
        return segments

    @property
    def span_index(self) -> np.ndarray:
        """For each span-1 sinogram (ring pair), the index of the span-S sinogram it is summed into.

        Span-S sinograms are ordered by segment, then by ring sum r1 + r2 (axial position).
        """
        pairs = self.ring_pairs
        index = np.empty(len(pairs), dtype=np.int64)
        offset = 0
        for low, high in self.segments:
            min_abs = 0 if low <= 0 <= high else min(abs(low), abs(high))
            ring_sums = np.arange(min_abs, 2 * (self.n_rings - 1) - min_abs + 1, 2 if low == high else 1)
            diff = pairs[:, 1] - pairs[:, 0]
            member = (diff >= low) & (diff <= high)
            index[member] = offset + np.searchsorted(ring_sums, pairs[member].sum(axis=1))
            offset += len(ring_sums)
        return index

    @property
    def n_sinograms_compressed(self) -> int:
        """Number of sinograms after span compression (equals n_sinograms for span 1)."""
        return int(self.span_index.max()) + 1

    @property
    def data_shape(self) -> tuple[int, int, int]:
        """Shape of the measured data: (n_sinograms_compressed, n_views, n_bins)."""
        return self.n_sinograms_compressed, self.n_views, self.n_bins

    @property
    def n_direct_planes(self) -> int:
        """Number of direct (ring difference 0) sinograms."""
        return self.n_rings

    @property
    def sinogram_shape(self) -> tuple[int, int, int]:
        """Shape of one span-1 sinogram set: (n_sinograms, n_views, n_bins)."""
        return self.n_sinograms, self.n_views, self.n_bins

    @property
    def view_angles(self) -> np.ndarray:
        """Projection angles in radians, evenly spaced over [0, pi)."""
        return np.arange(self.n_views) * np.pi / self.n_views

    @property
    def bin_centres_mm(self) -> np.ndarray:
        """Tangential bin centres in mm, symmetric about the scanner axis."""
        return (np.arange(self.n_bins) - (self.n_bins - 1) / 2) * self.bin_size_mm

    @property
    def ring_positions_mm(self) -> np.ndarray:
        """Axial ring centres in mm, symmetric about the scanner centre."""
        return (np.arange(self.n_rings) - (self.n_rings - 1) / 2) * self.ring_spacing_mm


@dataclass(frozen=True)
class Preset:
    """A scanner with the image grid it is meant to reconstruct."""

    scanner: ScannerGeometry
    grid: ImageGrid
    description: str


def _presets() -> dict[str, Preset]:
    return {
        "demo": Preset(
            ScannerGeometry(ring_radius_mm=170.0, n_detectors_per_ring=144, n_rings=56, ring_spacing_mm=3.0,
                            n_views=72, n_bins=72, bin_size_mm=3.0, max_ring_difference=5, name="demo"),
            ImageGrid((64, 72, 56), (3.0, 3.0, 3.0)),
            "small brain scanner for the demo: 3 mm voxels covering a whole head, 56 rings, fully 3D up to ring "
            "difference 5",
        ),
        "demo2d": Preset(
            ScannerGeometry(ring_radius_mm=170.0, n_detectors_per_ring=144, n_rings=1, ring_spacing_mm=3.0,
                            n_views=72, n_bins=72, bin_size_mm=3.0, max_ring_difference=0, name="demo2d"),
            ImageGrid((64, 72, 1), (3.0, 3.0, 3.0)),
            "one ring of the demo scanner: 2D axial slices of 64x72 at 3 mm",
        ),
        "clinical_brain": Preset(
            ScannerGeometry(ring_radius_mm=328.0, n_detectors_per_ring=504, n_rings=64, ring_spacing_mm=4.0625,
                            n_views=252, n_bins=160, bin_size_mm=2.08626, max_ring_difference=60, span=11,
                            name="clinical_brain"),
            ImageGrid((160, 160, 127), (2.08626, 2.08626, 2.03125)),
            "clinical-like PET/MR geometry (Siemens mMR dimensions), span 11, 2 mm voxels",
        ),
    }


PRESET_NAMES = tuple(_presets())


def get_preset(name: str) -> Preset:
    """Return a named scanner + grid preset; clear error for unknown names."""
    check_choice("preset", name, PRESET_NAMES)
    return _presets()[name]
