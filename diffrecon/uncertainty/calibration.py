"""Posterior summaries and calibration of a sampler's standard deviation against a known truth.

Every statistic here works on magnitudes: complex (MRI) samples are summarised by the magnitude of their mean and
by the spread of the samples around the complex mean (as :func:`diffrecon.methods.base.summarize_samples`), and the
truth of an MRI case is a magnitude image. Definitions:

- z-score map: z = (truth − mean) / std, voxel by voxel, with std floored at ``STD_FLOOR`` times the largest std
  so a voxel of zero spread gives a large, finite z instead of a division by zero.
- coverage of mean ± k·std: the fraction of the mask's voxels with |truth − mean| <= k·std. A Gaussian posterior
  that is calibrated covers about 68.3% at k = 1 and 95.4% at k = 2.
- quantile coverage at level p: the fraction of voxels whose truth lies within the samples' central interval
  [q_(1−p)/2, q_(1+p)/2] (linear interpolation between order statistics).
- calibration curve: nominal level p against the empirical coverage of the Gaussian interval
  mean ± Φ⁻¹((1+p)/2)·std (and of the quantile interval when samples are given).
- recalibration factor (:func:`fit_std_calibration`): the factor c by which the std must be multiplied so that
  mean ± k·c·std covers the ``target`` fraction of the voxels pooled over the validation cases. It is the split-
  conformal quantile of the scores s = |truth − mean| / (k·std): c = the ⌈(n + 1)·target⌉-th smallest of the n
  pooled scores (Angelopoulos and Bates 2021), so on exchangeable new voxels the coverage is at least ``target``.
  One factor for the whole image; it holds for the method, scanner, count level and subjects it was fitted on.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import erfinv

from diffrecon.checks import InputError, check_positive

STD_FLOOR = 1e-6
"""Fraction of the largest std below which a voxel's std is floored (z-scores and scores stay finite)."""
SUMMARY_QUANTILES = (0.05, 0.5, 0.95)
CURVE_LEVELS = tuple(np.round(np.arange(0.1, 1.0, 0.1), 2)) + (0.95, 0.99)


def as_magnitude(name: str, value: Any) -> np.ndarray:
    """``value`` (tensor or array) as a float64 numpy array of magnitudes; refuses NaN/Inf, naming ``name``."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"{name} has dtype {array.dtype}; expected numbers")
    array = np.abs(array) if np.iscomplexobj(array) else array.astype(np.float64)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise InputError(f"{name} contains {bad} NaN/Inf value(s); expected finite numbers")
    return array


def check_samples(samples: Any, minimum: int = 1) -> np.ndarray:
    """``samples`` (num_samples, *image shape) as a numpy array (complex kept) after checking their count."""
    array = samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    if array.ndim < 2 or array.shape[0] < minimum:
        raise InputError(f"samples has shape {array.shape}; expected (num_samples >= {minimum}, *image shape)")
    if not np.isfinite(array).all():
        raise InputError(f"samples contains {int((~np.isfinite(array)).sum())} NaN/Inf value(s); expected finite")
    return array


def check_mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """A boolean mask of ``shape`` (all True when ``mask`` is None); refuses another shape or an empty mask."""
    if mask is None:
        return np.ones(shape, dtype=bool)
    mask = (mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)).astype(bool)
    if mask.shape != tuple(shape):
        raise InputError(f"{name} has shape {mask.shape}; expected the image's shape {tuple(shape)}")
    if not mask.any():
        raise InputError(f"{name} is empty; expected at least one voxel")
    return mask


def _same_shape(reference: np.ndarray, **others: np.ndarray) -> None:
    for name, array in others.items():
        if array.shape != reference.shape:
            raise InputError(f"{name} has shape {array.shape}; expected the reference's shape {reference.shape}")


def _floored(std: np.ndarray) -> np.ndarray:
    """std floored at ``STD_FLOOR`` × its maximum; refuses a std that is negative or zero everywhere."""
    if (std < 0).any():
        raise InputError(f"std has {int((std < 0).sum())} negative value(s); expected a standard deviation >= 0")
    peak = float(std.max())
    if peak <= 0:
        raise InputError("std is zero everywhere (one sample, or a deterministic method); z-scores and coverage "
                         "need a posterior spread: draw num_samples >= 2")
    return np.maximum(std, STD_FLOOR * peak)


@dataclass
class PosteriorSummary:
    """Voxel-wise summary of posterior samples (magnitudes for complex samples).

    Attributes:
        mean: posterior mean (magnitude of the complex mean).
        std: standard deviation around the mean (unbiased; 0 for one sample).
        quantiles: level -> voxel-wise quantile of the samples (e.g. 0.05, 0.5, 0.95).
        num_samples: how many samples were summarised.
    """

    mean: np.ndarray
    std: np.ndarray
    quantiles: dict[float, np.ndarray]
    num_samples: int


def posterior_summary(samples: Any, quantiles: Sequence[float] = SUMMARY_QUANTILES) -> PosteriorSummary:
    """Mean, std and voxel quantiles of ``samples`` (num_samples, *image shape): what a user reads beside the image.

    Raises:
        InputError: no samples, NaN/Inf, or a quantile outside [0, 1] (named).
    """
    array = check_samples(samples)
    for level in quantiles:
        if not 0.0 <= float(level) <= 1.0:
            raise InputError(f"quantiles must lie in [0, 1], got {level!r}")
    mean = array.mean(0)
    n = array.shape[0]
    std = (np.sqrt((np.abs(array - mean) ** 2).sum(0) / (n - 1)) if n > 1 else np.zeros(mean.shape))
    magnitudes = np.abs(array) if np.iscomplexobj(array) else array.astype(np.float64)
    levels = [float(q) for q in quantiles]
    values = np.quantile(magnitudes, levels, axis=0) if levels else []
    return PosteriorSummary(np.abs(mean).astype(np.float64), std.astype(np.float64),
                            dict(zip(levels, values)), n)


def z_scores(reference: Any, mean: Any, std: Any) -> np.ndarray:
    """The z-score map (truth − mean) / std (std floored, see the module notes): where and by how many standard
    deviations the truth lies outside what the posterior claims."""
    reference, mean, std = as_magnitude("reference", reference), as_magnitude("mean", mean), as_magnitude("std", std)
    _same_shape(reference, mean=mean, std=std)
    return (reference - mean) / _floored(std)


def coverage(reference: Any, mean: Any, std: Any, ks: Sequence[float] = (1.0, 2.0), mask: Any = None
             ) -> dict[float, float]:
    """Fraction of the ``mask``'s voxels where the truth lies within mean ± k·std, for each k of ``ks``."""
    z = np.abs(z_scores(reference, mean, std))
    inside = check_mask(mask, z.shape)
    return {float(k): float((z[inside] <= check_positive("k", k)).mean()) for k in ks}


