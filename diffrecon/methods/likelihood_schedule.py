"""The likelihood schedule: per reverse step, the Poisson log-likelihood (PLL) the data-consistent estimate should
reach, rising along an (OS)EM run's curve to its K-th iteration, with K where that curve meets the discrepancy
aim (:mod:`diffrecon.methods.discrepancy`) or given. PET-LiSch's likelihood steps climb to these targets (Webber
et al. 2025). (PET-DDS aims every step at the final target instead: on validation slices, scheduled targets were
3-8% worse at 10% and full counts.)

Reverse step i of N gets the PLL of the real iteration k_i = k₀ + (K − k₀) i / (N − 1), k₀ = min(1, K), linearly
between iterations; iteration 0 is the uniform image (OSEM's start), so a K below one iteration works at very low
counts, where one OSEM iteration already fits the noise.
"""
from __future__ import annotations

from dataclasses import dataclass

from diffrecon.classical.pet import PETReconstruction, osem, uniform_image
from diffrecon.methods.sampler import Call
from diffrecon.physics.pet import poisson_log_likelihood

FALLBACK_ITERATIONS = 3
"""K where the data give no discrepancy target (not counts): PET-LiSch's fixed default tuned before 2026-12-07."""
MAX_SCHEDULE_ITERATIONS = 50
"""The schedule's (OS)EM run stops here if it has not reached the discrepancy target (K is then this)."""


@dataclass
class LikelihoodSchedule:
    """The (OS)EM curve (PLL at iterations 0, 1, ...), K (real) and the target PLL of each reverse step."""

    curve: list[float]
    iterations: float
    targets: list[float]


def likelihood_schedule(call: Call, steps: int, iterations: int | str, subsets: int,
                        reference_subsets: int) -> LikelihoodSchedule:
    """The schedule of a call over ``steps`` reverse steps: K = ``iterations``, or ("auto") where the curve of
    (OS)EM with ``subsets`` view subsets meets the discrepancy aim (``Discrepancy.aim``) (:data:`FALLBACK_ITERATIONS` where there is
    none). Where the space's OSEM run (``call.extras["osem"]``, over ``reference_subsets``) has the same subsets,
    its iterations are reused and it is continued from its image."""
    target = None
    if iterations == "auto" and call.discrepancy.available:
        target = call.fidelity.saturated() - call.discrepancy.aim / 2  # D = 2 (saturated − PLL)
    fixed = FALLBACK_ITERATIONS if iterations == "auto" else iterations
    curve = _curve(call, subsets, subsets == reference_subsets, fixed, target)
    k = float(fixed) if target is None else _crossing(curve, target)
    first = min(1.0, k)
    positions = [first + (k - first) * i / max(steps - 1, 1) for i in range(steps)]
    return LikelihoodSchedule(curve, k, [_interpolate(curve, p) for p in positions])


def _curve(call: Call, subsets: int, reuse: bool, iterations: int, target: float | None) -> list[float]:
    """The PLL of the uniform start and after each iteration of (OS)EM with ``subsets`` subsets: ``iterations`` of
    them, or with a ``target`` until the PLL reaches it (at most :data:`MAX_SCHEDULE_ITERATIONS`)."""
    data, model = call.measured, call.physics
    run: PETReconstruction = call.extras["osem"]
    curve = [float(poisson_log_likelihood(data, model.forward(uniform_image(model, data[None]))))]
    image = None
    if reuse:
        curve, image = curve + run.log_likelihood, run.image
    wanted = iterations if target is None else MAX_SCHEDULE_ITERATIONS
    while len(curve) - 1 < wanted and (target is None or curve[-1] < target):
        more = osem(data, model, 1, subsets, initial=image, progress=False)
        curve, image = curve + more.log_likelihood, more.image
    return curve[:wanted + 1] if target is None else curve


def _interpolate(curve: list[float], k: float) -> float:
    """The value of ``curve`` (one value per iteration 0, 1, 2, ...) at real iteration ``k``, linearly."""
    low = min(int(k), len(curve) - 1)
    high = min(low + 1, len(curve) - 1)
    return curve[low] + (k - low) * (curve[high] - curve[low])


def _crossing(curve: list[float], target: float) -> float:
    """The real iteration where the rising ``curve`` (iterations 0, 1, ...) reaches ``target``, linearly between
    iterations; its last iteration where it never does, 0 where it starts above."""
    for k in range(1, len(curve)):
        if curve[k] >= target:
            return max(0.0, k - 1 + (target - curve[k - 1]) / (curve[k] - curve[k - 1]))
    return float(len(curve) - 1) if curve[0] < target else 0.0
