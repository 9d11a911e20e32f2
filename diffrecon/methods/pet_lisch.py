"""PET-LiSch (Webber et al., IEEE TMI 2025): likelihood-scheduled diffusion sampling for fully 3D PET.

MLEM runs first on the measured data to the target iteration count K and its Poisson log-likelihood (PLL) after
every iteration is recorded. Reverse step i of N gets the target PLL of MLEM iteration k_i = 1 + (K − 1) i / (N − 1)
(linear interpolation between iterations), rising along the MLEM curve to PLL(K). At each step, likelihood steps
start from the scaled Tweedie estimate and run until its PLL reaches the step's target, at most
``max_ascent_steps`` (steps that hit the cap are reported); where the estimate already meets the target, no data
step is taken. So the final image is as consistent with the data as MLEM at K iterations (iso-likelihood), and K
is the one hyperparameter that sets how much the result leans on the data.

A likelihood step proposes one EM pass over ``subsets`` view subsets (OSEM; 1 subset: the MLEM step) and moves
the fraction a in [0, 1] of the way to the proposal at which the PLL meets the target: a line search that costs
no projection, since the expected counts of x + a d are ȳ(x) + a A d (one forward projection of the direction d
per step), and that keeps the image non-negative (a convex combination of two non-negative images). One pass
over 8 subsets raises the PLL about as much as 8 MLEM steps for the cost of one, and the line search lands on
the target instead of past it.

The papers give no more detail (reference/kcl_methods.md): the iteration-index schedule, the subset EM pass with
its line search as the likelihood step, the cap and the stopping rule are our choices, exposed as parameters. The
defaults (K = 25, a warm start at 0.3 T from the noised OSEM image with 5 steps, passes over 8 subsets) were tuned
on validation subjects with ``scripts/bench_pet.py`` (docs/pet_diffusion.md): the warm start as good as 20 steps
from noise at a quarter of the network evaluations, 8 subsets as good as 1 at half the time, K = 25 the smallest
K within 0.5% of the best in 3D with prior version 0.2.0 (single-slice data: K = 15 was best in 2D).
"""
from __future__ import annotations

from typing import Any

import torch

from diffrecon.checks import InputError, check_integer
from diffrecon.classical.pet import em_ascent_step, mlem
from diffrecon.methods.pet_diffusion import PETDiffusionMethod
from diffrecon.physics.pet import PETAcquisitionModel, data_ratio, poisson_log_likelihood
from diffrecon.priors.prior import ScoreModel


class PETLiSch(PETDiffusionMethod):
    """PET-LiSch; arguments as :class:`PETDiffusionMethod` plus:

    Args:
        iterations: K, the MLEM iteration count whose log-likelihood the result matches.
        subsets: view subsets of the EM pass a likelihood step proposes (1: one MLEM step).
        step_size: relaxation of the EM steps of that pass (1: the EM step), in (0, 2].
        max_ascent_steps: cap on likelihood steps per diffusion step.
    """

    name = "pet-lisch"

    def __init__(self, prior: ScoreModel, steps: int = 5, iterations: int = 25, subsets: int = 8,
                 step_size: float = 1.0, max_ascent_steps: int = 10, eta: float = 0.1, warm_start: float | None = 0.3,
                 final_time: float = 0.0, osem_iterations: int = 2, osem_subsets: int = 8,
                 progress: bool = True) -> None:
        super().__init__(prior, steps, eta, warm_start, final_time, subsets, osem_iterations, osem_subsets, progress)
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
        expected = model.forward(activity)
        log_likelihood = poisson_log_likelihood(data, expected)
        taken = 0
        while (below := log_likelihood < target).any() and taken < self.max_ascent_steps:
            start, start_expected = activity[below], expected[below]
            direction = self._em_pass(start, data, model, start_expected, context["views"]) - start
            change = model.linear(direction)
            fraction = _fraction_to_target(data, start_expected, change, target)[:, None, None, None]
            activity, expected, log_likelihood = activity.clone(), expected.clone(), log_likelihood.clone()
            activity[below] = start + fraction * direction
            expected[below] = start_expected + fraction * change
            log_likelihood[below] = poisson_log_likelihood(data, expected[below])
            taken += 1
        context["ascent_steps"].append(taken)
        if below.any():
            context["capped"].append(step)
        return activity

    def _em_pass(self, image: torch.Tensor, data: torch.Tensor, model: PETAcquisitionModel, expected: torch.Tensor,
                 views: list[list[int]]) -> torch.Tensor:
        """One (OS)EM pass from ``image`` over ``views`` (``expected`` is ȳ of ``image``, all views)."""
        if len(views) == 1:
            return em_ascent_step(image, data, model, relaxation=self.step_size, expected=expected)
        for index, subset in enumerate(views):
            image = em_ascent_step(image, data, model, subset, relaxation=self.step_size,
                                   expected=expected[..., subset, :] if index == 0 else None)
        return image

    def summary(self, context: dict[str, Any]) -> dict[str, Any]:
        return {"target_log_likelihood": context["targets"][-1], "targets": context["targets"],
                "mlem_log_likelihood": context["mlem_log_likelihood"], "ascent_steps": context["ascent_steps"],
                "likelihood_steps": sum(context["ascent_steps"]), "capped_steps": context["capped"]}


def _fraction_to_target(measured: torch.Tensor, expected: torch.Tensor, change: torch.Tensor, target: float,
                        halvings: int = 12) -> torch.Tensor:
    """Per batch item, the smallest a in [0, 1] (to 2^-halvings) with PLL(ȳ + a Δ) >= ``target``, or the a that
    maximises the PLL on [0, 1] where no a reaches it. The PLL is concave in a, so bisection finds both."""
    def log_likelihood(a: torch.Tensor) -> torch.Tensor:
        return poisson_log_likelihood(measured, expected + a[:, None, None, None] * change)

    def slope(a: torch.Tensor) -> torch.Tensor:
        shifted = expected + a[:, None, None, None] * change
        return ((data_ratio(measured, shifted) - 1) * change).flatten(1).sum(1)

    low = torch.zeros(len(expected), device=expected.device)
    high = torch.ones_like(low)
    if (slope(high) < 0).any():  # a peak inside [0, 1] for some item: move their upper end to it
        for _ in range(halvings):
            middle = (low + high) / 2
            rising = slope(middle) >= 0
            low, high = torch.where(rising, middle, low), torch.where(rising, high, middle)
        low = torch.zeros_like(low)
    for _ in range(halvings):  # where even the upper end misses the target, this leaves it there
        middle = (low + high) / 2
        enough = log_likelihood(middle) >= target
        low, high = torch.where(enough, low, middle), torch.where(enough, middle, high)
    return high


def _interpolate(curve: list[float], k: float) -> float:
    """The value of ``curve`` (one value per iteration 1, 2, ...) at real iteration ``k``, linearly."""
    low = min(int(k), len(curve)) - 1
    high = min(low + 1, len(curve) - 1)
    return curve[low] + (k - (low + 1)) * (curve[high] - curve[low])
