"""Quality checks of a trained prior: a tissue contrast ratio measured the same way on samples and on training
images, and the resemblance of samples to training images. Pure measurements: the figures of the bundle docs
are written by ``diffrecon.io.figures``."""
from __future__ import annotations

import numpy as np
import torch

from diffrecon.checks import InputError


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
