"""Score-MRI (Chung and Ye, Medical Image Analysis 2022): predictor-corrector sampling of the reverse VE SDE
with a hard k-space projection after the corrector and after the predictor.

Variants (their Algorithms 2-5), all with one magnitude prior:

- ``real``: a real image, x <- Re F⁻¹[(1 − M) F x + y] (single coil).
- ``complex``: real and imaginary parts through the prior, the same projection without Re (single coil).
- ``ssos``: every coil image sampled as a complex image with its own projection, then root-sum-of-squares
  (multi-coil; a magnitude result).
- ``hybrid``: coil-wise as ``ssos``, and every ``sense_every`` steps the coil images are combined by the coil
  maps, take a Kaczmarz step x <- x + w Aᴴ(y − A x) with the SENSE operator (w falling linearly from 1.0 to
  0.2 over the run) and are expanded again; the result is the SENSE-combined complex image.

``auto`` picks ``complex`` for single-coil and ``hybrid`` for multi-coil k-space. The reference runs 2000
steps (4000 network evaluations) from noise; our default starts warm (CCDF: from the noised CG-SENSE or
zero-filled image at half the schedule) and takes 30 steps (60 network evaluations), which beat 50 steps from
noise and a 20-step start at 0.3 on validation slices (``scripts/bench_mri.py``; the trade-off against steps
in docs/mri_diffusion.md). ``warm_start=None`` starts from noise as the reference. The hybrid variant's SENSE
step comes every 5 steps (0.6-0.7 dB above every 10 on validation since the coil maps were fixed, 2026-12-04).

Volumes are coupled along z by total variation (``slice_tv`` 0.03, DDS's value): on validation volume 10000 (32
slices, Poisson disc R = 4 in y and z) 29.56 dB against DDS's 29.36 and CG-SENSE's 24.34; the uncoupled run was
not measured (DDS without the coupling: 20.1 dB). ``plane_tv`` (within the slice) is off: not tuned for Score-MRI.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from diffrecon.checks import InputError, check_choice, check_integer
from diffrecon.classical.mri_tv import AxisTV
from diffrecon.methods.mri_diffusion import TotalVariationCouplings, solve_consistency
from diffrecon.methods.sampler import Call, VEDiffusionMethod
from diffrecon.methods.spaces import MRISpace
from diffrecon.physics.fidelity import GaussianLeastSquares
from diffrecon.physics.mri_coils import rss, sense_combine
from diffrecon.physics.mri_operators import MRIOperator
from diffrecon.priors.prior import ScoreModel
from diffrecon.transforms.intensity import MAGNITUDE_QUANTILE

VARIANTS = ("auto", "real", "complex", "ssos", "hybrid")
COILWISE = ("ssos", "hybrid")


@dataclass
class ScoreMRIState:
    """Per call: the variant, the operator of the projection (one coil at a time for the coil-wise variants) with
    the k-space it projects onto, the coil images' gains, the coil maps, the SENSE steps' weights by step, the
    total-variation couplings and the discrepancy target of each projected image (None: hard projection)."""

    variant: str
    projector: MRIOperator
    measured: torch.Tensor
    gain: torch.Tensor
    maps: torch.Tensor | None
    sense_weights: dict[int, float]
    couplings: list[AxisTV]
    targets: torch.Tensor | None


class ScoreMRI(VEDiffusionMethod):
    """Score-MRI on the sampler (:mod:`diffrecon.methods.sampler`) in the MRI space
    (:class:`~diffrecon.methods.spaces.MRISpace`: ``phase_correction``, ``chunk_size``).

    Args:
        prior: the VE form of a 2D magnitude slice prior (``load_bundle_prior('mr_t1_prior', 've')``).
        steps, warm_start, snr, callback, progress: as :class:`~diffrecon.methods.sampler.VEDiffusionMethod`.
        variant: one of :data:`VARIANTS` (module notes).
        projection: "hard" (the default): x <- x + Aᴴ(y − A x), as the reference; "auto": relaxed to
            x <- x + w Aᴴ(y − A x) with the w in [0, 1] at which the residual meets the discrepancy target σ² m (in
            closed form: A Aᴴ = I on the measured samples, so the residual becomes (1 − w) times itself;
            :mod:`diffrecon.methods.discrepancy`), hard for noise-free data. Not the default: on validation slices
            it lost 0.3-1.4 dB to the hard projection (docs/robustness.md).
        noise_sigma: the k-space noise σ that sets the target ("auto": estimated from the k-space periphery; 0:
            noise-free).
        sense_every: steps between the SENSE steps of the hybrid variant (the reference: 50 of 500).
        sense_weights: first and last Kaczmarz weight of the hybrid variant.
        slice_tv, slice_rho, plane_tv, plane_rho, tv_iterations: total-variation couplings
            (:class:`~diffrecon.methods.mri_diffusion.TotalVariationCouplings`).
    """

    name = "score-mri"
    modality = "MR"

    def __init__(self, prior: ScoreModel, steps: int = 30, snr: float = 0.16, variant: str = "auto",
                 sense_every: int = 5, sense_weights: tuple[float, float] = (1.0, 0.2),
                 warm_start: float | None = 0.5, phase_correction: bool = True, slice_tv: float = 0.03,
                 slice_rho: float = 1.0, plane_tv: float = 0.0, plane_rho: float = 0.01, tv_iterations: int = 1,
                 chunk_size: int = 16, projection: str = "hard", noise_sigma: float | str = "auto",
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, MRISpace(phase_correction, chunk_size, noise_sigma=noise_sigma), steps, warm_start,
                         snr, callback, progress)
        self.projection = check_choice("projection", projection, ("auto", "hard"))
        self.tv = TotalVariationCouplings(slice_tv, slice_rho, plane_tv, plane_rho, tv_iterations)
        self.variant = check_choice("variant", variant, VARIANTS)
        self.sense_every = check_integer("sense_every", sense_every)
        if len(sense_weights) != 2 or not all(0 < float(w) <= 1 for w in sense_weights):
            raise InputError(f"sense_weights must be two weights in (0, 1], got {sense_weights!r}")
        self.sense_weights = tuple(float(w) for w in sense_weights)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), **self.tv.settings(), "variant": self.variant, "sense_every": self.sense_every,
                "sense_weights": list(self.sense_weights), "projection": self.projection}

    def variant_for(self, operator: MRIOperator) -> str:
        """The variant used for data of ``operator`` (``auto`` resolved); refuses one that does not fit."""
        multi_coil = operator.coil_maps is not None
        variant = self.variant if self.variant != "auto" else ("hybrid" if multi_coil else "complex")
        if multi_coil and variant not in COILWISE:
            raise InputError(f"variant {variant!r} is for single-coil k-space; this k-space has {operator.n_coils} "
                             "coils: use 'ssos' or 'hybrid'")
        if not multi_coil and variant in COILWISE:
            raise InputError(f"variant {variant!r} needs multi-coil k-space (a coil axis, n_coils first, and coil "
                             f"maps); this k-space has shape {operator.kspace_shape} without coils: use 'complex' "
                             "or 'real'")
        return variant

    def check(self, data: torch.Tensor, physics: Any) -> None:
        self.variant_for(physics)

    def prepare(self, call: Call) -> ScoreMRIState:
        """The variant's working images: coil images each scaled to about [0, 1] for the coil-wise variants (their
        ``gain``), the real part for ``real``."""
        physics, ndim = call.physics, call.physics.ndim
        variant = self.variant_for(physics)
        gain = torch.ones((), device=call.measured.device)
        maps = None
        if variant in COILWISE:
            projector = MRIOperator(physics.mask)  # one coil at a time: the coil axis is a batch axis
            maps = physics.coil_maps.to(call.measured.device)
            reference = maps * call.reference.unsqueeze(-ndim - 1)
            gain = torch.quantile(reference.abs().flatten(1), MAGNITUDE_QUANTILE, dim=1).clamp_min(1e-6)
            gain = gain.reshape(-1, *(1,) * ndim)
            call.reference = reference / gain
        else:
            projector = physics
            if variant == "real":
                call.reference = call.reference.real
        sense_at = [i for i in range(self.steps) if (i + 1) % self.sense_every == 0 or i == self.steps - 1]
        weights = dict(zip(sense_at, torch.linspace(*self.sense_weights, len(sense_at)).tolist()))
        discrepancy, targets = call.discrepancy, None
        if self.projection == "auto" and discrepancy.available and not discrepancy.noise_free:
            per_sample = discrepancy.aim / discrepancy.measurements * int(physics.mask.sum())
            targets = (per_sample / gain.square()).flatten()
        return ScoreMRIState(variant, projector, call.measured / gain, gain, maps, weights, self.tv.new(physics),
                             targets)

    def consistent(self, image: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        """The k-space projection x <- x + w Aᴴ(y − A x), w = 1 (hard) or relaxed to the discrepancy target (real
        part for ``real``)."""
        state: ScoreMRIState = call.state
        residual = state.measured - state.projector.A(image)
        if state.targets is not None:
            ndim = call.physics.ndim
            misfit = residual.abs().square().flatten(-ndim).sum(-1)
            weight = (1 - (state.targets / misfit.clamp_min(1e-30)).sqrt()).clamp(0, 1)
            residual = residual * weight.reshape(*weight.shape, *(1,) * ndim)
        image = image + state.projector.A_adjoint(residual)
        return image.real if state.variant == "real" else image

    def end_step(self, image: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        """The total-variation couplings, and the hybrid variant's SENSE step where due."""
        state: ScoreMRIState = call.state
        if state.couplings:
            image = solve_consistency(image, state.measured, state.projector, 1, couplings=state.couplings,
                                      admm_iterations=self.tv.tv_iterations)
        if state.variant == "hybrid" and step in state.sense_weights:
            image = self.consistent(self._sense_step(image, call, state.sense_weights[step]), call, step)
        return image

    @staticmethod
    def _sense_step(image: torch.Tensor, call: Call, weight: float) -> torch.Tensor:
        """Coil images combined by the maps, a Kaczmarz step x <- x + w Aᴴ(y − A x) with SENSE, expanded again."""
        state: ScoreMRIState = call.state
        ndim, physics = call.physics.ndim, call.physics
        combined = sense_combine(image * state.gain, state.maps, ndim)
        combined = combined + weight * physics.A_adjoint(call.measured - physics.A(combined))
        return state.maps * combined.unsqueeze(-ndim - 1) / state.gain

    def output(self, image: torch.Tensor, call: Call) -> torch.Tensor:
        return self.space.output(image * call.state.gain, call)

    def result(self, image: torch.Tensor, call: Call, evaluations: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """SSOS: the root sum of squares of the coil images; hybrid: their SENSE combination; else the image."""
        state: ScoreMRIState = call.state
        image, ndim = image * state.gain, call.physics.ndim
        if state.variant == "ssos":
            fidelity = GaussianLeastSquares(state.projector, call.measured)
            return rss(image, ndim) * call.scale, self.space.data_fit(image, call, evaluations, fidelity)
        if state.variant == "hybrid":
            image = sense_combine(image, state.maps, ndim)
        return image * call.scale, self.space.data_fit(image, call, evaluations)

    def summary(self, call: Call) -> dict[str, Any]:
        return {"variant": call.state.variant}
