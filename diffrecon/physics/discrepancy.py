"""How far the truth sits from the data: the expected misfit of the true image under each noise model, which the
discrepancy principle asks a reconstruction to match instead of fitting the noise.

- Poisson (PET): the expected deviance E[D(Y; μ)] of one bin with mean μ, D = 2[μ − Y + Y log(Y / μ)]. It is
  about 1 + 1/(6μ) for large μ and falls to 0 for near-empty bins (Bertero, Boccacci, Talenti, Zanella and Zanni,
  Inverse Problems 2010): "one per bin" is far too loose at low counts, where most bins are near-empty.
- Gaussian (MRI, Morozov): ‖A x − y‖² / σ² of the truth is about the number of measured complex samples; σ is read
  from a noise scan or estimated from the data (:func:`kspace_noise_sigma`).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from diffrecon.physics.mri_fft import ifft_centered

ASYMPTOTIC_MEAN = 50.0
"""Above this mean, E[D] = 1 + 1/(6μ) + 1/(6μ²) to within 3e-6 (checked against the exact sum)."""
TABLE_RANGE = (1e-8, ASYMPTOTIC_MEAN)
TABLE_POINTS = 4000
NOISE_CORNER = 0.25
"""The k-space periphery used for the noise estimate: positions at least this fraction of the matrix from the
centre along every in-plane axis (the outer corners, where an image's signal has decayed most)."""
BACKGROUND_FRACTION = 0.2
"""The fraction of readout positions taken as background in hybrid space."""
MIN_LINES = 4
MIN_NOISE_SAMPLES = 64
INTEGER_TOLERANCE = 1e-3


@lru_cache(maxsize=1)
def _deviance_table() -> tuple[torch.Tensor, float, float]:
    """E[D] on a grid uniform in log μ over :data:`TABLE_RANGE`, summed exactly over the Poisson pmf (float64)."""
    low, high = (math.log(v) for v in TABLE_RANGE)
    mean = torch.linspace(low, high, TABLE_POINTS, dtype=torch.float64).exp()[:, None]
    k = torch.arange(0, int(ASYMPTOTIC_MEAN + 15 * ASYMPTOTIC_MEAN ** 0.5 + 30), dtype=torch.float64)
    pmf = torch.exp(torch.xlogy(k, mean) - mean - torch.lgamma(k + 1))
    expected = 2 * ((pmf * torch.xlogy(k, k)).sum(1) - (mean * mean.log()).squeeze(1))
    return expected, low, (high - low) / (TABLE_POINTS - 1)


def poisson_expected_deviance(mean: torch.Tensor) -> torch.Tensor:
    """E[2(μ − Y + Y log(Y/μ))] for Y ~ Poisson(μ), elementwise (μ >= 0): exact to about 1e-6 (a table in log μ
    below :data:`ASYMPTOTIC_MEAN`, the series above it, −2μ log μ for μ below the table)."""
    mean = torch.as_tensor(mean)
    table, low, step = _deviance_table()
    table = table.to(mean.device)
    mu = mean.double().clamp_min(0)
    position = ((mu.clamp(*TABLE_RANGE).log() - low) / step).clamp(0, TABLE_POINTS - 1)
    index = position.floor().long().clamp(max=TABLE_POINTS - 2)
    fraction = position - index
    tabulated = table[index] * (1 - fraction) + table[index + 1] * fraction
    large = 1 + 1 / (6 * mu.clamp_min(1)) + 1 / (6 * mu.clamp_min(1) ** 2)
    tiny = -2 * torch.xlogy(mu, mu)
    value = torch.where(mu >= ASYMPTOTIC_MEAN, large, torch.where(mu < TABLE_RANGE[0], tiny, tabulated))
    return value.to(mean.dtype if mean.is_floating_point() else torch.float64)


def non_count_reason(data: torch.Tensor) -> str | None:
    """Why ``data`` cannot be Poisson counts (None if it can): counts are non-negative integers; pre-corrected,
    smoothed or rescaled sinograms are not, and their misfit has no Poisson expectation."""
    if (data < 0).any():
        return "the sinogram has negative values (pre-corrected data?)"
    fractional = ((data - data.round()).abs() > INTEGER_TOLERANCE).float().mean().item()
    if fractional > 0.01:
        return (f"{fractional:.0%} of the sinogram's bins are not whole counts (pre-corrected, smoothed or "
                "rescaled data?)")
    return None


def kspace_noise_sigma(kspace: torch.Tensor, mask: torch.Tensor) -> float | None:
    """σ of complex Gaussian k-space noise (E|n|² = σ²) estimated from the data, all coils and slices pooled; None
    where the data give too little to estimate it from.

    Where the mask has fully sampled readout lines (Cartesian line masks, the common case), from the background of
    hybrid space: each line's inverse FFT along the readout is a profile whose columns outside the object hold only
    noise; the :data:`BACKGROUND_FRACTION` of readout positions with the least energy in every other line are taken
    as background and σ² = median |h|² / ln 2 there over the other lines (so the choice does not bias it low) (the median of σ² times an Exp(1) variable; an overestimate where the object fills
    the field of view). Otherwise (2D masks) the same median over the k-space periphery (:data:`NOISE_CORNER`),
    which an image with much fine detail inflates.

    Args:
        kspace: (..., x, y[, z]) centred k-space (x the readout), zeros where not measured.
        mask: boolean (x, y[, z]) of the measured positions.
    """
    mask = mask.bool()
    lines = mask.all(dim=0)
    if int(lines.sum()) >= MIN_LINES:
        profiles = ifft_centered(kspace[..., lines].movedim(-2, -1), 1)  # (..., lines, x)
        chooser, measured = profiles[..., 0::2, :], profiles[..., 1::2, :]  # independent noise: unbiased choice
        energy = chooser.abs().square().flatten(0, -2).sum(0)
        count = max(MIN_LINES, int(BACKGROUND_FRACTION * energy.numel()))
        values = measured[..., energy.argsort()[:count]]
    else:
        periphery = torch.ones(mask.shape, dtype=torch.bool, device=mask.device)
        for axis, n in enumerate(mask.shape[:2]):
            distance = (torch.arange(n, device=mask.device) - n // 2).abs() / n
            shape = [1] * mask.dim()
            shape[axis] = n
            periphery = periphery & (distance >= NOISE_CORNER).reshape(shape)
        values = kspace[..., periphery & mask]
        values = values[values != 0]
    if values.numel() < MIN_NOISE_SAMPLES:
        return None
    return float((values.abs().square().median() / math.log(2)).sqrt())


def noise_scan_sigma(noise: torch.Tensor | np.ndarray) -> float:
    """σ of complex noise (E|n|² = σ²) from noise-only samples (a noise adjustment scan), all coils pooled."""
    return float(np.sqrt(np.mean(np.abs(np.asarray(noise)) ** 2)))
