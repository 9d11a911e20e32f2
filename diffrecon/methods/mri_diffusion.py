"""What the diffusion MRI methods (Score-MRI, DDS) share: the prior check, the prior-units <-> data scale,
complex images through a magnitude prior, the reference image for warm starts, data consistency by conjugate
gradients (optionally with total variation along the slice axis for volumes and within the image plane),
timing and the report.

The MR prior is trained on magnitude images scaled to [0, 1] by their maximum. Measured k-space has any scale
and complex images, so a method works in prior units: the k-space divided by the scale s, the 99.9th
percentile of the magnitude of a reference image (zero-filled for one coil, CG-SENSE for several), and a
complex image enters the network as its real and imaginary parts, two images of the batch (Chung and Ye 2022,
Alg. 3). Volumes (x, y, z) are scored slice by slice (axial (x, y) slices, :class:`TriPlanarScore` with the
axial prior only, chunked) and coupled along z by total variation in the data-consistency step (DiffusionMBIR,
Chung et al. 2023; the 3D solver of DDS). The same ADMM coupling within the image plane (``plane_tv``) is our
addition: the prior, trained on phantoms, leaves noise in flat regions that a little TV removes.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from diffrecon.checks import InputError, check_at_least, check_integer
from diffrecon.classical.mri import cg_sense, conjugate_gradient, zero_filled
from diffrecon.methods.base import Method, Reconstruction, Stopwatch, summarize_samples
from diffrecon.physics.mri_fft import fft_centered, ifft_centered
from diffrecon.physics.mri_operators import MRIOperator
from diffrecon.priors.prior import ScoreModel
from diffrecon.priors.schedules import VESchedule, VPSchedule
from diffrecon.priors.volume import TriPlanarScore

SCHEDULES = {"vp": VPSchedule, "ve": VESchedule}
SCALE_QUANTILE = 0.999  # of |reference|: about its maximum, as the prior's images, without single spikes
REFERENCE_CG_ITERATIONS = 4  # CG-SENSE reference of multi-coil data (the registry's cg-sense default)
PHASE_RESOLUTION = 0.03  # k-space width (fraction of each axis) of the low-pass that estimates the smooth phase


def to_channels(image: torch.Tensor, ndim: int, phase: torch.Tensor | None = None) -> torch.Tensor:
    """A complex image (..., *spatial), demodulated by ``phase`` (e^{iφ}) if given, as its real and imaginary
    parts (..., 2, *spatial), a real image as (..., 1, *spatial): the images the network sees."""
    if phase is not None:
        image = image * phase.conj()
    if not image.is_complex():
        return image.unsqueeze(-ndim - 1)
    return torch.stack((image.real, image.imag), dim=-ndim - 1)


def to_complex(channels: torch.Tensor, ndim: int, phase: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of :func:`to_channels`: (..., 2, *spatial) -> complex (modulated by ``phase``), (..., 1, *spatial)
    -> real."""
    parts = channels.unbind(-ndim - 1)
    if len(parts) == 1:
        return parts[0]
    image = torch.complex(parts[0], parts[1])
    return image if phase is None else image * phase


