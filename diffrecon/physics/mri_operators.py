"""Cartesian MRI forward models: single-coil A = M F and multi-coil SENSE A = M F S, with exact adjoints.

Images are complex (..., *spatial) tensors; k-space is (..., *spatial) for one coil and (..., n_coils, *spatial)
for SENSE. ``spatial`` is the mask's shape, (x, y) or (x, y, z). The mask zeroes unsampled k-space, so Aᴴ y is
the zero-filled reconstruction and y is expected to hold zeros (or anything: they are ignored) there.
"""
from __future__ import annotations

import torch

from diffrecon.checks import InputError, check_finite
from diffrecon.physics.mri_fft import check_complex, fft_centered, ifft_centered


class MRIOperator:
    """A = M F (no coil maps) or A = M F S (SENSE, with coil sensitivity maps).

    Args:
        mask: boolean sampling mask of the spatial shape (x, y) or (x, y, z).
        coil_maps: complex sensitivities (..., n_coils, *spatial), or None for single-coil data.
        noise_sigma: σ of the complex noise of the data y = A x + n (E|n|² = σ²) where the acquisition says (a
            noise scan), else None; the discrepancy target of the diffusion methods uses it.
    """

    def __init__(self, mask: torch.Tensor, coil_maps: torch.Tensor | None = None, noise_sigma: float | None = None):
        mask = torch.as_tensor(mask)
        if mask.dim() not in (2, 3):
            raise InputError(f"mask has shape {tuple(mask.shape)}; expected a 2D (x, y) or 3D (x, y, z) mask")
        if mask.dtype != torch.bool:
            if not ((mask == 0) | (mask == 1)).all():
                raise InputError("mask must hold only 0/1 (or booleans)")
            mask = mask.bool()
        self.mask = mask
        self.noise_sigma = noise_sigma
        self.ndim = mask.dim()
        self.shape = tuple(mask.shape)
        if coil_maps is not None:
            check_complex("coil_maps", coil_maps, self.ndim + 1)
            if tuple(coil_maps.shape[-self.ndim:]) != self.shape:
                raise InputError(f"coil_maps has shape {tuple(coil_maps.shape)}; expected (..., n_coils, "
                                 f"{', '.join(map(str, self.shape))}) to match the mask")
            check_finite("coil_maps", coil_maps)
        self.coil_maps = coil_maps

    def to(self, device: str | torch.device) -> MRIOperator:
        """This operator with its mask and coil maps on ``device`` (once, instead of a copy at every call)."""
        maps = None if self.coil_maps is None else self.coil_maps.to(device)
        return MRIOperator(self.mask.to(device), maps, self.noise_sigma)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of the images this operator maps: the mask's, (x, y) or (x, y, z)."""
        return self.shape

    @property
    def n_coils(self) -> int:
        """Number of receive coils (1 without coil maps)."""
        return 1 if self.coil_maps is None else self.coil_maps.shape[-self.ndim - 1]

    @property
    def kspace_shape(self) -> tuple[int, ...]:
        """Trailing shape of the k-space this operator maps to."""
        return self.shape if self.coil_maps is None else (self.n_coils, *self.shape)

    def A(self, image: torch.Tensor) -> torch.Tensor:
        """Forward model: image (..., *spatial) -> masked k-space; a real image is taken as zero phase."""
        if not image.is_complex():
            image = image.to(torch.complex128 if image.dtype == torch.float64 else torch.complex64)
        if self.coil_maps is not None:
            image = image.unsqueeze(-self.ndim - 1) * self.coil_maps.to(image.device)
        return self.apply_mask(fft_centered(image, self.ndim))

    def A_adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        """Adjoint: masked k-space -> image; for SENSE the coil images are combined with conj(S)."""
        images = self.coil_images(kspace)
        if self.coil_maps is None:
            return images
        return (images * self.coil_maps.to(images.device).conj()).sum(-self.ndim - 1)

    def normal(self, image: torch.Tensor) -> torch.Tensor:
        """AᴴA image (the system matrix of CG-SENSE)."""
        return self.A_adjoint(self.A(image))

    def coil_images(self, kspace: torch.Tensor) -> torch.Tensor:
        """Zero-filled image of each coil: Fᴴ M y, same layout as ``kspace``."""
        return ifft_centered(self.apply_mask(kspace), self.ndim)

    def check_kspace(self, kspace: torch.Tensor, name: str = "kspace") -> torch.Tensor:
        """Raise unless ``kspace`` is finite complex data of the shape this operator produces; returns it."""
        check_complex(name, kspace, len(self.kspace_shape))
        if tuple(kspace.shape[-len(self.kspace_shape):]) != self.kspace_shape:
            what = "n_coils, " if self.coil_maps is not None else ""
            raise InputError(f"{name} has shape {tuple(kspace.shape)}; expected trailing shape {self.kspace_shape} "
                             f"({what}the mask's shape)")
        check_finite(name, kspace)
        return kspace

    def apply_mask(self, kspace: torch.Tensor) -> torch.Tensor:
        """Zero the unsampled k-space positions (M y)."""
        return torch.where(self.mask.to(kspace.device), kspace, torch.zeros((), dtype=kspace.dtype,
                                                                            device=kspace.device))
