"""Image quality metrics used in the PET and MRI reconstruction literature; numpy or torch inputs.

Definitions follow PET-DDS (Singh et al. 2024): PSNR uses the data range (max − min) of the reference;
CRC = (mean_lesion / mean_background − 1) / (true_lesion / true_background − 1).
"""
from __future__ import annotations

import numpy as np
import torch

from diffrecon.checks import InputError


def _array(value) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return np.abs(array) if np.iscomplexobj(array) else array.astype(np.float64)


def _pair(image, reference, mask=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    image, reference = _array(image), _array(reference)
    if image.shape != reference.shape:
        raise InputError(f"image has shape {image.shape}; expected the reference's shape {reference.shape}")
    if mask is not None:
        mask = _array(mask).astype(bool)
        if mask.shape != reference.shape:
            raise InputError(f"mask has shape {mask.shape}; expected the reference's shape {reference.shape}")
        if not mask.any():
            raise InputError("mask is empty; expected at least one voxel")
    return image, reference, mask


def nrmse(image, reference, mask=None) -> float:
    """‖x − ref‖ / ‖ref‖ over ``mask`` (default: all voxels)."""
    image, reference, mask = _pair(image, reference, mask)
    if mask is not None:
        image, reference = image[mask], reference[mask]
    return float(np.linalg.norm(image - reference) / np.linalg.norm(reference))


def psnr(image, reference, mask=None) -> float:
    """Peak signal-to-noise ratio in dB with the reference's data range (max − min); inf if identical."""
    image, reference, mask = _pair(image, reference, mask)
    if mask is not None:
        image, reference = image[mask], reference[mask]
    mse = np.mean((image - reference) ** 2)
    data_range = reference.max() - reference.min()
    return float("inf") if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


def ssim(image, reference, data_range: float | None = None, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004) with a Gaussian window (σ = 1.5 voxels, K1 0.01, K2 0.03), for 2D
    or 3D images (singleton axes dropped, so an (x, y, 1) slice is 2D); ``data_range`` defaults to the
    reference's max − min. Uses MONAI's implementation, which agrees with skimage's Gaussian SSIM to 1e-6."""
    from monai.metrics.regression import compute_ssim_and_cs

    image, reference, _ = _pair(image, reference)
    image, reference = np.squeeze(image), np.squeeze(reference)
    if image.ndim not in (2, 3):
        raise InputError(f"ssim expects a 2D or 3D image, got shape {image.shape}")
    data_range = float(reference.max() - reference.min()) if data_range is None else data_range
    size = int(2 * round(3.5 * sigma) + 1)
    if min(image.shape) < size:
        raise InputError(f"ssim needs every image side >= the {size}-voxel window, got shape {image.shape}")
    x = torch.as_tensor(image, dtype=torch.float64)[None, None]
    y = torch.as_tensor(reference, dtype=torch.float64)[None, None]
    ssim_map, _ = compute_ssim_and_cs(x, y, spatial_dims=image.ndim, kernel_size=[size] * image.ndim,
                                      kernel_sigma=[sigma] * image.ndim, data_range=data_range,
                                      kernel_type="gaussian", k1=0.01, k2=0.03)
    return float(ssim_map.mean())


def crc(image, reference, lesion_mask, background_mask) -> float:
    """Contrast recovery coefficient of one lesion: 1 for perfect recovery, 0 for no contrast."""
    image, reference, lesion = _pair(image, reference, lesion_mask)
    _, _, background = _pair(image, reference, background_mask)
    true_contrast = reference[lesion].mean() / reference[background].mean() - 1
    if abs(true_contrast) < 1e-12:
        raise InputError("lesion_mask has no contrast against background_mask in the reference")
    return float((image[lesion].mean() / image[background].mean() - 1) / true_contrast)


def background_cov(image, background_mask) -> float:
    """Coefficient of variation (std / mean) over a uniform background region."""
    image, _, mask = _pair(image, image, background_mask)
    values = image[mask]
    return float(values.std() / values.mean())


def bias_and_variance(realisations, reference, mask=None) -> tuple[float, float]:
    """Bias and variance across noise realisations (first axis of ``realisations``), relative to the reference.

    Per voxel j: bias_j = mean_r(x_rj) − ref_j and var_j = var_r(x_rj) (unbiased, over realisations). Returned:
    the root mean square of bias_j and the mean of var_j over ``mask``, both divided by the mean reference
    in the mask (squared for the variance) so they are relative, as in PET bias-variance studies.
    """
    stack = _array(realisations)
    if stack.ndim < 2 or stack.shape[0] < 2:
        raise InputError(f"realisations must stack at least 2 images along axis 0, got shape {stack.shape}")
    _, reference, mask = _pair(stack[0], reference, mask)
    mask = np.ones(reference.shape, dtype=bool) if mask is None else mask
    scale = reference[mask].mean()
    bias = (stack.mean(0) - reference)[mask]
    variance = stack.var(0, ddof=1)[mask]
    return float(np.sqrt(np.mean(bias ** 2)) / scale), float(variance.mean() / scale ** 2)