def smooth_phase(image: torch.Tensor, ndim: int) -> torch.Tensor:
    """e^{iφ} of the smooth phase φ of a complex ``image`` (..., *spatial): the phase of its low-pass (a Gaussian
    window over the central :data:`PHASE_RESOLUTION` of k-space, the calibration region)."""
    kspace = fft_centered(image, ndim)
    window = torch.ones((), device=image.device)
    for axis, n in enumerate(image.shape[-ndim:]):
        k = (torch.arange(n, device=image.device) - n // 2) / (PHASE_RESOLUTION * n)
        window = window.unsqueeze(-1) * torch.exp(-0.5 * k ** 2) if axis else torch.exp(-0.5 * k ** 2)
    low = ifft_centered(kspace * window, ndim)
    return torch.where(low.abs() > 0, low / low.abs().clamp_min(torch.finfo(low.real.dtype).tiny), 1)


def forward_difference(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Forward difference of ``x`` along ``axis``, D_a x, zero at the axis' last index (same shape as ``x``)."""
    return torch.cat((torch.diff(x, dim=axis), torch.zeros_like(x.narrow(axis, 0, 1))), axis)


def forward_difference_adjoint(d: torch.Tensor, axis: int) -> torch.Tensor:
    """Adjoint of :func:`forward_difference`, D_aᴴ d."""
    inner = d.narrow(axis, 0, d.shape[axis] - 1)
    zero = torch.zeros_like(d.narrow(axis, 0, 1))
    return torch.cat((zero, inner), axis) - torch.cat((inner, zero), axis)


class AxisTV:
    """Anisotropic total variation along ``axes`` of the images by ADMM with the splits v_a = D_a x, one ADMM
    iteration per reverse step (DiffusionMBIR along z; DDS in 3D): the x-update adds ρ Σ D_aᴴ D_a to the
    data-consistency system and ρ Σ D_aᴴ (v_a − u_a) to its right-hand side, then v_a = soft(D_a x + u_a,
    weight / ρ) and u_a += D_a x − v_a. Weight and ρ are in prior units (images ~ [0, 1])."""

    def __init__(self, weight: float, rho: float, axes: tuple[int, ...]) -> None:
        self.weight, self.rho, self.axes = float(weight), float(rho), tuple(axes)
        self.splits: list[torch.Tensor] | None = None
        self.duals: list[torch.Tensor] | None = None

    def system(self, x: torch.Tensor) -> torch.Tensor:
        return self.rho * sum(forward_difference_adjoint(forward_difference(x, axis), axis) for axis in self.axes)

    def rhs(self, like: torch.Tensor) -> torch.Tensor:
        if self.splits is None:
            return torch.zeros_like(like)
        return self.rho * sum(forward_difference_adjoint(split - dual, axis)
                              for split, dual, axis in zip(self.splits, self.duals, self.axes))

    def update(self, x: torch.Tensor) -> None:
        splits, duals = [], []
        for index, axis in enumerate(self.axes):
            v = forward_difference(x, axis)
            if self.duals is not None:
                v = v + self.duals[index]
            split = v * (1 - self.weight / self.rho / v.abs().clamp_min(1e-12)).clamp_min(0)
            splits.append(split)
            duals.append(v - split)
        self.splits, self.duals = splits, duals


def solve_consistency(start: torch.Tensor, kspace: torch.Tensor, operator: MRIOperator, iterations: int,
                      mu: float = 0.0, anchor: torch.Tensor | None = None, couplings: Sequence[AxisTV] = (),
                      batch_ndim: int = 1, admm_iterations: int = 1) -> torch.Tensor:
    """CG from ``start`` on (μI + AᴴA [+ Σ ρD_aᴴD_a]) x = μ anchor + Aᴴy [+ Σ ρD_aᴴ(v_a − u_a)], per batch item;
    real images stay real (the system restricted to real images). The ``couplings``' splits are updated after
    each solve; with couplings, ``admm_iterations`` such solve-and-update rounds."""
    project = (lambda v: v) if start.is_complex() else (lambda v: v.real)
    data_rhs = project(operator.A_adjoint(kspace)).expand_as(start)
    if mu:
        data_rhs = data_rhs + mu * anchor

    def system(v: torch.Tensor) -> torch.Tensor:
        out = project(operator.normal(v)) + mu * v
        for coupling in couplings:
            out = out + coupling.system(v)
        return out

    x = start
    for _ in range(admm_iterations if couplings else 1):
        rhs = data_rhs
        for coupling in couplings:
            rhs = rhs + coupling.rhs(x)
        x = conjugate_gradient(system, rhs, x, iterations, batch_ndim)
        for coupling in couplings:
            coupling.update(x)
    return x


def data_residual(images: torch.Tensor, kspace: torch.Tensor, operator: MRIOperator) -> list[float]:
    """‖A x − y‖ / ‖y‖ of each image of the batch ``images`` (n, *spatial)."""
    measured = operator.apply_mask(kspace)
    difference = operator.A(images) - measured
    dims = tuple(range(1, difference.ndim))
    return (difference.abs().pow(2).sum(dims).sqrt() / measured.abs().pow(2).sum().sqrt()).tolist()


@dataclass
class Prepared:
    """The start of a call: measured k-space (as given and divided by the scale), the reference image in prior
    units, the scale, the score for the image size and the stopwatch of the call."""

    kspace: torch.Tensor
    measured: torch.Tensor
    reference: torch.Tensor
    scale: float
    score: ScoreModel
    clock: Stopwatch


class MRIDiffusionMethod(Method):
    """Base of the diffusion MRI methods (Score-MRI, DDS).

    Args:
        prior: a 2D score of magnitude slices with the schedule of ``prior_form`` (``load_prior``).
        steps: reverse steps.
        warm_start: None to start from noise; a fraction f in (0, 1) to start at time f T from the noised
            reference image (CCDF, Chung et al. 2022), which needs far fewer steps.
        phase_correction: the prior sees the image times e^{-iφ}, φ its smooth phase estimated from the
            reference (:func:`smooth_phase`), so that it sees images close to the real, non-negative magnitude
            images it was trained on; off, it sees the real and imaginary parts as they are (as the reference
            implementation), which fails for images with phase (docs/mri_diffusion.md). Our choice.
        slice_tv: weight of total variation along z for volumes (x, y, z), in prior units (0: slices independent).
        slice_rho: ADMM penalty of that coupling.
        plane_tv: weight of (anisotropic) total variation in the image plane (x, y), in prior units (0: none); our
            choice, the same ADMM coupling in the slice's own axes.
        plane_rho: ADMM penalty of that coupling.
        tv_iterations: ADMM iterations of these couplings per reverse step, each a data-consistency solve
            (DiffusionMBIR takes one; more converge the total variation further, at the cost of more FFTs).
        chunk_size: slices per network call for volumes.
        callback: ``callback(step, image)`` after each step's data consistency, with the method's current
            image(s) in the data's units (e.g. to watch or store the trajectory).
        progress: show a progress bar.
    """

    modality = "MR"
    prior_form: ClassVar[str]

    def __init__(self, prior: ScoreModel, steps: int, warm_start: float | None, phase_correction: bool,
                 slice_tv: float, slice_rho: float, plane_tv: float, plane_rho: float, tv_iterations: int,
                 chunk_size: int, callback: Callable[[int, torch.Tensor], None] | None, progress: bool) -> None:
        if not isinstance(prior, ScoreModel):
            raise InputError(f"prior must be a diffrecon.priors.ScoreModel, got {type(prior).__name__}")
        schedule = SCHEDULES[self.prior_form]
        if not isinstance(prior.schedule, schedule):
            raise InputError(f"prior has a {type(prior.schedule).__name__}; {self.name} needs the "
                             f"{self.prior_form.upper()} form (load_bundle_prior('mr_t1_prior', "
                             f"{self.prior_form!r}))")
        if prior.spatial_dims != 2:
            raise InputError(f"prior scores {prior.spatial_dims}D images; {self.name} needs a 2D slice prior "
                             "(volumes are scored slice by slice)")
        self.prior = prior
        self.steps = check_integer("steps", steps)
        if warm_start is not None and not 0 < warm_start < 1:
            raise InputError(f"warm_start must be None or a fraction in (0, 1), got {warm_start!r}")
        self.warm_start = None if warm_start is None else float(warm_start)
        self.phase_correction = bool(phase_correction)
        self.slice_tv, self.slice_rho = _coupling_weights("slice", slice_tv, slice_rho)
        self.plane_tv, self.plane_rho = _coupling_weights("plane", plane_tv, plane_rho)
        self.tv_iterations = check_integer("tv_iterations", tv_iterations)
        self.chunk_size = check_integer("chunk_size", chunk_size)
        if callback is not None and not callable(callback):
            raise InputError(f"callback must be callable or None, got {type(callback).__name__}")
        self.callback = callback
        self.progress = bool(progress)

    @classmethod
    def load_prior(cls, bundle: str | Path, operator: MRIOperator, device: str | torch.device) -> ScoreModel:
        """This method's form of the slice prior of ``bundle`` (a name such as "mr_t1_prior" or a folder); the
        operator's image size is checked when the method is called."""
        from diffrecon.priors.bundle import load_bundle_prior

        return load_bundle_prior(bundle, cls.prior_form, device)

    def settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "warm_start": self.warm_start, "phase_correction": self.phase_correction,
                "slice_tv": self.slice_tv, "slice_rho": self.slice_rho, "plane_tv": self.plane_tv,
                "plane_rho": self.plane_rho, "tv_iterations": self.tv_iterations}

    def description(self) -> str:
        start = "" if self.warm_start is None else f" warm start {self.warm_start:g}"
        return f"{self.name.upper()} {self.steps} steps{start}"

    def score_model(self, operator: MRIOperator) -> ScoreModel:
        """The prior for images of ``operator``'s shape: itself for slices, axial slice by slice for volumes;
        raises :class:`InputError` if the prior cannot take the image size."""
        try:
            self.prior.check_image(torch.empty(operator.shape[:2], device="meta"))
        except InputError as error:
            raise InputError(f"kspace: images of {' x '.join(map(str, operator.shape))} voxels do not fit the "
                             f"prior: {error}") from None
        if operator.ndim == 2:
            return self.prior
        return TriPlanarScore({"axial": self.prior}, chunk_size=self.chunk_size)

    def prepare(self, data: torch.Tensor, operator: MRIOperator) -> Prepared:
        """What every call starts from (module notes): the checked k-space, the prior for its image size, and
        the reference image (zero-filled for one coil, CG-SENSE for several) with the scale s it sets."""
        kspace = operator.check_kspace(data)
        score = self.score_model(operator)
        clock = Stopwatch(kspace.device)
        with clock("physics"):
            if operator.coil_maps is None:
                image = zero_filled(kspace, operator).image
            else:
                image = cg_sense(kspace, operator, REFERENCE_CG_ITERATIONS).image
        magnitude = image.abs().flatten().float()
        scale = float(torch.quantile(magnitude[:: max(1, magnitude.numel() // 1_000_000)], SCALE_QUANTILE))
        if not scale > 0:
            raise InputError("kspace: the reference image is zero everywhere; nothing was measured")
        return Prepared(kspace, kspace / scale, image / scale, scale, score, clock)

    def phase(self, reference: torch.Tensor, ndim: int) -> torch.Tensor | None:
        """e^{iφ} the prior's images are demodulated by (None for real images or without phase correction)."""
        if not self.phase_correction or not reference.is_complex():
            return None
        return smooth_phase(reference, ndim)

    def new_couplings(self, operator: MRIOperator) -> list[AxisTV]:
        """Fresh total-variation couplings for one call: in the image plane with ``plane_tv`` > 0, along z for
        volumes with ``slice_tv`` > 0 (images are (..., x, y[, z]))."""
        couplings = []
        if self.plane_tv > 0:
            couplings.append(AxisTV(self.plane_tv, self.plane_rho, (-operator.ndim, -operator.ndim + 1)))
        if self.slice_tv > 0 and operator.ndim == 3:
            couplings.append(AxisTV(self.slice_tv, self.slice_rho, (-1,)))
        return couplings

    @staticmethod
    def slices_per_call(channels: torch.Tensor, operator: MRIOperator) -> int:
        """2D images one sample sends through the network per evaluation (parts x coils x slices)."""
        return channels.numel() // (operator.shape[0] * operator.shape[1])

    def after_step(self, step: int, images: torch.Tensor, scale: float) -> None:
        if self.callback is not None:
            self.callback(step, images * scale)

    def finish(self, samples: torch.Tensor, kspace: torch.Tensor, operator: MRIOperator, consistent: torch.Tensor,
               clock: Stopwatch, network_evaluations: int, network_images: int, scale: float,
               extra: dict[str, Any]) -> Reconstruction:
        """The result: samples (data units), their summary and the report. ``consistent`` are the images whose
        data residual is reported (e.g. the complex images of which ``samples`` are the magnitude)."""
        mean, std = summarize_samples(samples)
        report = {**extra, "network_evaluations": network_evaluations, "network_images": network_images,
                  "scale": scale, "data_residual": data_residual(consistent, kspace, operator),
                  "seconds_network": clock.seconds.get("network", 0.0),
                  "seconds_physics": clock.seconds.get("physics", 0.0)}
        return Reconstruction(mean, std, samples, report)


def _coupling_weights(name: str, weight: float, rho: float) -> tuple[float, float]:
    """``{name}_tv`` and ``{name}_rho`` checked: both >= 0, ρ > 0 where the coupling is on."""
    weight, rho = check_at_least(f"{name}_tv", weight), check_at_least(f"{name}_rho", rho)
    if weight > 0 and rho <= 0:
        raise InputError(f"{name}_rho must be > 0 with {name}_tv > 0, got {rho!r}")
    return weight, rho
