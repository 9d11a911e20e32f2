"""Centred, orthonormal FFTs over the trailing 1-3 axes of complex tensors (MONAI's centred FFT underneath).

Centred means the zero frequency sits at index n // 2 of each k-space axis, as in fastMRI, sigpy and MONAI;
orthonormal means ``ifft_centered(fft_centered(x)) == x`` and the adjoint of the FFT is its inverse.
"""
from __future__ import annotations

import torch
from monai.networks.blocks.fft_utils_t import fftn_centered_t, ifftn_centered_t

from diffrecon.checks import InputError


def check_complex(name: str, value: torch.Tensor, min_dims: int = 1) -> torch.Tensor:
    """Raise unless ``value`` is a complex tensor with at least ``min_dims`` dimensions; returns it."""
    if not isinstance(value, torch.Tensor) or not value.is_complex():
        kind = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise InputError(f"{name} must be a complex torch tensor (complex k-space or image), got {kind}")
    if value.dim() < min_dims:
        raise InputError(f"{name} has shape {tuple(value.shape)}; expected at least {min_dims} dimensions")
    return value


def fft_centered(image: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Centred orthonormal FFT of the last ``ndim`` axes: image -> k-space."""
    check_complex("image", image, ndim)
    return torch.view_as_complex(fftn_centered_t(torch.view_as_real(image), spatial_dims=ndim).contiguous())


def ifft_centered(kspace: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Centred orthonormal inverse FFT of the last ``ndim`` axes: k-space -> image (the adjoint of the FFT)."""
    check_complex("kspace", kspace, ndim)
    return torch.view_as_complex(ifftn_centered_t(torch.view_as_real(kspace), spatial_dims=ndim).contiguous())


def remove_readout_oversampling(kspace: torch.Tensor, dim: int, factor: int = 2) -> torch.Tensor:
    """Crop the readout axis ``dim`` to its central 1/``factor`` in image space and return to k-space.

    Scanners sample the (free) readout direction ``factor`` times finer than the field of view; dropping the
    outer image columns keeps the same object with an n / factor readout matrix.
    """
    check_complex("kspace", kspace)
    n = kspace.shape[dim]
    if factor < 1 or n % factor:
        raise InputError(f"readout oversampling factor {factor} must be >= 1 and divide the readout length {n}")
    keep = n // factor
    lines = ifft_centered(kspace.movedim(dim, -1), ndim=1)
    cropped = lines[..., (n - keep + 1) // 2:(n - keep + 1) // 2 + keep]
    return fft_centered(cropped.contiguous(), ndim=1).movedim(-1, dim)
