"""Simulated PET acquisitions: noiseless and Poisson data at a requested number of true counts."""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from diffrecon.checks import InputError, check_nonnegative, check_shape
from diffrecon.physics.geometry import ImageGrid, ScannerGeometry
from diffrecon.physics.pet import PETAcquisitionModel, attenuation_factors
from diffrecon.physics.projector import PETProjector

TRUES_PER_DIRECT_PLANE_FULL = 1e6
COUNT_LEVELS = {"full": 1.0, "10%": 0.1, "1%": 0.01}


@dataclass
class PETSimulation:
    """A simulated acquisition and the model that produced it.

    ``model.forward(activity)`` is the noiseless expectation of ``measured``; reconstructions of
    ``measured`` with ``model`` come out in the units of ``activity``.
    """

    measured: torch.Tensor
    noiseless: torch.Tensor
    model: PETAcquisitionModel
    activity: torch.Tensor
    attenuation: torch.Tensor
    true_counts: float
    background_counts: float


def count_fraction(count_level: str | float) -> float:
    """The fraction of the full count level that ``count_level`` names: "full", a percentage ("10%", "0.3%") or a
    fraction (0.05, "0.05"), in (0, 10]."""
    if isinstance(count_level, str) and count_level in COUNT_LEVELS:
        return COUNT_LEVELS[count_level]
    text = str(count_level).strip()
    try:
        fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        fraction = float("nan")
    if not 0 < fraction <= 10:  # also refuses nan
        raise InputError(f"count_level must be 'full', a percentage such as '10%' or '0.3%', or a fraction in "
                         f"(0, 10] of the full level (1e6 trues per direct plane), got {count_level!r}")
    return fraction


def trues_per_direct_plane(count_level: str | float) -> float:
    """Mean true counts per direct-plane sinogram of a count level (:func:`count_fraction`; full = 1e6)."""
    return TRUES_PER_DIRECT_PLANE_FULL * count_fraction(count_level)


def simulate_pet(activity: torch.Tensor, mu_map: torch.Tensor, scanner: ScannerGeometry, grid: ImageGrid, *,
                 count_level: str = "10%", trues_per_plane: float | None = None, background_fraction: float = 0.3,
                 psf_fwhm_mm: float | None = 4.5, normalisation: torch.Tensor | None = None, noise: bool = True,
                 seed: int = 0, device: str | torch.device = "cpu",
                 projector: PETProjector | None = None) -> PETSimulation:
    """Simulate a PET acquisition of ``activity`` (nx, ny, nz) with attenuation from ``mu_map`` (1/mm).

    The global sensitivity is set so that the mean number of true counts per direct-plane (ring difference 0)
    sinogram is ``trues_per_plane`` (default: from ``count_level``), before detector normalisation (expected to
    have mean ~1); a uniform background of randoms + scatter
    adds ``background_fraction`` times the total trues. Poisson noise is drawn with a generator seeded by
    ``seed``, so the same call gives the same data.

    Args:
        activity: true activity image on ``grid``, >= 0.
        mu_map: linear attenuation coefficients (1/mm) on ``grid``.
        scanner, grid: acquisition geometry.
        count_level: "full", a percentage ("10%", "0.3%") or a fraction of the full level (1e6 trues per direct
            plane; :func:`count_fraction`).
        trues_per_plane: explicit count level; overrides ``count_level``.
        background_fraction: randoms + scatter as a fraction of trues (>= 0).
        psf_fwhm_mm: resolution of the simulated scanner (mm), None for none.
        normalisation: detector efficiencies (data-shaped sinogram), None for uniform.
        noise: draw Poisson counts (False: return the noiseless expectation as ``measured``).
        seed: seed of the Poisson noise.
        device: where to compute.
        projector: a prebuilt projector for (scanner, grid) to reuse.
    """
    activity = torch.as_tensor(activity, dtype=torch.float32, device=device)
    check_shape("activity", activity, grid.shape, "the image grid (nx, ny, nz)")
    if activity.dim() != 3:
        raise InputError(f"activity must be one (nx, ny, nz) volume, got shape {tuple(activity.shape)}")
    check_nonnegative("activity", activity)
    if activity.sum() <= 0:
        raise InputError("activity is zero everywhere; expected a positive total activity")
    target = trues_per_direct_plane(count_level) if trues_per_plane is None else float(trues_per_plane)
    if not target > 0:
        raise InputError(f"trues_per_plane must be > 0, got {trues_per_plane!r}")
    if not background_fraction >= 0:
        raise InputError(f"background_fraction must be >= 0, got {background_fraction!r}")
    projector = projector or PETProjector(scanner, grid, device=device)
    attenuation = attenuation_factors(projector, mu_map)
    efficiency = attenuation if normalisation is None else attenuation * _normalisation(normalisation, projector)

    direct = PETProjector(replace(scanner, max_ring_difference=0, span=1), grid, device=device)
    direct_trues = PETAcquisitionModel(direct, multiplicative=attenuation_factors(direct, mu_map),
                                       psf_fwhm_mm=psf_fwhm_mm).linear(activity[None]).sum().item()
    scale = target * scanner.n_direct_planes / direct_trues

    trues_model = PETAcquisitionModel(projector, multiplicative=scale * efficiency, psf_fwhm_mm=psf_fwhm_mm)
    trues = trues_model.linear(activity[None])[0]
    background = torch.full_like(trues, background_fraction * trues.sum().item() / trues.numel())
    model = PETAcquisitionModel(projector, multiplicative=scale * efficiency,
                                additive=background if background_fraction > 0 else None, psf_fwhm_mm=psf_fwhm_mm)
    noiseless = trues + background
    if noise:
        generator = torch.Generator(device=noiseless.device).manual_seed(int(seed))
        measured = torch.poisson(noiseless, generator=generator)
    else:
        measured = noiseless.clone()
    return PETSimulation(measured=measured, noiseless=noiseless, model=model, activity=activity,
                         attenuation=attenuation, true_counts=trues.sum().item(),
                         background_counts=background.sum().item())


def _normalisation(normalisation: torch.Tensor, projector: PETProjector) -> torch.Tensor:
    normalisation = torch.as_tensor(normalisation, dtype=torch.float32, device=projector.device)
    check_shape("normalisation", normalisation, projector.sinogram_shape(), "the scanner's data shape")
    check_nonnegative("normalisation", normalisation)
    return normalisation
