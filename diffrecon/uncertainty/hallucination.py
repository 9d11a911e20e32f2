"""Where a reconstruction invented or erased structure: the null-space/measurement-space decomposition of its
error (Bhadra, Kelkar, Brooks and Anastasio, IEEE TMI 2021) and a lesion-wise verdict.

Decomposition: the error e = x̂ − x splits into a measurement component e_meas = A⁺A e, which the data could
have told apart from the truth, and a null component e_null = e − e_meas, which no measurement through A sees: the
prior put it there (Bhadra et al.'s hallucination map). A⁺A is applied by conjugate gradients on
(AᵀA + δI) z = AᵀA e from z = 0, a few iterations, with the damping δ = ``damping`` × ‖AᵀA‖₂ (the largest
eigenvalue, by ten power iterations from a constant image). Damping and early stopping make it a soft
projection: directions with singular values well below √δ, such as the finest detail a PET PSF blurs away, count as null. Only the physics'
``A`` and ``A_adjoint`` are used, so PET acquisition models and MRI operators both work; real images through a
complex operator (MRI magnitudes) use the system restricted to real images, as the methods' CG does.

Lesion verdicts (:func:`lesion_report`), per phantom lesion: the CRC (:func:`diffrecon.metrics.crc`) of the
posterior mean and of every sample; "recovered" when the mean's CRC is at least ``recovered_crc`` (default 0.5:
half the true contrast), else "erased". Invented structures: connected regions (face connectivity, one sign) of at
least ``min_voxels`` voxels, inside the mask and away from every true lesion (dilated by one voxel), where the mean
departs from the truth by more than ``z_threshold`` local standard deviations (the samples' std at that voxel) and
by more than ``min_contrast`` of the mean truth in the mask; each region is one invented structure ("hot" where
the mean is above the truth, "cold" below).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from diffrecon.checks import InputError, check_at_least, check_integer, check_positive
from diffrecon.classical.mri import conjugate_gradient
from diffrecon.metrics import crc
from diffrecon.uncertainty.calibration import STD_FLOOR, as_magnitude, check_mask, check_samples


@dataclass
class NullSpaceDecomposition:
    """An error image split through the physics (module notes).

    Attributes:
        measurement: A⁺A e, the part the measurements see.
        null: e − A⁺A e, the hallucination map.
        null_fraction: ‖e_null‖ / ‖e‖ over the mask (0 for a zero error).
    """

    measurement: torch.Tensor
    null: torch.Tensor
    null_fraction: float


def _image_shape(physics: Any) -> tuple[int, ...]:
    """The image shape the physics maps (PET acquisition model or MRI operator)."""
    shape = getattr(physics, "image_shape", None)
    if shape is None or not hasattr(physics, "A") or not hasattr(physics, "A_adjoint"):
        raise InputError(f"physics is {type(physics).__name__}; expected an acquisition model with A, A_adjoint "
                         "and image_shape (PETAcquisitionModel, MRIOperator)")
    return tuple(shape)


def _largest_eigenvalue(normal: Any, start: torch.Tensor, iterations: int = 10) -> float:
    """‖AᵀA‖₂ by power iterations from ``start``: the scale the damping is relative to."""
    vector, value = start / start.abs().norm(), 0.0
    for _ in range(iterations):
        image = normal(vector)
        value = float(image.abs().norm())
        if value == 0.0:
            break
        vector = image / value
    return value


def null_space_decomposition(error: Any, physics: Any, iterations: int = 20, damping: float = 1e-3,
                             mask: Any = None) -> NullSpaceDecomposition:
    """Split ``error`` (the image shape of ``physics``, real or complex) into its measurement and null components.

    Args:
        error: x̂ − x on the physics' image grid.
        physics: anything with ``A``, ``A_adjoint`` and ``image_shape``.
        iterations: CG iterations of the pseudo-inverse.
        damping: relative damping δ (module notes), >= 0.
        mask: voxels over which the null fraction is measured (default all).

    Raises:
        InputError: an error of another shape, NaN/Inf, or bad settings (named).
    """
    shape = _image_shape(physics)
    check_integer("iterations", iterations)
    check_at_least("damping", damping)
    device = getattr(physics, "device", None) or getattr(getattr(physics, "mask", None), "device", "cpu")
    e = torch.as_tensor(error.detach() if isinstance(error, torch.Tensor) else np.asarray(error)).to(device)
    if tuple(e.shape) != shape:
        raise InputError(f"error has shape {tuple(e.shape)}; expected the physics' image shape {shape}")
    if not torch.isfinite(e).all():
        raise InputError("error contains NaN/Inf values; expected finite numbers")
    if not e.is_complex():
        e = e.float() if e.dtype != torch.float64 else e
    project = (lambda v: v) if e.is_complex() else (lambda v: v.real if v.is_complex() else v)

    def normal(v: torch.Tensor) -> torch.Tensor:
        return project(physics.A_adjoint(physics.A(v)))

    inside = torch.as_tensor(check_mask(mask, shape), device=e.device)
    rhs = normal(e)
    energy = float((e.conj() * e).real.sum())
    if energy == 0.0:
        zero = torch.zeros_like(e)
        return NullSpaceDecomposition(zero, zero.clone(), 0.0)
    delta = float(damping) * _largest_eigenvalue(normal, torch.ones_like(e))
    measurement = conjugate_gradient(lambda v: normal(v) + delta * v, rhs, torch.zeros_like(e), iterations)
    null = e - measurement
    norm = float(e[inside].abs().norm())
    return NullSpaceDecomposition(measurement, null, float(null[inside].abs().norm()) / norm if norm else 0.0)


def hallucination_map(estimate: Any, reference: Any, physics: Any, iterations: int = 20, damping: float = 1e-3,
                      mask: Any = None) -> NullSpaceDecomposition:
    """The decomposition of the error ``estimate`` − ``reference`` (:func:`null_space_decomposition`). A complex
    estimate against a real (magnitude) reference is compared with the reference given the estimate's phase, so
    only the magnitude error is decomposed."""
    estimate = torch.as_tensor(estimate.detach() if isinstance(estimate, torch.Tensor) else np.asarray(estimate))
    reference = torch.as_tensor(reference.detach() if isinstance(reference, torch.Tensor) else np.asarray(reference))
    if tuple(estimate.shape) != tuple(reference.shape):
        raise InputError(f"estimate has shape {tuple(estimate.shape)}; expected the reference's shape "
                         f"{tuple(reference.shape)}")
    reference = reference.to(estimate.device)
    if estimate.is_complex() and not reference.is_complex():
        reference = reference.to(estimate.real.dtype) * torch.sgn(estimate)
    elif reference.is_complex() and not estimate.is_complex():
        estimate, reference = estimate.to(reference.real.dtype), reference.abs()
    return null_space_decomposition(estimate - reference.to(estimate.dtype), physics, iterations, damping, mask)


@dataclass
class LesionVerdict:
    """One true lesion: its kind, the CRC of the mean and of every sample, and the verdict."""

    index: int
    kind: str  # "hot" or "cold" (the truth's contrast against the background)
    crc_mean: float
    crc_samples: list[float]
    verdict: str  # "recovered" or "erased"


@dataclass
class InventedStructure:
    """A region the mean has and the truth lacks (module notes)."""

    voxels: int
    centre: list[float]  # voxel coordinates of its centroid
    kind: str  # "hot" (mean above the truth) or "cold"
    excess_std: float  # mean |mean − truth| / std over the region


@dataclass
class LesionReport:
    """Lesion-wise hallucination figures of one reconstruction."""

    lesions: list[LesionVerdict] = field(default_factory=list)
    invented: list[InventedStructure] | None = None  # None: not assessed (one sample, no std)

    def counts(self) -> dict[str, int | None]:
        """Lesions recovered and erased, structures invented (None when not assessed)."""
        return {"lesions_recovered": sum(v.verdict == "recovered" for v in self.lesions),
                "lesions_erased": sum(v.verdict == "erased" for v in self.lesions),
                "lesions_invented": None if self.invented is None else len(self.invented)}


def lesion_report(samples: Any, reference: Any, lesion_masks: Any, background_mask: Any, mask: Any = None, *,
                  recovered_crc: float = 0.5, z_threshold: float = 3.0, min_contrast: float = 0.1,
                  min_voxels: int = 4, std_factor: float = 1.0) -> LesionReport:
    """Verdict on every true lesion and the structures invented (module notes' rule).

    Args:
        samples: (num_samples, *image shape); one sample (a deterministic image) gives no invented verdict.
        reference: the truth.
        lesion_masks: (n_lesions, *image shape) booleans (n_lesions may be 0).
        background_mask: lesion-free background the CRC compares against (e.g. white matter).
        mask: where invented structures are searched (default all voxels).
        recovered_crc, z_threshold, min_contrast, min_voxels: the rule's thresholds.
        std_factor: the samples' std is multiplied by this (a recalibration factor) before the invented rule.

    Raises:
        InputError: shapes that disagree, an empty mask, bad thresholds (named).
    """
    array = check_samples(samples)
    magnitudes = np.abs(array) if np.iscomplexobj(array) else array.astype(np.float64)
    reference = as_magnitude("reference", reference)
    if magnitudes.shape[1:] != reference.shape:
        raise InputError(f"samples has images of shape {magnitudes.shape[1:]}; expected the reference's shape "
                         f"{reference.shape}")
    lesions = as_magnitude("lesion_masks", lesion_masks).astype(bool).reshape(-1, *reference.shape) \
        if np.size(lesion_masks) else np.zeros((0, *reference.shape), dtype=bool)
    background = check_mask(background_mask, reference.shape, "background_mask")
    region = check_mask(mask, reference.shape)
    if isinstance(recovered_crc, bool) or not isinstance(recovered_crc, (int, float)) or not np.isfinite(recovered_crc):
        raise InputError(f"recovered_crc must be a finite number, got {recovered_crc!r}")
    check_positive("z_threshold", z_threshold)
    check_at_least("min_contrast", min_contrast)
    check_integer("min_voxels", min_voxels)
    check_positive("std_factor", std_factor)
    mean = magnitudes.mean(0)
    report = LesionReport()
    for index, lesion in enumerate(lesions):
        if not lesion.any():
            raise InputError(f"lesion_masks[{index}] is empty; expected at least one voxel per lesion")
        kind = "hot" if reference[lesion].mean() > reference[background].mean() else "cold"
        value = crc(mean, reference, lesion, background)
        report.lesions.append(LesionVerdict(index, kind, value, [crc(s, reference, lesion, background)
                                                                 for s in magnitudes],
                                            "recovered" if value >= recovered_crc else "erased"))
    if magnitudes.shape[0] < 2:
        return report
    std = std_factor * magnitudes.std(0, ddof=1)
    std = np.maximum(std, STD_FLOOR * (float(std.max()) or 1.0))
    allowed = region & ~ndimage.binary_dilation(lesions.any(0), iterations=1) if len(lesions) else region
    difference = mean - reference
    scale = float(np.abs(reference[region]).mean()) or 1.0
    report.invented = []
    for sign, kind in ((1.0, "hot"), (-1.0, "cold")):
        excess = sign * difference
        candidates = allowed & (excess > z_threshold * std) & (excess > min_contrast * scale)
        labels, count = ndimage.label(candidates)
        for label in range(1, count + 1):
            voxels = labels == label
            if voxels.sum() >= min_voxels:
                report.invented.append(InventedStructure(
                    int(voxels.sum()), [float(c) for c in np.argwhere(voxels).mean(0)], kind,
                    float((excess[voxels] / std[voxels]).mean())))
    return report
