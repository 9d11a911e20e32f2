"""Image quality metrics used in the PET and MRI reconstruction literature; numpy or torch inputs.

Definitions follow PET-DDS (Singh et al. 2024): PSNR uses the data range (max − min) of the reference;
CRC = (mean_lesion / mean_background − 1) / (true_lesion / true_background − 1).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from diffrecon.checks import InputError, check_finite


def _array(value) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return np.abs(array) if np.iscomplexobj(array) else array.astype(np.float64)


def _pair(image, reference, mask=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    image, reference = _array(image), _array(reference)
    check_finite("image", image)
    check_finite("reference", reference)
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


def ssim_window(sigma: float = 1.5) -> int:
    """The side of :func:`ssim`'s Gaussian window (σ truncated at 3.5σ): images must be at least this big."""
    return 2 * int(3.5 * sigma + 0.5) + 1


def ssim(image, reference, mask=None, data_range: float | None = None, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004) of a 2D or 3D image (singleton axes dropped, so an (x, y, 1)
    slice is 2D), with skimage's Gaussian-window conventions (σ = 1.5 voxels truncated at 3.5σ, K1 0.01,
    K2 0.03, population covariances, the SSIM map averaged away from the border where the window fits).

    ``data_range`` defaults to the reference's max − min; ``mask`` restricts the average of the SSIM map. Computed
    in float64 (MONAI's SSIM casts to float32, which breaks down for images with a large offset).
    """
    image, reference, mask = _pair(image, reference, mask)
    image, reference = np.squeeze(image), np.squeeze(reference)
    if image.ndim not in (2, 3):
        raise InputError(f"ssim expects a 2D or 3D image, got shape {image.shape}")
    radius = ssim_window(sigma) // 2
    if min(image.shape) < 2 * radius + 1:
        raise InputError(f"ssim needs every image side >= the {2 * radius + 1}-voxel window, got shape "
                         f"{image.shape}")
    data_range = float(reference.max() - reference.min()) if data_range is None else data_range
    offset = reference.mean()  # local (co)variances are offset-free; removing it keeps float64 cancellation small
    x, y = image - offset, reference - offset

    def local_mean(values: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(values, sigma, truncate=3.5)

    mean_x, mean_y = local_mean(x), local_mean(y)
    var_x, var_y = local_mean(x * x) - mean_x ** 2, local_mean(y * y) - mean_y ** 2
    covariance = local_mean(x * y) - mean_x * mean_y
    mean_x, mean_y = mean_x + offset, mean_y + offset
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * covariance + c2)
                / ((mean_x ** 2 + mean_y ** 2 + c1) * (var_x + var_y + c2)))
    inner = tuple(slice(radius, n - radius) for n in image.shape)
    if mask is None:
        return float(ssim_map[inner].mean())
    mask = np.squeeze(mask)[inner]
    if not mask.any():
        raise InputError(f"mask has no voxel at least {radius} voxels from the image border, where ssim is defined")
    return float(ssim_map[inner][mask].mean())


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
    check_finite("realisations", stack)
    if stack.ndim < 2 or stack.shape[0] < 2:
        raise InputError(f"realisations must stack at least 2 images along axis 0, got shape {stack.shape}")
    _, reference, mask = _pair(stack[0], reference, mask)
    mask = np.ones(reference.shape, dtype=bool) if mask is None else mask
    scale = reference[mask].mean()
    bias = (stack.mean(0) - reference)[mask]
    variance = stack.var(0, ddof=1)[mask]
    return float(np.sqrt(np.mean(bias ** 2)) / scale), float(variance.mean() / scale ** 2)


def phantom_metrics(image, truth, labels, lesion_masks, white_matter) -> dict[str, float]:
    """The figures every PET benchmark of a brain phantom reports: PSNR and SSIM over the image, NRMSE over the
    brain (CSF, grey and white matter labels 1-3), CRC averaged over hot and over cold lesions (against
    lesion-free white matter; NaN where there is none of a kind) and the white-matter coefficient of variation.

    Args:
        image, truth: (x, y, z) images.
        labels: tissue labels of :mod:`diffrecon.data.phantoms` (1 CSF, 2 grey, 3 white matter).
        lesion_masks: (n_lesions, x, y, z) boolean masks (possibly none).
        white_matter: white-matter fraction map; > 0.9 and lesion-free is the background region.
    """
    image, truth = _array(image), _array(truth)
    lesion_masks = np.asarray(lesion_masks, dtype=bool).reshape(-1, *truth.shape)
    brain = np.isin(np.asarray(labels), [1, 2, 3])
    white = (np.asarray(white_matter) > 0.9) & ~lesion_masks.any(axis=0)
    kinds = {"hot": [], "cold": []}
    for mask in lesion_masks:
        contrast = truth[mask].mean() / truth[white].mean() - 1
        kinds["hot" if contrast > 0 else "cold"].append(crc(image, truth, mask, white))
    return {"psnr_db": psnr(image, truth), "ssim": ssim(image, truth), "nrmse": nrmse(image, truth, brain),
            "crc_hot_lesions": float(np.mean(kinds["hot"])) if kinds["hot"] else float("nan"),
            "crc_cold_lesions": float(np.mean(kinds["cold"])) if kinds["cold"] else float("nan"),
            "white_matter_cov": background_cov(image, white)}
