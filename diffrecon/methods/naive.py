"""The naive scaled-likelihood sampler (Jalal et al., NeurIPS 2021, as Singh et al.'s PET baseline), for PET and
MRI: the likelihood gradient evaluated at the noisy iterate x_t (no Tweedie estimate, no gradient through the
network) is added to the prior's score with a weight rising over the steps.

In DDIM terms the noise prediction becomes ε̂ + σ_t w_i ∇ g(x_t / α_t), g the space's data misfit (the one DPS
descends: the log Poisson deviance for PET, the residual norm for MRI), so that w is unit-free across count levels
and k-space scales (our choice; Singh et al. scale the raw negative log-likelihood by a tuned penalty). It is
evaluated at x_t / α_t, the variance-exploding image of x_t, as the reference's VE sampler does at x_t. The weight of
step i of N is ``weight`` times a linear ramp from ``weight_schedule[0]`` to ``weight_schedule[1]`` (the reference:
i / N, from 0 to 1). There is no data-consistency step: the last step's x̂₀ is the sample.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from diffrecon.checks import InputError, check_positive
from diffrecon.methods.sampler import Call, VPDiffusionMethod
from diffrecon.methods.spaces import MRISpace, PETSpace
from diffrecon.priors.prior import ScoreModel


class NaiveMethod(VPDiffusionMethod):
    """The naive sampler in any space; arguments as :class:`~diffrecon.methods.sampler.VPDiffusionMethod` plus:

    Args:
        weight: w (> 0), the likelihood weight at the top of the ramp.
        weight_schedule: (first, last) multipliers of ``weight`` over the steps, each in [0, 1], linear between.
    """

    def __init__(self, prior: ScoreModel, space: Any, steps: int, weight: float,
                 weight_schedule: Sequence[float], warm_start: float | None, eta: float, final_time: float,
                 callback: Callable[[int, torch.Tensor], None] | None, progress: bool) -> None:
        super().__init__(prior, space, steps, warm_start, eta, final_time, callback, progress)
        check_positive("weight", weight)
        self.weight = float(weight)
        ramp = tuple(weight_schedule)
        if len(ramp) != 2 or not all(0 <= float(v) <= 1 for v in ramp):
            raise InputError(f"weight_schedule must be (first, last) multipliers in [0, 1], got {weight_schedule!r}")
        self.weight_schedule = tuple(float(v) for v in ramp)
        self.weights = (self.weight * torch.linspace(*self.weight_schedule, len(self.timesteps),
                                                     dtype=torch.float64)).tolist()

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "weight": self.weight, "weight_schedule": list(self.weight_schedule)}

    def description_details(self) -> str:
        return f" weight={self.weight:g}"

    def correct_noise(self, x: torch.Tensor, t: int, noise: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        weight = self.weights[step]
        if weight == 0:
            return noise
        alpha, sigma = (float(v) for v in self.prior.schedule.alpha_sigma(t))
        with torch.enable_grad():
            image = (x.detach() / alpha).requires_grad_(True)
            misfit = self.space.guidance_objective(self.space.from_network(image, call, clamp=False), call).sum()
            (gradient,) = torch.autograd.grad(misfit, image)
        return noise + sigma * weight * gradient / alpha  # d/dx_t of g(x_t / α) is ∇g / α


class PETNaive(NaiveMethod):
    """The naive sampler for PET: a VP score over (..., x, y, z) volumes, the PET space (``mr`` and ``guidance``:
    MR guidance of an MR-conditioned prior, :class:`~diffrecon.methods.spaces.PETSpace`)."""

    name = "pet-naive"
    modality = "PT"

    def __init__(self, prior: ScoreModel, steps: int = 8, weight: float = 300.0,
                 weight_schedule: Sequence[float] = (0.0, 1.0), warm_start: float | None = 0.3, eta: float = 1.0,
                 final_time: float = 0.0, osem_iterations: int | str = "auto",
                 osem_subsets: int = 8, mr: Any = None, guidance: float = 0.0,
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, PETSpace(osem_iterations, osem_subsets, mr, guidance), steps, weight, weight_schedule,
                         warm_start, eta, final_time, callback, progress)


class MRINaive(NaiveMethod):
    """The naive sampler for MRI: the VP form of a 2D slice prior, the MRI space."""

    name = "naive"
    modality = "MR"

    def __init__(self, prior: ScoreModel, steps: int = 50, weight: float = 100.0,
                 weight_schedule: Sequence[float] = (0.0, 1.0), warm_start: float | None = 0.35, eta: float = 1.0,
                 final_time: float = 0.0, clip: float | None = 1.0, phase_correction: bool = True,
                 chunk_size: int = 16, noise_sigma: float | str = "auto",
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, MRISpace(phase_correction, chunk_size, clip, noise_sigma), steps, weight,
                         weight_schedule, warm_start, eta, final_time, callback, progress)
