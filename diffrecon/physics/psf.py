"""Image-space Gaussian point-spread function: a separable blur, self-adjoint with zero padding."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from diffrecon.checks import InputError

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


class GaussianPSF:
    """Separable Gaussian blur of (B, nx, ny, nz) images with per-axis FWHM in mm.

    The kernels are symmetric and the boundary is zero-padded, so ``adjoint`` is the same blur.

    Args:
        fwhm_mm: full width at half maximum along (x, y, z) or one value for all axes; 0 disables an axis.
        voxel_size_mm: voxel size of the images it is applied to.
    """

    def __init__(self, fwhm_mm: float | tuple[float, float, float], voxel_size_mm: tuple[float, float, float]):
        fwhm = np.broadcast_to(np.asarray(fwhm_mm, dtype=np.float64), (3,))
        if not np.all(np.isfinite(fwhm)) or np.any(fwhm < 0):
            raise InputError(f"psf_fwhm_mm must be finite and >= 0, got {fwhm_mm!r}")
        self.fwhm_mm = tuple(float(f) for f in fwhm)
        self.kernels = [_gaussian_kernel(f * FWHM_TO_SIGMA / v) for f, v in zip(fwhm, voxel_size_mm)]

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """Blur ``image`` (B, nx, ny, nz) or (nx, ny, nz)."""
        unbatched = image.dim() == 3
        out = image[None, None] if unbatched else image[:, None]
        for axis, kernel in enumerate(self.kernels):
            if kernel is None:
                continue
            weight = torch.as_tensor(kernel, dtype=image.dtype, device=image.device)
            shape = [1, 1, 1, 1, 1]
            shape[2 + axis] = len(kernel)
            padding = [0, 0, 0]
            padding[axis] = len(kernel) // 2
            out = F.conv3d(out, weight.reshape(shape), padding=tuple(padding))
        return out[0, 0] if unbatched else out[:, 0]

    adjoint = __call__


def _gaussian_kernel(sigma_voxels: float) -> np.ndarray | None:
    """Normalised 1D Gaussian sampled at integer offsets out to 3 sigma; None for no blur."""
    if sigma_voxels < 1e-3:
        return None
    radius = max(1, int(np.ceil(3 * sigma_voxels)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma_voxels) ** 2)
    return kernel / kernel.sum()
