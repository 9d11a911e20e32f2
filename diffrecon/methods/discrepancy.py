"""Self-tuning data consistency by the discrepancy principle: a reconstruction should explain the data as well as the
truth does in expectation, not better (that is fitting the noise) and not worse (the prior overriding the data).

The space (:mod:`diffrecon.methods.spaces`) sets a call's :class:`Discrepancy` from the data alone: for PET the
expected Poisson deviance of the expected counts of an OSEM image (:func:`poisson_discrepancy`); for MRI
σ² times the number of measured samples, σ from a noise scan, the k-space periphery or the user
(:func:`gaussian_discrepancy`). Methods whose strength of data consistency is "auto" choose it so that the result
meets the target, aimed one standard deviation of the truth's deviance above it (:attr:`Discrepancy.aim`,
Morozov's τ > 1): PET-LiSch's schedule rises to it (:mod:`diffrecon.methods.likelihood_schedule`), PET-DDS's anchor
and DDS's data weight are searched per sample and step (:func:`match_discrepancy`), Score-MRI's projection is
relaxed to it in closed form. Every diffusion method reports its achieved deviance against the target, and a
warning where it is far off.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from diffrecon.physics.discrepancy import kspace_noise_sigma, non_count_reason, poisson_expected_deviance
from diffrecon.physics.fidelity import PoissonLikelihood

LOG = logging.getLogger("diffrecon")
OVERFIT_RATIO = 0.9
"""Below this deviance / target the result fits the data more closely than the noise allows."""
UNDERFIT_RATIO = 1.25
"""Above it the result explains the data worse than the noise allows."""
TARGET_ITERATIONS = 4
"""OSEM iterations (the space's subsets, 8) of the image whose expected counts μ̂ set the PET target. E[D] is steep
and concave at low means, so an image of lower resolution (fewer iterations, or smoothed) spreads counts into
near-empty bins and biases the target high, and in 3D that bias moves K a lot: the OSEM deviance falls only 1.7%
from iteration 1 to the truth's. On validation subject 10000 the targets from 1 / 2 / 4 / 8 iterations were +1.1 /
+0.5 / +0.3 / +0.2% off the expected deviance of the true means in 3D at 1% counts, and on single slices at
0.1-100% within 0.6% from 1 iteration and 0.21% from 2 and 4 (``python scripts/check_discrepancy_target.py
--preset demo --count-level 1%``; ``--count-level 0.1%`` etc. for slices)."""
NOISE_FREE = 1e-5
"""An estimated k-space σ below this fraction of the data's rms is rounding noise: the data are noise-free."""
TOLERANCE = 1.0
"""The standard deviations of the truth's deviance, about target · √(2 / m) for m measurements (Poisson bins of
moderate mean: var D ≈ 2 per bin; complex Gaussian samples: 1, so this is loose by √2 there), that set the aim
above the target and half of which the search of a data weight stops within: closer is below the noise of the
target itself. A relative tolerance would not do: in 3D PET (3e6 bins at 1%
counts) the whole range from one OSEM iteration to the truth's deviance is 1.7%."""
TRIALS = 6
"""Data-consistency solves the search may take per step."""
FLATTEST_SLOPE = 0.02
"""The flattest d log(deviance) / d log(weight) the search's secant steps assume."""
WEIGHT_PRECISION = 1.2
"""The search also stops once its next step, from a measured slope or inside a bracket, would change the weight by
less than this factor: in 3D the deviance tolerance is 0.04% of the target, below what the weight changes. PET-DDS
on validation subject 10000 (demo scanner): stopping on the deviance alone (6 solves a step) against this rule,
NRMSE 0.2078 in 41 s / 0.2057 in 23 s at 1% counts, 0.2712 / 0.2712 at 0.1%, 0.1872 / 0.1872 at 10% (fixed λ 0.02
at 1%: 0.2057 in 22 s); single validation slices unchanged. A first step of at least a factor 2 (so that the secant
is measured over more than the noise) was worse on validation (0.2121 at 1%, 0.2785 at 0.1%) and is not used, though
on the SPM12 template (test data, 1%) the search stops near its start (NRMSE 0.107; its per-case best 0.078)."""
MAX_FACTOR = 1e4
"""The search stays within this factor of its start on either side."""


@dataclass
class Discrepancy:
    """The target misfit of one call: ``target`` is the deviance (:mod:`diffrecon.physics.fidelity`, in the
    call's units) the result should have; None where it cannot be set (``source`` says why). ``target`` 0:
    noise-free data, hard consistency. ``measurements``: the values the deviance sums over. ``warn_overfit``: warn
    when a result fits the data far more closely than the target (not for MRI k-space: there the near-exact fit
    of the measured samples was better than the target's on validation slices, docs/robustness.md)."""

    target: float | None
    measurements: int
    source: str
    warn_overfit: bool = True

    @property
    def tolerance(self) -> float:
        """How close a searched data fit needs to come to the target (:data:`TOLERANCE`), in the target's units
        (MRI deviances are in prior units, not divided by σ²): the target times √(2 / m)."""
        return TOLERANCE * self.target * math.sqrt(2 / self.measurements)

    @property
    def aim(self) -> float:
        """The deviance the self-tuning methods aim at: the target plus :attr:`tolerance`, Morozov's τ > 1 (here one
        standard deviation of the truth's deviance): of the results the data cannot tell from the truth's fit, the
        most regularised. Near the plateau of what a method's data steps can fit, the exact target asks for the
        weakest regularisation for a fit no better in the noise (validation slices at 1%: PET-DDS's anchor went to
        0, NRMSE 0.82, where λ 2-50 gave 0.37 at 1.02-1.04 times the target)."""
        return self.target + self.tolerance

    def match(self, solve: Callable[[torch.Tensor], torch.Tensor], deviance: Callable[[torch.Tensor], torch.Tensor],
              weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:func:`match_discrepancy` aimed at :attr:`aim`, within half a :attr:`tolerance`: the search every
        self-tuning data weight uses."""
        return match_discrepancy(solve, deviance, weight, self.aim, self.tolerance / 2)

    @property
    def available(self) -> bool:
        return self.target is not None

    @property
    def noise_free(self) -> bool:
        return self.target == 0

    def report(self, deviance: torch.Tensor) -> dict[str, Any]:
        """The target, each sample's deviance per measurement and ratio to the target, and warnings (logged too)
        where a sample fits the data far better or far worse than the noise allows."""
        deviance = deviance.detach().double().cpu()
        report: dict[str, Any] = {"discrepancy_source": self.source, "measurements": self.measurements,
                                  "deviance_per_measurement": (deviance / self.measurements).tolist()}
        warnings = []
        if not self.available:
            warnings.append(f"data consistency not self-tuned: {self.source}")
        elif not self.noise_free:
            ratio = deviance / self.target
            report.update(discrepancy_target_per_measurement=self.target / self.measurements,
                          discrepancy_aim_per_measurement=self.aim / self.measurements,
                          discrepancy_ratio=ratio.tolist())
            if self.warn_overfit and (ratio < OVERFIT_RATIO).any():
                warnings.append(f"over-fitting: deviance / target {ratio.min():.2f} < {OVERFIT_RATIO}: the result "
                                "fits the data more closely than the noise allows (it has fitted noise); let the "
                                "data consistency tune itself (the 'auto' defaults) or weaken it")
            if (ratio > UNDERFIT_RATIO).any():
                warnings.append(f"under-fitting: deviance / target {ratio.max():.2f} > {UNDERFIT_RATIO}: the result "
                                "explains the data worse than the noise allows (the prior overrides the data, too "
                                "few data steps, or a physics model that does not match the data)")
        for warning in warnings:
            LOG.warning(warning)
        return {**report, "warnings": warnings}


def poisson_discrepancy(fidelity: PoissonLikelihood, image: torch.Tensor) -> Discrepancy:
    """The discrepancy target of PET counts: Σ E[D(Y; μ̂)] over the bins, μ̂ the expected counts (background
    included) of ``image``, an OSEM image of :data:`TARGET_ITERATIONS`; unavailable for data that are not counts."""
    data = fidelity.data
    reason = non_count_reason(data)
    measurements = data[0].numel() if data.dim() == 4 else data.numel()
    if reason is not None:
        return Discrepancy(None, measurements, f"{reason}; not Poisson counts, so no target")
    with torch.no_grad():
        target = poisson_expected_deviance(fidelity.expected(image.reshape(-1, *image.shape[-3:])))
    return Discrepancy(float(target.flatten(1).sum(1).mean()), measurements, "expected Poisson deviance of the "
                       f"expected counts of OSEM at {TARGET_ITERATIONS} iterations")


def gaussian_discrepancy(kspace: torch.Tensor, mask: torch.Tensor, measurements: int, noise_sigma: float | str,
                         scale: float, scanned: float | None = None) -> Discrepancy:
    """The discrepancy target of k-space in prior units (k-space / ``scale``): σ² m, σ the complex noise level
    (``noise_sigma`` in the data's units, or "auto": ``scanned``, the acquisition's noise scan, where there is one,
    else :func:`~diffrecon.physics.discrepancy.kspace_noise_sigma`,
    where an estimate below :data:`NOISE_FREE` of the data's rms counts as noise-free); 0 (hard consistency) for
    σ = 0."""
    if noise_sigma == "auto" and scanned is not None:
        sigma, source = scanned, f"noise σ {scanned:.4g} from the file's noise scan"
    elif noise_sigma == "auto":
        sigma = kspace_noise_sigma(kspace, mask)
        if sigma is None:
            return Discrepancy(None, measurements, "too few measured samples to estimate the k-space noise from; "
                               "give noise_sigma", warn_overfit=False)
        source = f"noise σ {sigma:.4g} estimated from the k-space"
        if sigma < NOISE_FREE * float(kspace[..., mask].abs().square().mean().sqrt()):
            sigma, source = 0.0, f"noise-free (estimated σ {sigma:.2g}): hard consistency"
    else:
        sigma = float(noise_sigma)
        source = "noise-free (noise_sigma 0): hard consistency" if sigma == 0 else f"noise σ {sigma:.4g} given"
    return Discrepancy((sigma / scale) ** 2 * measurements, measurements, source, warn_overfit=False)


def match_discrepancy(solve: Callable[[torch.Tensor], torch.Tensor], deviance: Callable[[torch.Tensor], torch.Tensor],
                      weight: torch.Tensor, target: float, tolerance: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per batch item, a data weight w at which ``deviance(solve(w))`` meets ``target`` (the deviance falls as w
    rises), searched in log w from ``weight`` (B,): a step of the log misfit (slope −1 assumed), then secant
    steps (at most a factor 100 each), and regula falsi once the target is bracketed; at most :data:`TRIALS`
    solves, until within ``tolerance`` (deviance) of the target or until the next weight would be within a factor
    :data:`WEIGHT_PRECISION` of the last.
    Returns the closest trial's images, weights and deviances."""
    start = weight.double().log()
    log_w = start.clone()
    low = torch.full_like(log_w, -math.inf)  # largest log w found too weak (misfit above target)
    high = torch.full_like(log_w, math.inf)  # smallest log w found too strong
    low_error, high_error = torch.zeros_like(log_w), torch.zeros_like(log_w)
    best_error = torch.full_like(log_w, math.inf)
    log_tolerance = math.log1p(tolerance / target) if target > 0 else 0.0
    best_image = best_w = best_deviance = previous = None
    for _ in range(TRIALS):
        image = solve(log_w.exp().to(weight.dtype))
        misfit = deviance(image)
        error = (misfit.double().clamp_min(1e-30) / target).log()
        better = error.abs() < best_error.abs()
        if best_image is None:
            best_image, best_w, best_deviance = image, log_w.clone(), misfit
        else:
            shape = (-1,) + (1,) * (image.dim() - 1)
            best_image = torch.where(better.reshape(shape).to(image.device), image, best_image)
            best_w, best_deviance = torch.where(better, log_w, best_w), torch.where(better.to(misfit.device),
                                                                                    misfit, best_deviance)
        best_error = torch.where(better, error, best_error)
        weak = error > 0
        low, low_error = torch.where(weak, log_w, low), torch.where(weak, error, low_error)
        high, high_error = torch.where(~weak, log_w, high), torch.where(~weak, error, high_error)
        bracketed = low.isfinite() & high.isfinite()
        slope = torch.full_like(log_w, -1.0)
        measured = torch.zeros_like(log_w, dtype=torch.bool)  # the step comes from a measured slope
        if previous is not None:  # the secant, no flatter than FLATTEST_SLOPE (a weak response: large steps)
            secant = (error - previous[1]) / (log_w - previous[0])
            measured = secant < 0
            slope = torch.where(measured, secant.clamp(max=-FLATTEST_SLOPE), slope)
        previous = (log_w, error)
        step = (-error / slope).clamp(-math.log(100), math.log(100))
        falsi = low + low_error * (high - low) / (low_error - high_error).clamp_min(1e-12)
        proposed = torch.where(bracketed, falsi, log_w + step)
        proposed = proposed.clamp(start - math.log(MAX_FACTOR), start + math.log(MAX_FACTOR))
        small = (proposed - log_w).abs() <= math.log(WEIGHT_PRECISION)
        settled = (best_error.abs() <= log_tolerance) | (small & (measured | bracketed))
        if settled.all():
            break
        log_w = proposed
    return best_image, best_w.exp().to(weight.dtype), best_deviance
