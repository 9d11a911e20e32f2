"""Simulated undersampled MRI acquisitions: k-space of an image through A = M F [S] plus complex Gaussian noise."""
from __future__ import annotations

import torch

from diffrecon.checks import InputError, check_finite
from diffrecon.physics.mri_operators import MRIOperator


def simulate_kspace(image: torch.Tensor, mask: torch.Tensor, coil_maps: torch.Tensor | None = None,
                    snr_db: float | None = None, seed: int = 0) -> tuple[torch.Tensor, MRIOperator]:
    """Undersampled single- or multi-coil k-space of ``image`` and the operator that produced it.

    Args:
        image: real or complex image (..., *spatial); real images are taken as zero phase.
        mask: boolean sampling mask of the spatial shape.
        coil_maps: sensitivities (..., n_coils, *spatial) for multi-coil data (e.g. :func:`birdcage_maps`).
        snr_db: signal-to-noise ratio 20 log10(rms(signal) / σ) over the sampled k-space entries, where σ² is
            the variance of the complex noise (σ²/2 per real and imaginary part); None adds no noise.
        seed: noise seed.

    Returns:
        k-space with zeros at unsampled positions, and the :class:`MRIOperator` A with y = A x + noise.
    """
    if not isinstance(image, torch.Tensor):
        raise InputError(f"image must be a torch tensor, got {type(image).__name__}")
    check_finite("image", image)
    if not image.is_complex():
        image = image.to(torch.complex128 if image.dtype == torch.float64 else torch.complex64)
    operator = MRIOperator(mask, coil_maps)
    if tuple(image.shape[image.dim() - operator.ndim:]) != operator.shape:
        raise InputError(f"image has shape {tuple(image.shape)}; expected trailing shape {operator.shape} "
                         "(the mask's shape)")
    kspace = operator.A(image)
    if snr_db is None:
        return kspace, operator
    if not torch.isfinite(torch.as_tensor(float(snr_db))):
        raise InputError(f"snr_db must be a finite number, got {snr_db!r}")
    sampled = operator.mask.to(kspace.device).expand_as(kspace)
    signal_rms = kspace[sampled].abs().pow(2).mean().sqrt()
    sigma = signal_rms * 10 ** (-float(snr_db) / 20)
    generator = torch.Generator(device=kspace.device).manual_seed(int(seed))
    noise = torch.randn(kspace.shape, generator=generator, dtype=kspace.dtype, device=kspace.device)
    return kspace + torch.where(sampled, sigma * noise, 0), operator