def quantile_coverage(reference: Any, samples: Any, levels: Sequence[float] = (0.5, 0.9), mask: Any = None
                      ) -> dict[float, float]:
    """Fraction of the ``mask``'s voxels whose truth lies within the samples' central interval of each level."""
    array = check_samples(samples, minimum=2)
    magnitudes = np.abs(array) if np.iscomplexobj(array) else array.astype(np.float64)
    reference = as_magnitude("reference", reference)
    _same_shape(reference, samples=magnitudes[0])
    inside = check_mask(mask, reference.shape)
    result = {}
    for level in levels:
        if not 0.0 < float(level) < 1.0:
            raise InputError(f"levels must lie in (0, 1), got {level!r}")
        low, high = np.quantile(magnitudes, [(1 - level) / 2, (1 + level) / 2], axis=0)
        result[float(level)] = float(((reference >= low) & (reference <= high))[inside].mean())
    return result


def gaussian_k(level: float) -> float:
    """The k for which mean ± k·std holds ``level`` of a Gaussian: Φ⁻¹((1 + level) / 2)."""
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"level must lie in (0, 1), got {level!r}")
    return float(math.sqrt(2.0) * erfinv(float(level)))


def calibration_curve(reference: Any, mean: Any, std: Any, samples: Any = None,
                      levels: Sequence[float] = CURVE_LEVELS, mask: Any = None) -> dict[str, list[float]]:
    """Nominal level against empirical coverage: ``gaussian`` for mean ± Φ⁻¹((1+p)/2)·std and, with ``samples``,
    ``quantile`` for the samples' central intervals; a calibrated std lies on the diagonal."""
    ks = [gaussian_k(level) for level in levels]
    gaussian = coverage(reference, mean, std, ks, mask)
    curve = {"nominal": [float(level) for level in levels], "gaussian": [gaussian[float(k)] for k in ks]}
    if samples is not None:
        curve["quantile"] = list(quantile_coverage(reference, samples, levels, mask).values())
    return curve


