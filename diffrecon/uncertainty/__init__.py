"""Uncertainty a clinician can check: posterior summaries, z-scores, coverage and recalibration of the std
(:mod:`.calibration`), null-space hallucination maps and lesion verdicts (:mod:`.hallucination`), and
:func:`uncertainty_metrics`, the figures results and benchmarks report beside NRMSE."""
from __future__ import annotations

from typing import Any

import numpy as np

from diffrecon.uncertainty.calibration import (CURVE_LEVELS, STD_FLOOR, SUMMARY_QUANTILES, PosteriorSummary,
                                               StdCalibration, as_magnitude, calibration_curve, conformal_scores,
                                               coverage, fit_std_calibration, gaussian_k, posterior_summary,
                                               quantile_coverage, z_scores)
from diffrecon.uncertainty.hallucination import (InventedStructure, LesionReport, LesionVerdict,
                                                 NullSpaceDecomposition, hallucination_map, lesion_report,
                                                 null_space_decomposition)

__all__ = ["CURVE_LEVELS", "STD_FLOOR", "SUMMARY_QUANTILES", "InventedStructure", "LesionReport", "LesionVerdict",
           "NullSpaceDecomposition", "PosteriorSummary", "StdCalibration", "calibration_curve", "conformal_scores",
           "coverage", "fit_std_calibration", "gaussian_k", "hallucination_map", "lesion_report",
           "null_space_decomposition", "object_mask", "posterior_summary", "quantile_coverage", "UNCERTAINTY_FIGURES",
           "uncertainty_metrics",
           "z_scores"]

UNCERTAINTY_FIGURES = ("coverage_1std", "coverage_2std", "mean_abs_z", "quantile_coverage_90", "null_space_fraction",
                       "lesions_recovered", "lesions_erased", "lesions_invented")
"""The keys :func:`uncertainty_metrics` returns (None where a figure does not apply)."""


def object_mask(reference: Any, fraction: float = 0.05) -> np.ndarray:
    """Voxels where the reference exceeds ``fraction`` of its 99.5th percentile: the object, when no brain mask is
    known (air, where any std covers a zero truth, would inflate coverage)."""
    magnitude = as_magnitude("reference", reference)
    return magnitude > fraction * float(np.percentile(magnitude, 99.5))


def uncertainty_metrics(reference: Any, mean: Any, std: Any = None, samples: Any = None, physics: Any = None,
                        mask: Any = None, lesion_masks: Any = None, background_mask: Any = None,
                        std_factor: float = 1.0) -> dict[str, float | int | None]:
    """The uncertainty figures of one result against its truth, each None where it does not apply: coverage of
    mean ± 1 and 2 std, mean |z| and 90% quantile-interval coverage over ``mask`` (default :func:`object_mask`)
    when the std is non-zero; the null-space error fraction when ``physics`` is given; lesions recovered, erased
    and invented when lesion masks and a background are given (invented needs two samples or more; their std is
    multiplied by ``std_factor``, the calibration factor already applied to ``std``)."""
    reference = as_magnitude("reference", reference)
    mask = object_mask(reference) if mask is None else mask
    figures: dict[str, float | int | None] = dict.fromkeys(UNCERTAINTY_FIGURES)
    spread = std is not None and float(as_magnitude("std", std).max()) > 0
    if spread:
        covered = coverage(reference, mean, std, (1.0, 2.0), mask)
        z = np.abs(z_scores(reference, mean, std))[np.asarray(mask, dtype=bool)]
        figures.update(coverage_1std=covered[1.0], coverage_2std=covered[2.0], mean_abs_z=float(z.mean()))
        if samples is not None and len(samples) > 1:
            figures["quantile_coverage_90"] = quantile_coverage(reference, samples, (0.9,), mask)[0.9]
    if physics is not None:
        figures["null_space_fraction"] = hallucination_map(mean, reference, physics, mask=mask).null_fraction
    if lesion_masks is not None and background_mask is not None:
        stack = samples if samples is not None and len(samples) > 1 else np.asarray(as_magnitude("mean", mean))[None]
        figures.update(lesion_report(stack, reference, lesion_masks, background_mask, mask,
                                     std_factor=std_factor).counts())
    return figures
