"""Quality checks of a trained prior: a tissue contrast ratio measured the same way on samples and on training
images, the resemblance of samples to training images, and how much better the prior's Tweedie estimate
denoises an image than the best Gaussian filter (the check that a prior helps on images it was not trained on).
Pure measurements: the figures of the bundle docs are written by ``diffrecon.io.figures``."""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from diffrecon.checks import InputError
from diffrecon.priors.prior import ScoreModel


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """Threshold between two classes of ``values`` that maximises the between-class variance (Otsu)."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    mean = np.cumsum(counts * centres)
    total_weight, total_mean = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight - mean * total_weight) ** 2 / (weight * (total_weight - weight))
    return float(centres[np.nanargmax(between[:-1])])


def tissue_ratio(image: np.ndarray | torch.Tensor, floor: float = 0.2) -> float:
    """Mean of the bright class over the mean of the dark class among tissue pixels of one image.

    Tissue pixels are those above ``floor`` times the image's 99th percentile; the classes are split by Otsu's
    threshold. In FDG PET the classes are grey and white matter, so this is the grey/white activity ratio
    (diluted by partial volume); it needs no labels, so samples and training images are measured alike.
    """
    values = np.asarray(image, dtype=np.float64).reshape(-1)
    tissue = values[values > floor * np.percentile(values, 99)]
    if tissue.size < 16 or tissue.max() <= tissue.min():
        raise InputError("image has fewer than 16 distinct tissue pixels; cannot measure a tissue ratio")
    threshold = otsu_threshold(tissue)
    bright, dark = tissue[tissue > threshold], tissue[tissue <= threshold]
    return float(bright.mean() / dark.mean())


def median_tissue_ratio(images: np.ndarray | torch.Tensor) -> tuple[float, int]:
    """Median of :func:`tissue_ratio` over the images of a stack (n, rows, cols) where it can be measured,
    and how many those were."""
    ratios = []
    for image in np.asarray(images):
        try:
            ratios.append(tissue_ratio(image))
        except InputError:
            continue
    if not ratios:
        raise InputError("no image of the stack has enough tissue to measure a tissue ratio")
    return float(np.median(ratios)), len(ratios)


def nearest_correlation(images: np.ndarray | torch.Tensor, references: np.ndarray | torch.Tensor) -> np.ndarray:
    """For each image (n, rows, cols), the highest Pearson correlation with any reference image (m, rows, cols):
    near 1 when a sample resembles some training image, low for noise or structures no training image has."""
    def standardise(stack):
        flat = torch.as_tensor(np.asarray(stack), dtype=torch.float64).flatten(1)
        flat = flat - flat.mean(1, keepdim=True)
        return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return (standardise(images) @ standardise(references).T).max(dim=1).values.numpy()


# Widths (standard deviation in pixels, 0 = no filter) searched for the best Gaussian filter: geometric steps of
# about 18% from a quarter pixel to 8 pixels, fine enough that the oracle's MSE is within a few per cent of the
# continuous optimum.
GAUSSIAN_WIDTHS = (0.0, *np.geomspace(0.25, 8.0, 22).round(3).tolist())


def masked_mse(estimates: np.ndarray | torch.Tensor, clean: np.ndarray | torch.Tensor,
               masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """Mean squared error of each image of a stack (n, rows, cols) over the pixels of its mask, as (n,).

    Raises:
        InputError: the three stacks differ in shape, or a mask selects no pixel.
    """
    estimates, clean, masks = (np.asarray(torch.as_tensor(v).detach().cpu()) for v in (estimates, clean, masks))
    if not estimates.shape == clean.shape == masks.shape or estimates.ndim != 3:
        raise InputError(f"estimates {estimates.shape}, clean {clean.shape} and masks {masks.shape} must be stacks "
                         "(n, rows, cols) of one shape")
    masks = masks.astype(bool)
    counts = masks.sum(axis=(1, 2))
    if (counts == 0).any():
        raise InputError(f"masks of images {np.flatnonzero(counts == 0).tolist()} select no pixel")
    errors = (estimates.astype(np.float64) - clean) ** 2
    return (errors * masks).sum(axis=(1, 2)) / counts


def best_gaussian_filter(noisy: np.ndarray | torch.Tensor, clean: np.ndarray | torch.Tensor,
                         masks: np.ndarray | torch.Tensor,
                         widths: tuple[float, ...] = GAUSSIAN_WIDTHS) -> tuple[np.ndarray, np.ndarray]:
    """The oracle Gaussian filter of each noisy image (n, rows, cols): its masked MSE against the clean image
    with the width of ``widths`` (standard deviation in pixels; 0 leaves the image as it is) that minimises
    that MSE, chosen per image. The baseline a learned denoiser must beat to be worth more than smoothing.

    Returns:
        (MSE (n,), chosen width (n,)).
    """
    if not widths or min(widths) < 0:
        raise InputError(f"widths must be a non-empty sequence of non-negative pixel widths, got {widths}")
    noisy = np.asarray(torch.as_tensor(noisy).detach().cpu(), dtype=np.float64)
    errors = np.stack([masked_mse(gaussian_filter(noisy, (0, w, w)) if w > 0 else noisy, clean, masks)
                       for w in widths])
    best = errors.argmin(axis=0)
    return errors[best, np.arange(len(best))], np.asarray(widths, dtype=np.float64)[best]


def tweedie_vs_gaussian(prior: ScoreModel, clean: torch.Tensor, masks: torch.Tensor, ratio: float,
                        generator: torch.Generator, widths: tuple[float, ...] = GAUSSIAN_WIDTHS,
                        batch_size: int = 64) -> dict[str, object]:
    """How much better a VP prior's Tweedie estimate denoises images than the best Gaussian filter.

    The clean images (n, rows, cols), in the prior's units, are noised at the training timestep whose
    ``sigma / alpha`` is closest to ``ratio`` (``x_t = alpha x_0 + sigma z``, ``z`` drawn from ``generator``);
    the Tweedie estimate ``(x_t - sigma eps) / alpha`` and the oracle Gaussian filter of ``x_t / alpha``
    (:func:`best_gaussian_filter`) are both scored by their MSE over ``masks``. Below 1, the ratio of the two
    says the prior knows more about such images than that they are smooth.

    Args:
        prior: a score model with a VP schedule, over images shaped like ``clean``.
        clean: clean images (n, rows, cols).
        masks: pixels scored (n, rows, cols), e.g. the emission voxels.
        ratio: noise level as ``sigma / alpha`` (the noise standard deviation relative to the image scale).
        generator: draws the noise, so the measurement is reproducible.
        widths: Gaussian widths searched (pixels).
        batch_size: images per network call.

    Returns:
        ``timestep``, ``sigma_over_alpha`` (of that timestep), and per image ``mse_tweedie``, ``mse_gaussian``,
        ``gaussian_width`` and ``ratio`` (MSE of the Tweedie estimate over that of the Gaussian), as arrays;
        ``noisy`` (``x_t / alpha``) and ``tweedie``, the images (n, rows, cols), for figures.

    Raises:
        InputError: a schedule that is not VP, or mismatched or empty stacks or masks.
    """
    schedule = prior.schedule
    if schedule.kind != "vp":
        raise InputError(f"prior has a {schedule.kind.upper()} schedule; expected a VP prior")
    clean = torch.as_tensor(clean, dtype=torch.float32)
    timestep = int(schedule.timesteps_for_ratio(ratio).round())
    alpha, sigma = (float(v) for v in schedule.alpha_sigma(timestep))
    noisy = alpha * clean + sigma * torch.randn(clean.shape, generator=generator, dtype=clean.dtype)
    with torch.no_grad():
        tweedie = torch.cat([prior.tweedie(chunk, timestep) for chunk in noisy.split(batch_size)])
    mse_tweedie = masked_mse(tweedie, clean, masks)
    mse_gaussian, width = best_gaussian_filter(noisy / alpha, clean, masks, widths)
    return {"timestep": timestep, "sigma_over_alpha": sigma / alpha, "mse_tweedie": mse_tweedie,
            "mse_gaussian": mse_gaussian, "gaussian_width": width, "ratio": mse_tweedie / mse_gaussian,
            "noisy": (noisy / alpha).numpy(), "tweedie": tweedie.numpy()}
