"""PET-LiSch (Webber et al., IEEE TMI 2025): likelihood-scheduled diffusion sampling for fully 3D PET.

An EM run on the measured data records its Poisson log-likelihood (PLL) after every iteration: OSEM over
``schedule_subsets`` view subsets (8 by default, the OSEM run that sets the scale, continued), or MLEM as in the
paper with ``schedule_subsets=1``. Reverse step i of N gets the target PLL of iteration
k_i = 1 + (K − 1) i / (N − 1) (linear interpolation between iterations), rising along the curve to PLL(K)
(:mod:`diffrecon.methods.likelihood_schedule`).

K is by default chosen from the data (``iterations="auto"``, since 2026-12-07): the real iteration where the OSEM
curve meets the discrepancy aim, the PLL at which the deviance is the expected Poisson deviance of the data plus one
standard deviation (:mod:`diffrecon.methods.discrepancy`). The fixed K = 3 tuned at 1% counts in 3D over-fits the
noise at lower counts and under-fits at higher ones (issue 29: on single slices at 1e5 counts OSEM 1 × 8 already
fits better than the truth); below one iteration the schedule starts at the uniform image's PLL (iteration 0).
At each step, likelihood steps start from the scaled Tweedie estimate and run until its PLL
reaches the step's target, at most ``max_ascent_steps`` (steps that hit the cap are reported); where the estimate
already meets the target, no data step is taken. So the final image is as consistent with the data as (OS)EM at
K iterations (iso-likelihood), and K is the one hyperparameter that sets how much the result leans on the data.

A likelihood step proposes one EM pass over ``subsets`` view subsets (OSEM; 1 subset: the MLEM step) and moves
the fraction a in [0, 1] of the way to the proposal at which the PLL meets the target: a line search that costs
no projection, since the expected counts of x + a d are ȳ(x) + a A d (one forward projection of the direction d
per step), and that keeps the image non-negative (a convex combination of two non-negative images). One pass
over 8 subsets raises the PLL about as much as 8 MLEM steps for the cost of one, and the line search lands on
the target instead of past it.

The papers give no more detail (reference/kcl_methods.md): the iteration-index schedule, the OSEM curve in place
of MLEM's, the subset EM pass with its line search as the likelihood step, the cap and the stopping rule are our
choices, exposed as parameters. The OSEM curve is ours for speed: OSEM reaches the likelihood of MLEM at 8K
iterations in about K, so the schedule costs K passes instead of 8K (on a validation phantom at 1% counts on the
3D demo scanner, OSEM's K = 3 lands between MLEM's 23 and 24), and on validation subjects it matched or beat the
MLEM schedule (docs/pet_diffusion.md). The defaults (K = 3 over 8 subsets, a warm start at 0.3 T from the
noised OSEM image with 8 steps, passes over 8 subsets) were tuned on validation subjects with
``scripts/bench_pet.py``: the warm start as good as 20 steps from noise at a quarter of the network evaluations,
8 subsets as good as 1 at half the time, K = 3 the best of 2-4 in 3D at 1% counts with prior versions 0.2.0 and
0.3.0 (10% counts: K = 11; single-slice data at 10%: K = 2), 8 steps the fewest within 0.5% of the best of 2-12 at
1% (5 until 2026-12-05: 1.4% worse; at 10% counts 5 and 8 are level).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from diffrecon.checks import InputError, check_auto, check_integer
from diffrecon.classical.pet import em_ascent_step
from diffrecon.methods.likelihood_schedule import likelihood_schedule
from diffrecon.methods.sampler import Call, VPDiffusionMethod
from diffrecon.methods.spaces import PETSpace
from diffrecon.physics.pet import PETAcquisitionModel, data_ratio, poisson_log_likelihood, subset_views
from diffrecon.priors.prior import ScoreModel
from diffrecon.uncertainty.calibration import phantom_calibration

FLOAT_SUM_PRECISION = 1e-6
"""The precision of a float32 sum over a sinogram, as a fraction of the sum: below it two sums of the same image's
PLL can disagree, so the line search aims this far past a target that the check then finds met."""


STD_CALIBRATIONS = tuple(
    phantom_calibration(factor, f"demo2d {level}", {"steps": 8, "iterations": "auto", "warm_start": 0.3, "mr": None}, cases=40,
                        voxels=90494, validation_seeds="10000-10039", scanner="demo2d", trues_per_sinogram=trues,
                        count_tolerance=2.0)
    for factor, level, trues in ((2.448, "1%", 1e4), (3.125, "10%", 1e5)))
"""The recalibration factors of PET-LiSch's std (issue 34), fitted as PET-DDS's (validation phantoms
10000-10039 on the demo2d scanner, 16 samples, default settings): 2.448 at 1% and 3.125 at 10% (on test subjects
20000-20019 mean ± 2 std then covers 94.7% and 95.6% of the brain voxels; 51.7% and 47.8% before;
docs/uncertainty.md)."""


@dataclass
class LiSchState:
    """Per call: the view subsets, the schedule's (OS)EM likelihood curve (iteration 0: the uniform start), K
    (real: where the curve meets the discrepancy target), each step's target, and per step the likelihood steps
    taken and the steps that hit the cap."""

    views: list[list[int]]
    curve: list[float]
    iterations: float
    targets: list[float]
    ascent_steps: list[int] = field(default_factory=list)
    capped: list[int] = field(default_factory=list)


class PETLiSch(VPDiffusionMethod):
    """PET-LiSch on the sampler (:mod:`diffrecon.methods.sampler`) in the PET space.

    Args:
        prior: a VP score over (..., x, y, z) volumes (a :class:`~diffrecon.priors.TriPlanarScore`).
        steps, warm_start, eta, final_time, callback, progress: as :class:`~diffrecon.methods.sampler.VPDiffusionMethod`.
        iterations: "auto" (the default): K is where the schedule's (OS)EM run meets the discrepancy target (the
            expected Poisson deviance of the data, :mod:`diffrecon.methods.discrepancy`), a real number; or an
            integer K, the iteration count of that run whose log-likelihood the result matches.
        schedule_subsets: view subsets of that run (1: MLEM, as in the paper). When it equals ``osem_subsets`` the
            run continues the OSEM run that sets the scale instead of starting again.
        subsets: view subsets of the EM pass a likelihood step proposes (1: one MLEM step).
        step_size: relaxation of the EM steps of that pass (1: the EM step), in (0, 2].
        max_ascent_steps: cap on likelihood steps per diffusion step.
        osem_iterations, osem_subsets: the OSEM image that sets the scale and the warm start
            (:class:`~diffrecon.methods.spaces.PETSpace`).
        mr, guidance: the T1 on the PET grid and the classifier-free guidance strength w >= 0 of an MR-conditioned
            prior (:class:`~diffrecon.methods.spaces.PETSpace`).
    """

    name = "pet-lisch"
    modality = "PT"
    std_calibrations = STD_CALIBRATIONS

    def __init__(self, prior: ScoreModel, steps: int = 8, iterations: int | str = "auto", schedule_subsets: int = 8,
                 subsets: int = 8, step_size: float = 1.0, max_ascent_steps: int = 10, eta: float = 0.1,
                 warm_start: float | None = 0.3, final_time: float = 0.0, osem_iterations: int | str = "auto",
                 osem_subsets: int = 8, mr: Any = None, guidance: float = 0.0,
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, PETSpace(osem_iterations, osem_subsets, mr, guidance), steps, warm_start, eta,
                         final_time, callback, progress)
        self.iterations = check_auto("iterations", iterations, check_integer, "an integer >= 1")
        self.subsets = check_integer("subsets", subsets)
        self.schedule_subsets = check_integer("schedule_subsets", schedule_subsets)
        if not 0 < step_size <= 2:
            raise InputError(f"step_size must be in (0, 2], got {step_size!r}")
        self.step_size = float(step_size)
        self.max_ascent_steps = check_integer("max_ascent_steps", max_ascent_steps)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "subsets": self.subsets, "iterations": self.iterations,
                "schedule_subsets": self.schedule_subsets, "step_size": self.step_size,
                "max_ascent_steps": self.max_ascent_steps}

    def description_details(self) -> str:
        return f" K={self.iterations}"

    def check(self, data: torch.Tensor, physics: Any) -> None:
        for name in ("subsets", "schedule_subsets"):
            subset_views(physics.projector.n_views, getattr(self, name), name)

    def prepare(self, call: Call) -> LiSchState:
        schedule = likelihood_schedule(call, len(self.timesteps), self.iterations, self.schedule_subsets,
                                       self.space.osem_subsets)
        return LiSchState(subset_views(call.physics.projector.n_views, self.subsets), schedule.curve,
                          schedule.iterations, schedule.targets)

    def consistent(self, image: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        state: LiSchState = call.state
        data, model = call.measured, call.physics
        target = state.targets[step]
        aim = target + FLOAT_SUM_PRECISION * abs(target)
        activity = image
        expected = model.forward(activity)
        log_likelihood = poisson_log_likelihood(data, expected)
        taken = 0
        while (below := log_likelihood < target).any() and taken < self.max_ascent_steps:
            start, start_expected = activity[below], expected[below]
            direction = self._em_pass(start, data, model, start_expected, state.views) - start
            change = model.linear(direction)
            fraction = _fraction_to_target(data, start_expected, change, aim)[:, None, None, None]
            activity, expected, log_likelihood = activity.clone(), expected.clone(), log_likelihood.clone()
            activity[below] = start + fraction * direction
            expected[below] = start_expected + fraction * change
            log_likelihood[below] = poisson_log_likelihood(data, expected[below])
            taken += 1
        state.ascent_steps.append(taken)
        if below.any():
            state.capped.append(step)
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

    def summary(self, call: Call) -> dict[str, Any]:
        state: LiSchState = call.state
        return {"iterations": state.iterations, "target_log_likelihood": state.targets[-1], "targets": state.targets,
                "schedule_log_likelihood": state.curve, "ascent_steps": state.ascent_steps,
                "likelihood_steps": sum(state.ascent_steps), "capped_steps": state.capped}


def _fraction_to_target(measured: torch.Tensor, expected: torch.Tensor, change: torch.Tensor, target: float,
                        tolerance: float = 1e-4, iterations: int = 8, halvings: int = 12) -> torch.Tensor:
    """Per batch item, an a in [0, 1] with PLL(ȳ + a Δ) >= ``target`` at most ``tolerance`` past the smallest such
    a, or the a that maximises the PLL on [0, 1] where no a reaches it.

    The PLL φ(a) is concave, which gives a bracket that closes fast: Newton's step from a point below the target
    lands at or below the crossing, and the chord from that point to a point above the target crosses the target
    at or above it. So Newton's iterates rise to the crossing while the chord's root, feasible at every
    iteration, closes on it; it is returned once within ``tolerance`` of them, or after ``iterations``. The
    maximiser, where φ falls before a = 1, is found by bisection on φ'."""
    def value_and_slope(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shifted = expected + a[:, None, None, None] * change
        return (poisson_log_likelihood(measured, shifted),
                ((data_ratio(measured, shifted) - 1) * change).flatten(1).sum(1))

    high = torch.ones(len(expected), device=expected.device)
    high_value, high_slope = value_and_slope(high)
    if (high_slope < 0).any():  # a peak inside [0, 1] for some item: move their upper end to it
        low = torch.zeros_like(high)
        for _ in range(halvings):
            middle = (low + high) / 2
            rising = value_and_slope(middle)[1] >= 0
            low, high = torch.where(rising, middle, low), torch.where(rising, high, middle)
        high_value = value_and_slope(high)[0]
    reachable = high_value >= target
    low = torch.zeros_like(high)
    answer = high
    for _ in range(iterations):
        value, slope = value_and_slope(low)
        gap = target - value
        chord = low + gap * (high - low) / (high_value - value).clamp_min(torch.finfo(value.dtype).tiny)
        answer = torch.where(reachable, torch.where(gap > 0, chord.clamp(low, high), low), high)
        if ((answer - low <= tolerance) | ~reachable).all():
            break
        newton = low + gap / slope.clamp_min(torch.finfo(slope.dtype).tiny)
        low = torch.where(reachable & (gap > 0), torch.minimum(newton, answer), low)
    return answer

