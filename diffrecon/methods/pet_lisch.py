"""PET-LiSch (Webber et al., IEEE TMI 2025): likelihood-scheduled diffusion sampling for fully 3D PET.

MLEM runs first on the measured data to the target iteration count K and its Poisson log-likelihood (PLL) after
every iteration is recorded. Reverse step i of N gets the target PLL of MLEM iteration k_i = 1 + (K − 1) i / (N − 1)
(linear interpolation between iterations), rising along the MLEM curve to PLL(K). At each step, full-data EM
steps (relaxation ``step_size``) start from the scaled Tweedie estimate and run until its PLL reaches the step's
target, at most ``max_ascent_steps`` (steps that hit the cap are reported); where the estimate already meets the
target, no data step is taken. So the final image is as consistent with the data as MLEM at K iterations
(iso-likelihood), and K is the one hyperparameter that sets how much the result leans on the data.

The papers give no more detail (reference/kcl_methods.md): the iteration-index schedule, full-data EM steps as
the likelihood step, the cap and the stopping rule are our choices, exposed as parameters. The defaults (K = 15,
a warm start at 0.3 T from the noised OSEM image with 5 steps) were tuned on validation subjects with
``scripts/bench_pet.py`` (docs/pet_diffusion.md): as good as 20 steps from noise at a quarter of the network
evaluations.
"""
from __future__ import annotations

from typing import Any

import torch

from diffrecon.checks import InputError, check_integer
from diffrecon.classical.pet import em_ascent_step, mlem
from diffrecon.methods.pet_diffusion import PETDiffusionMethod
from diffrecon.physics.pet import PETAcquisitionModel, poisson_log_likelihood
from diffrecon.priors.prior import ScoreModel


class PETLiSch(PETDiffusionMethod):
    """PET-LiSch; arguments as :class:`PETDiffusionMethod` plus:

    Args:
        iterations: K, the MLEM iteration count whose log-likelihood the result matches.
        step_size: relaxation of the EM likelihood steps (1: the EM step), in (0, 2].
        max_ascent_steps: cap on likelihood steps per diffusion step.
    """

    name = "pet-lisch"

    def __init__(self, prior: ScoreModel, steps: int = 5, iterations: int = 15, step_size: float = 1.0,
                 max_ascent_steps: int = 10, eta: float = 0.1, warm_start: float | None = 0.3,
                 final_time: float = 0.0, osem_iterations: int = 2, osem_subsets: int = 8,
                 progress: bool = True) -> None:
        super().__init__(prior, steps, eta, warm_start, final_time, osem_iterations, osem_subsets, progress)
        self.iterations = check_integer("iterations", iterations)
        if not 0 < step_size <= 2:
            raise InputError(f"step_size must be in (0, 2], got {step_size!r}")
        self.step_size = float(step_size)
        self.max_ascent_steps = check_integer("max_ascent_steps", max_ascent_steps)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "iterations": self.iterations, "step_size": self.step_size,
                "max_ascent_steps": self.max_ascent_steps}

    def description(self) -> str:
        return f"{super().description()} K={self.iterations}"

    def prepare(self, data: torch.Tensor, model: PETAcquisitionModel, scale: float) -> dict[str, Any]:
        curve = mlem(data, model, self.iterations, progress=False).log_likelihood
        n = len(self.timesteps)
        positions = [1 + (self.iterations - 1) * i / max(n - 1, 1) for i in range(n)]
        targets = [_interpolate(curve, k) for k in positions]
        return {"mlem_log_likelihood": curve, "targets": targets, "ascent_steps": [], "capped": []}

    def consistent(self, activity: torch.Tensor, data: torch.Tensor, model: PETAcquisitionModel, step: int,
                   context: dict[str, Any]) -> torch.Tensor:
        target = context["targets"][step]
        taken = 0
        while True:
            expected = model.forward(activity)  # for the likelihood and for the EM step that may follow
            below = poisson_log_likelihood(data, expected) < target
            if not below.any() or taken == self.max_ascent_steps:
                break
            activity = activity.clone()
            activity[below] = em_ascent_step(activity[below], data, model, relaxation=self.step_size,
                                             expected=expected[below])
            taken += 1
        context["ascent_steps"].append(taken)
        if below.any():
            context["capped"].append(step)
        return activity

    def summary(self, context: dict[str, Any]) -> dict[str, Any]:
        return {"target_log_likelihood": context["targets"][-1], "targets": context["targets"],
                "mlem_log_likelihood": context["mlem_log_likelihood"], "ascent_steps": context["ascent_steps"],
                "likelihood_steps": sum(context["ascent_steps"]), "capped_steps": context["capped"]}


def _interpolate(curve: list[float], k: float) -> float:
    """The value of ``curve`` (one value per iteration 1, 2, ...) at real iteration ``k``, linearly."""
    low = min(int(k), len(curve)) - 1
    high = min(low + 1, len(curve) - 1)
    return curve[low] + (k - (low + 1)) * (curve[high] - curve[low])
