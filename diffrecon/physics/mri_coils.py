"""Receive-coil sensitivities: ESPIRiT estimation (sigpy), synthetic birdcage maps, and coil combination."""
from __future__ import annotations

import numpy as np
import torch
from monai.apps.reconstruction.mri_utils import root_sum_of_squares_t

from diffrecon.checks import InputError, check_finite, check_integer
from diffrecon.physics.mri_fft import check_complex, ifft_centered
from diffrecon.physics.mri_masks import calibration_width, central_block
from diffrecon.physics.mri_operators import MRIOperator


ESPIRIT_CROPS = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.0)  # eigenvalue thresholds tried in turn (sigpy's default first)


def rss(coil_images: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Root-sum-of-squares magnitude over the coil axis (the one before the ``ndim`` spatial axes)."""
    check_complex("coil_images", coil_images, ndim + 1)
    return root_sum_of_squares_t(coil_images.abs(), spatial_dim=-ndim - 1)


def sense_combine(coil_images: torch.Tensor, coil_maps: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """Sensitivity-weighted combination Σ conj(S_c) x_c / Σ |S_c|² (0 where no coil sees the voxel)."""
    check_complex("coil_images", coil_images, ndim + 1)
    check_complex("coil_maps", coil_maps, ndim + 1)
    if coil_maps.shape[-ndim - 1:] != coil_images.shape[-ndim - 1:]:
        raise InputError(f"coil_maps has shape {tuple(coil_maps.shape)}; expected trailing shape "
                         f"{tuple(coil_images.shape[-ndim - 1:])} to match the coil images")
    weight = (coil_maps.abs() ** 2).sum(-ndim - 1)
    combined = (coil_maps.conj() * coil_images).sum(-ndim - 1)
    return torch.where(weight > 0, combined / weight.clamp_min(torch.finfo(weight.dtype).tiny), 0)


def espirit_maps(kspace: torch.Tensor, calibration: int = 24, kernel_width: int = 6, threshold: float = 0.02,
                 crop: float = 0.95) -> torch.Tensor:
    """ESPIRiT sensitivity maps (Uecker et al. 2014) from the fully sampled centre of multi-coil k-space.

    Runs sigpy's ``EspiritCalib`` on the CPU and returns maps on ``kspace``'s device and dtype.

    Args:
        kspace: centred k-space (n_coils, *spatial), spatial 2D or 3D; only the central ``calibration``
            samples per axis are used, so they must be fully sampled there.
        calibration: width of the calibration region in samples (per axis).
        kernel_width: ESPIRiT kernel width; must be smaller than ``calibration``.
        threshold: singular-value threshold of the calibration matrix, relative to the largest.
        crop: eigenvalue threshold below which maps are set to zero (outside the object).
    """
    import sigpy.mri

    check_complex("kspace", kspace, 3)
    if kspace.dim() not in (3, 4):
        raise InputError(f"kspace has shape {tuple(kspace.shape)}; expected (n_coils, x, y) or (n_coils, x, y, z)")
    check_finite("kspace", kspace)
    if not kernel_width < calibration <= min(kspace.shape[1:]):
        raise InputError(f"calibration {calibration} must exceed kernel_width {kernel_width} and fit in the "
                         f"k-space matrix {tuple(kspace.shape[1:])}")
    data = kspace.detach().cpu().numpy().astype(np.complex128)
    maps = sigpy.mri.app.EspiritCalib(data, calib_width=calibration, thresh=threshold, kernel_width=kernel_width,
                                      crop=crop, show_pbar=False).run()
    return torch.as_tensor(np.asarray(maps)).to(device=kspace.device, dtype=kspace.dtype)


def sense_operator(kspace: torch.Tensor, mask: torch.Tensor, kernel_width: int | None = None) -> MRIOperator:
    """The acquisition operator for measured k-space (n_coils, *spatial): SENSE with ESPIRiT maps from the fully
    sampled centre of ``mask`` for several coils, A = M F for one coil.

    ``kernel_width`` None (default) takes an ESPIRiT kernel of a third of the calibration width, from 3 to 6: the
    usual 6 wants a calibration region of 18 or more (24 in the ESPIRiT paper). An 8% centre of 128 lines is 10
    wide; there a kernel of 6 leaves 25 calibration patches for 288 unknowns and maps whose worst voxels are off by
    about 9% (1st-percentile overlap with the true maps 0.91, against 0.98 with a kernel of 3), which cost DDS 1-3.3
    dB on validation phantoms (docs/mri_diffusion.md, ``scripts/check_coil_maps.py``)."""
    check_complex("kspace", kspace, mask.dim() + 1)
    if kspace.dim() != mask.dim() + 1:
        spatial = ", ".join(map(str, mask.shape))
        raise InputError(f"kspace has shape {tuple(kspace.shape)}; expected (n_coils, {spatial}) to match the mask")
    if kspace.shape[0] == 1:
        return MRIOperator(mask)
    width = calibration_width(mask)
    if width < 4:
        raise InputError(f"mask has a fully sampled centre of {width} samples; ESPIRiT coil maps need at least 4 "
                         "(raise the centre fraction)")
    kernel = min(6, max(3, width // 3)) if kernel_width is None else check_integer("kernel_width", kernel_width)
    if kernel >= width:
        raise InputError(f"kernel_width {kernel} must be smaller than the fully sampled centre of {width} samples")
    # ESPIRiT zeroes the maps where the eigenvalue is below ``crop``; a small calibration region depresses every
    # eigenvalue (10 lines at R = 8 leave none above 0.95, and empty maps give an empty image), so the crop is
    # lowered until the maps cover the object (98% of the voxels of the low-resolution image above 10% of its
    # maximum), down to no crop at all
    low_resolution = rss(ifft_centered(kspace * _central_block(mask.shape, width, kspace.device), mask.dim()),
                         mask.dim())
    inside = low_resolution > 0.1 * low_resolution.max()
    for crop in ESPIRIT_CROPS:
        maps = espirit_maps(kspace, calibration=width, kernel_width=kernel, crop=crop)
        if (maps.abs().pow(2).sum(0)[inside] > 0.5).float().mean() >= 0.98:
            break
    return MRIOperator(mask, maps)


def _central_block(shape: tuple[int, ...], width: int, device: torch.device) -> torch.Tensor:
    """Boolean mask of the central width x width (x width) block, as :func:`calibration_width` places it."""
    block = torch.zeros(shape, dtype=torch.bool, device=device)
    block[central_block(shape, (width,) * len(shape))] = True
    return block


def birdcage_maps(shape: tuple[int, ...], n_coils: int, radius: float = 1.5, dtype: torch.dtype = torch.complex64,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Synthetic birdcage sensitivities (n_coils, *shape), normalised to unit root-sum-of-squares (sigpy's model).

    Args:
        shape: spatial shape (x, y) or (x, y, z).
        n_coils: number of coils around the object (for 3D, in rings of up to 8 along z).
        radius: coil radius relative to the field of view.
    """
    import sigpy.mri

    if int(n_coils) < 1:
        raise InputError(f"n_coils must be >= 1, got {n_coils}")
    if len(shape) not in (2, 3):
        raise InputError(f"shape {tuple(shape)} must be (x, y) or (x, y, z)")
    rings = 1 if len(shape) == 2 else max(1, int(np.ceil(n_coils / 8)))
    if n_coils % rings:
        raise InputError(f"n_coils {n_coils} must be a multiple of the {rings} coil rings of a 3D birdcage")
    maps = sigpy.mri.birdcage_maps((n_coils, *shape), r=radius, nzz=n_coils // rings, dtype=np.complex128)
    return torch.as_tensor(maps).to(device=device, dtype=dtype)
