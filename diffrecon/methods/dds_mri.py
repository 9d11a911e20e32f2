"""DDS, the decomposed diffusion sampler (Chung, Lee and Ye, ICLR 2024), for single- and multi-coil MRI.

DDIM sampling with the VP form of the MR prior; at each step the Tweedie estimate x̂₀ (prior units, complex:
real and imaginary parts through the magnitude prior) is refined by a few conjugate-gradient steps on the
noise-aware normal equations (I + γAᴴA) x = x̂₀ + γAᴴy (SENSE A = M F S for several coils, plus total
variation along z for volumes), and the refined image replaces x̂₀ in the DDIM update. The last step's refined
image is the sample.

5 CG iterations per step as the reference implementation; steps, γ and η were tuned on validation-split
phantom slices with ``scripts/bench_mri.py`` (docs/mri_diffusion.md): the reference's 50 steps beat 20 by
0.4-1.3 dB on every mask (since the coil maps use a kernel that suits the calibration region; before, 20 were as
good), γ = 10 was within 0.2 dB of 20 and beat 1-5 and 30, and η = 1 (ancestral) beat 0.5 and 0.85. ``eta`` is
the standard DDIM η of :func:`diffrecon.priors.steps.ddim_step`, not the reference's own parametrisation.

Volumes whose k-space is undersampled along z (3D acquisitions) need both of our choices below; slices alone
(2D masks) are unchanged by them (validation, within 0.01 dB). The Tweedie estimate is clamped to the prior's
range (``clip``): from pure noise the first estimate is the network's error divided by α_T ≈ 0.006, tens of times
the image, and the slice-wise prior cannot remove what that leaves along z. The slices are coupled by total
variation along z (``slice_tv``, DiffusionMBIR; it acts on volumes only): on validation volumes (32 slices, Poisson
disc R = 4 in y and z) 0.01 / 0.03 gave 28.6 / 29.2 dB (two volumes), and on one of them 0.003 / 0.1 26.7 / 27.6,
no coupling 20.1 (CG-SENSE 24.3), 0.03 unclamped 28.6 (docs/mri_diffusion.md, "Volumes").

The same coupling within the image plane (``plane_tv``, anisotropic TV along x and y, our addition) removes the
noise the phantom-trained prior leaves in flat regions: on the 12 validation slice cases (posterior mean of 4)
weight 0.001 with ρ 0.01 gained 0.55 / 0.06 / 0.55 / 0.97 dB on random R = 4 / random R = 8 / Gaussian 2D R = 8 /
Poisson R = 8 and SSIM on every mask; 0.003 with ρ 0.03 gained more on the 2D masks but lost 1.1 dB at R = 8.

Since 2026-12-05 the reverse process starts by default at 0.35 T from the noised CG-SENSE image (``warm_start``,
CCDF) and takes its 50 steps from there: on the same validation cases +0.97 / +1.32 / +0.07 / +0.60 dB on Gaussian
2D / Poisson / random R = 4 / random R = 8 against 50 steps from noise, at the same 50 network evaluations, and
+0.30 dB on a validation volume. The 2D masks, whose CG-SENSE start is already close, prefer 0.15 (+0.36 / +0.15 dB
more), the random lines 0.5-0.65 (up to +0.2 dB); 0.35 has the best mean. More ADMM rounds of the couplings per step
(``tv_iterations``) gained 0.1-0.5 dB from noise at 1.4-1.8 times the time; off (1) by default.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from dataclasses import dataclass, field

from diffrecon.checks import check_auto, check_integer, check_positive
from diffrecon.classical.mri_tv import AxisTV
from diffrecon.methods.mri_diffusion import TotalVariationCouplings, solve_consistency
from diffrecon.methods.sampler import Call, VPDiffusionMethod
from diffrecon.methods.spaces import MRISpace
from diffrecon.priors.prior import ScoreModel
from diffrecon.uncertainty.calibration import phantom_calibration


FALLBACK_GAMMA = 10.0
"""γ where no noise level is known (too few samples in the k-space periphery): the fixed default tuned before
2026-12-07."""


STD_CALIBRATIONS = tuple(
    phantom_calibration(factor, f"R{r:g} random lines", {"steps": 50, "gamma": 10.0, "warm_start": 0.35},
                        cases=cases, voxels=voxels, validation_seeds=seeds, acceleration=r, mask_dims=2)
    for factor, r, cases, voxels, seeds in ((3.102, 4.0, 12, 113633, "10000-10011"),
                                            (2.389, 8.0, 8, 75454, "10000-10007")))
"""The recalibration factors of DDS's std (issue 34), fitted on validation phantoms (the central T1 slice,
128 x 128, 8 coils, 30 dB, random lines with an 8% centre) at acceleration 4 (subjects 10000-10011) and 8
(10000-10007) with 16 samples at the default settings: the sample std times 3.102 (R 4) or 2.389 (R 8) makes
mean ± 2 std cover 95% of the brain voxels pooled over those slices (on test slices: 94.8% at R 4, 55.5% before;
94.7% at R 8, 59.0% before). Each applies within a factor 1.25 of its acceleration
(:meth:`~diffrecon.uncertainty.StdCalibration.applies_to`; docs/uncertainty.md)."""


@dataclass
class DDSState:
    """Per call: the total-variation couplings, whether γ is searched (None: hard consistency), the current γ per
    sample and the γ each step chose."""

    couplings: list[AxisTV]
    search: bool | None
    gamma: torch.Tensor
    chosen: list[list[float]] = field(default_factory=list)


class DDS(VPDiffusionMethod):
    """DDS on the sampler (:mod:`diffrecon.methods.sampler`) in the MRI space
    (:class:`~diffrecon.methods.spaces.MRISpace`: ``phase_correction``, ``chunk_size``, ``clip``).

    Args:
        prior: the VP form of a 2D magnitude slice prior (``load_bundle_prior('mr_t1_prior', 'vp')``).
        steps, warm_start, eta, final_time, callback, progress: as :class:`~diffrecon.methods.sampler.VPDiffusionMethod`.
        gamma: the weight γ of the data in the CG system (larger trusts the k-space more); or "auto": at every step
            and per sample, the γ at which the refined estimate meets the discrepancy target σ² m (Morozov; σ from
            ``noise_sigma``, :mod:`diffrecon.methods.discrepancy`), searched from the previous step's, and hard
            consistency for noise-free data. Not the default: on validation slices it lost 1.4-3.1 dB to γ = 10
            (docs/robustness.md).
        noise_sigma: the k-space noise σ that sets the target ("auto": estimated from the k-space periphery; 0:
            noise-free).
        cg_iterations: CG iterations per step.
        real_valued: reconstruct a real image (one network image per sample instead of two).
        clip: the Tweedie estimate (prior units, real and imaginary parts) is clamped to [-clip, clip] before the
            data step (DDPM's clipping of x̂₀; the prior's images lie in [0, 1]); None: not clamped.
        slice_tv, slice_rho, plane_tv, plane_rho, tv_iterations: total-variation couplings
            (:class:`~diffrecon.methods.mri_diffusion.TotalVariationCouplings`).
    """

    name = "dds"
    modality = "MR"
    std_calibrations = STD_CALIBRATIONS

    def __init__(self, prior: ScoreModel, steps: int = 50, gamma: float | str = 10.0, cg_iterations: int = 5,
                 eta: float = 1.0, warm_start: float | None = 0.35, final_time: float = 0.0, real_valued: bool = False,
                 clip: float | None = 1.0, phase_correction: bool = True, slice_tv: float = 0.03,
                 slice_rho: float = 1.0, plane_tv: float = 0.001, plane_rho: float = 0.01, tv_iterations: int = 1,
                 chunk_size: int = 16, noise_sigma: float | str = "auto",
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, MRISpace(phase_correction, chunk_size, clip, noise_sigma), steps, warm_start, eta,
                         final_time, callback, progress)
        self.tv = TotalVariationCouplings(slice_tv, slice_rho, plane_tv, plane_rho, tv_iterations)
        self.gamma = check_auto("gamma", gamma, check_positive, "a number > 0")
        self.cg_iterations = check_integer("cg_iterations", cg_iterations)
        self.real_valued = bool(real_valued)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), **self.tv.settings(), "gamma": self.gamma, "cg_iterations": self.cg_iterations,
                "real_valued": self.real_valued, "clip": self.space.clip}

    def prepare(self, call: Call) -> DDSState:
        if self.real_valued:
            call.reference = call.reference.real
        discrepancy = call.discrepancy
        search = None if self.gamma == "auto" and discrepancy.noise_free else (
            self.gamma == "auto" and discrepancy.available)
        gamma = FALLBACK_GAMMA if self.gamma == "auto" else self.gamma
        return DDSState(self.tv.new(call.physics), search, torch.full((call.num_samples,), gamma,
                                                                      device=call.data.device))

    def consistent(self, image: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        state: DDSState = call.state
        if state.search is None:  # noise-free: CG on the normal equations from x̂₀
            return self._solve(image, None, call)
        if not state.search:
            return self._solve(image, state.gamma, call)
        saved = [(coupling.splits, coupling.duals) for coupling in state.couplings]

        def trial(gamma: torch.Tensor) -> torch.Tensor:
            for coupling, (splits, duals) in zip(state.couplings, saved):
                coupling.splits, coupling.duals = splits, duals
            return self._solve(image, gamma, call)

        refined, state.gamma, _ = call.discrepancy.match(trial, call.fidelity.deviance, state.gamma)
        state.chosen.append(state.gamma.tolist())
        return trial(state.gamma) if state.couplings else refined  # the couplings' splits of the chosen γ

    def _solve(self, image: torch.Tensor, gamma: torch.Tensor | None, call: Call) -> torch.Tensor:
        """CG on (I/γ + AᴴA) x = x̂₀/γ + Aᴴy from x̂₀ with the couplings, γ per sample (None: μ = 0)."""
        mu = 0.0 if gamma is None else (1 / gamma).reshape(-1, *(1,) * (image.dim() - 1)).to(image.real.dtype)
        return solve_consistency(image, call.measured, call.physics, self.cg_iterations, mu, image,
                                 call.state.couplings, admm_iterations=self.tv.tv_iterations)

    def summary(self, call: Call) -> dict[str, Any]:
        state: DDSState = call.state
        if state.search is None:
            return {"gamma": "hard consistency (noise-free)"}
        return {"gamma": state.gamma.tolist(), "gamma_by_step": state.chosen} if state.search else {}