@dataclass
class StdCalibration:
    """A recalibration factor of a method's std and where it holds.

    Attributes:
        factor: multiply the std by this (c of the module notes).
        target: the coverage it was fitted to reach (e.g. 0.95).
        k: of the interval mean ± k·c·std it was fitted for.
        scope: where it holds, as written into reports and the std series' description (method, scanner, counts).
        voxels: pooled voxels it was fitted on.
        cases: validation cases it was fitted on.
        details: anything else worth keeping (subject seeds, samples per case).
    """

    factor: float
    target: float
    k: float
    scope: str
    voxels: int = 0
    cases: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Short text for a DICOM SeriesDescription, e.g. "x2.65 cal demo2d 1%"."""
        return f"x{self.factor:.2f} cal {self.scope}".strip()

    def applies_to(self, physics: Any, data: Any, num_samples: int | None = None,
                   settings: dict[str, Any] | None = None) -> bool:
        """Whether a call lies in the scope the factor was fitted for, by the ``details`` set: "scanner" (name of
        a PET model's scanner geometry), "trues_per_sinogram" (measured counts minus the expected background, per
        sinogram) within a factor "count_tolerance" (default 2), "acceleration" (of an MRI sampling mask) within a
        factor "acceleration_tolerance" (default 1.25), "mask_dims" (2: single slices, 3: 3D k-space),
        "min_samples" (the std of fewer samples is noisier and needs a larger factor) and "settings" (the method's
        settings it was fitted with)."""
        fitted = self.details.get("settings") or {}
        if fitted and (settings is None or any(settings.get(key) != value for key, value in fitted.items())):
            return False
        minimum = self.details.get("min_samples")
        if minimum is not None and (num_samples is None or num_samples < minimum):
            return False
        scanner = self.details.get("scanner")
        if scanner is not None:
            geometry = getattr(getattr(physics, "projector", None), "scanner", None)
            if getattr(geometry, "name", None) != scanner:
                return False
        expected = self.details.get("trues_per_sinogram")
        if expected is not None:
            measured = trues_per_sinogram(data, physics)
            tolerance = float(self.details.get("count_tolerance", 2.0))
            if measured is None or not expected / tolerance <= measured <= expected * tolerance:
                return False
        dims = self.details.get("mask_dims")
        if dims is not None and getattr(getattr(physics, "mask", None), "ndim", None) != dims:
            return False
        expected = self.details.get("acceleration")
        if expected is not None:
            measured = acceleration_of(physics)
            tolerance = float(self.details.get("acceleration_tolerance", 1.25))
            if measured is None or not expected / tolerance <= measured <= expected * tolerance:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (reports)."""
        return asdict(self)

    def apply(self, std: torch.Tensor) -> torch.Tensor:
        """``std`` multiplied by the factor."""
        return std * self.factor


def phantom_calibration(factor: float, scope: str, settings: Mapping[str, Any], *, cases: int, voxels: int,
                        validation_seeds: str, min_samples: int = 16, **limits: Any) -> StdCalibration:
    """A factor fitted on validation phantoms by scripts/calibrate_uncertainty.py (95% at 2 std; docs/uncertainty.md)
    as a method stores it: it holds for the method's ``settings`` it was fitted with (a setting given as None must be
    absent or None, e.g. ``"mr": None``: not with an MR-conditioned prior), at least ``min_samples``
    samples and the ``limits`` of :meth:`StdCalibration.applies_to` (scanner, trues_per_sinogram, acceleration and
    their tolerances)."""
    return StdCalibration(factor, 0.95, 2.0, scope, voxels, cases,
                          details={**limits, "min_samples": min_samples, "settings": dict(settings),
                                   "validation_seeds": validation_seeds,
                                   "fitted_by": "scripts/calibrate_uncertainty.py (docs/uncertainty.md)"})


def trues_per_sinogram(data: Any, physics: Any) -> float | None:
    """Measured PET counts minus the model's expected background, per sinogram (None for other physics): the
    count level a calibration's scope is checked against."""
    if not hasattr(physics, "add_background") or not isinstance(data, torch.Tensor) or data.is_complex():
        return None
    additive = getattr(physics, "additive", None)
    background = 0.0 if additive is None else float(additive.sum())
    return (float(data.sum()) - background) / max(1, int(data.shape[-3]))


def acceleration_of(physics: Any) -> float | None:
    """The acceleration of an MRI sampling mask (its points over the sampled ones; None for other physics): what
    an MRI calibration's scope is checked against."""
    mask = getattr(physics, "mask", None)
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or not bool(mask.any()):
        return None
    return mask.numel() / int(mask.sum())


def conformal_scores(reference: Any, mean: Any, std: Any, k: float = 2.0, mask: Any = None) -> np.ndarray:
    """Scores |truth − mean| / (k·std) over the ``mask``: the factor each voxel needs to be covered."""
    z = np.abs(z_scores(reference, mean, std))
    return z[check_mask(mask, z.shape)] / check_positive("k", k)


def fit_std_calibration(cases: Iterable[Mapping[str, Any]], target: float = 0.95, k: float = 2.0,
                        scope: str = "") -> StdCalibration:
    """Fit the recalibration factor c on validation ``cases`` (the module notes' definition).

    Args:
        cases: each a mapping with "reference", "mean", "std" and optionally "mask".
        target: coverage the interval mean ± k·c·std should reach on the pooled voxels, in (0, 1).
        k: the interval's half-width in (calibrated) standard deviations.
        scope: where the factor holds (method, scanner, count level), kept with it.

    Raises:
        InputError: no cases, a case missing a key, or a bad target or k (named).
    """
    if not 0.0 < float(target) < 1.0:
        raise InputError(f"target must lie in (0, 1), got {target!r}")
    check_positive("k", k)
    scores, count = [], 0
    for i, case in enumerate(cases):
        missing = [key for key in ("reference", "mean", "std") if key not in case]
        if missing:
            raise InputError(f"cases[{i}] lacks {', '.join(missing)}; expected reference, mean, std (and mask)")
        scores.append(conformal_scores(case["reference"], case["mean"], case["std"], k, case.get("mask")))
        count += 1
    if not count:
        raise InputError("cases is empty; expected at least one validation case")
    pooled = np.sort(np.concatenate(scores))
    rank = min(len(pooled), math.ceil((len(pooled) + 1) * float(target)))
    return StdCalibration(float(pooled[rank - 1]), float(target), float(k), scope, len(pooled), count)
