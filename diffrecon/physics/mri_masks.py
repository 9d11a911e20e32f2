"""Cartesian k-space sampling masks, reproducible by seed, with a fully sampled centre for calibration.

1D patterns choose phase-encode lines along the last axis (every readout sample of a chosen line is kept);
2D patterns choose points on the last two axes (the phase-encode plane of a 3D scan, or the plane of a 2D
image as in Score-MRI's experiments). Every pattern takes exactly round(N / R) of the N candidate lines or
points, so the realised acceleration N / count is within 5% of the request R; otherwise it raises.

MONAI's ``RandomKspaceMask`` draws each line independently, so its number of lines (hence its acceleration)
varies by about 10% at R = 4 on 160 lines, and its masks are tied to applying them to a k-space; these
generators fix the count instead. The Poisson-disc pattern is sigpy's (``sigpy.mri.poisson``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffrecon.checks import InputError, check_choice

MASK_KINDS = ("random", "gaussian1d", "gaussian2d", "poisson", "equispaced")
ACCELERATION_TOLERANCE = 0.05
# Gaussian densities: standard deviation as a fraction of the axis length (Score-MRI's 1.5/128 variance factor).
GAUSSIAN_STD_FRACTION = float(np.sqrt(1.5 / 128))


@dataclass(frozen=True)
class SamplingMask:
    """A boolean k-space mask of the full spatial shape and what it realises."""

    mask: torch.Tensor
    acceleration: float
    requested_acceleration: float
    kind: str
    calibration: tuple[int, ...]


def sampling_mask(kind: str, shape: tuple[int, ...], acceleration: float, center_fraction: float = 0.08,
                  seed: int = 0, device: torch.device | str | None = None) -> SamplingMask:
    """Make a sampling mask.

    Args:
        kind: one of ``MASK_KINDS``: uniform random lines, Gaussian-density lines, Gaussian-density points,
            variable-density Poisson disc, or equispaced lines plus a block of ACS lines.
        shape: spatial k-space shape (x, y) or (x, y, z); the last axis (1D kinds) or last two axes
            (2D kinds) are undersampled.
        acceleration: requested acceleration R >= 1 (1 samples everything).
        center_fraction: fraction of each undersampled axis kept fully sampled at the centre (calibration).
        seed: random seed; the same seed gives the same mask.
        device: device of the returned mask tensor.

    Raises:
        InputError: unknown kind, acceleration < 1, or an acceleration or calibration impossible for the shape.
    """
    check_choice("mask kind", kind, MASK_KINDS)
    shape = tuple(int(n) for n in shape)
    two_d = kind in ("gaussian2d", "poisson")
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InputError(f"mask shape {shape} must be 2 or 3 positive sizes (x, y[, z])")
    if not np.isfinite(acceleration) or acceleration < 1:
        raise InputError(f"acceleration must be a number >= 1, got {acceleration!r}")
    if not 0 <= center_fraction < 1:
        raise InputError(f"center_fraction must be in [0, 1), got {center_fraction!r}")
    axes = shape[-2:] if two_d else shape[-1:]
    total = int(np.prod(axes))
    count = int(round(total / acceleration))
    if count < 1 or abs(total / count - acceleration) > ACCELERATION_TOLERANCE * acceleration:
        raise InputError(f"acceleration {acceleration} is impossible for {total} "
                         f"{'k-space points' if two_d else 'phase-encode lines'}: no whole number of samples "
                         f"is within {ACCELERATION_TOLERANCE:.0%} of it")
    calibration = tuple(min(n, int(round(center_fraction * n))) for n in axes)
    centre = np.zeros(axes, dtype=bool)
    centre[central_block(axes, calibration)] = True
    if centre.sum() > count:
        raise InputError(f"center_fraction {center_fraction} keeps {int(centre.sum())} central samples, more than "
                         f"the {count} that acceleration {acceleration} allows; lower one of them")
    rng = np.random.default_rng(seed)
    if kind == "poisson":
        pattern = _poisson(axes, acceleration, calibration, seed) | centre
    elif kind == "equispaced":
        pattern = _equispaced(centre, count, rng)
    else:
        weights = np.ones(axes) if kind == "random" else _gaussian_density(axes)
        pattern = _draw(centre, weights, count, rng)
    realised = total / pattern.sum()
    if abs(realised - acceleration) > ACCELERATION_TOLERANCE * acceleration:
        raise InputError(f"acceleration {acceleration}: the {kind} pattern on {axes} reached only {realised:.3f}; "
                         "use another acceleration, centre fraction or mask kind")
    full = np.broadcast_to(pattern.reshape((1,) * (len(shape) - len(axes)) + axes), shape)
    return SamplingMask(torch.tensor(full, device=device), float(realised),
                        float(acceleration), kind, calibration)


def central_block(shape: tuple[int, ...], widths: tuple[int, ...]) -> tuple[slice, ...]:
    """Index of the central block of ``widths`` samples on the axes of ``shape``, from n // 2 - w // 2 on each
    (around the zero frequency at n // 2): where sigpy's ESPIRiT crops its calibration region, odd axes included."""
    return tuple(slice(n // 2 - w // 2, n // 2 - w // 2 + w) for n, w in zip(shape, widths))


def calibration_width(mask: torch.Tensor) -> int:
    """Width w of the largest fully sampled central w x w (x w) block of a mask (:func:`central_block`)."""
    mask = torch.as_tensor(mask).bool()
    for width in range(min(mask.shape), 0, -1):
        if mask[central_block(mask.shape, (width,) * mask.dim())].all():
            return width
    return 0


def _draw(centre: np.ndarray, weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """The centre plus ``count - |centre|`` other samples drawn without replacement with probability ∝ weights."""
    pattern = centre.copy()
    candidates = np.flatnonzero(~centre)
    p = weights.ravel()[candidates]
    chosen = rng.choice(candidates, size=count - int(centre.sum()), replace=False, p=p / p.sum())
    pattern.ravel()[chosen] = True
    return pattern


def _gaussian_density(axes: tuple[int, ...]) -> np.ndarray:
    """Separable Gaussian sampling density centred on the k-space centre."""
    grids = np.meshgrid(*[(np.arange(n) - n // 2) / (GAUSSIAN_STD_FRACTION * n) for n in axes], indexing="ij")
    return np.exp(-0.5 * sum(g ** 2 for g in grids)) + 1e-12


def _equispaced(centre: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """ACS lines plus ``count - |ACS|`` lines evenly spaced (non-integer spacing, rounded down) over the other
    lines from a random offset: fastMRI's adjusted spacing, made exact."""
    pattern = centre.copy()
    candidates = np.flatnonzero(~centre)
    k = count - int(centre.sum())
    if k:
        spacing = len(candidates) / k
        pattern[candidates[np.floor(rng.uniform(0, spacing) + np.arange(k) * spacing).astype(int)]] = True
    return pattern


def _poisson(axes: tuple[int, ...], acceleration: float, calibration: tuple[int, ...], seed: int) -> np.ndarray:
    """Variable-density Poisson disc from sigpy, with its acceleration search held to 4% of the request."""
    import sigpy.mri

    if acceleration == 1:
        return np.ones(axes, dtype=bool)
    mask = sigpy.mri.poisson(axes, acceleration, calib=calibration, dtype=np.float32, seed=seed,
                             tol=0.04 * acceleration)
    return mask > 0
