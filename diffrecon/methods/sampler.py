"""The one reverse-diffusion sampler every diffusion method runs on: the VP/DDIM loop and the VE predictor-corrector
loop are written here once, and a method fills typed hooks.

A call goes: the method checks what it can before any work (:meth:`DiffusionMethod.check`); its modality space
(:mod:`diffrecon.methods.spaces`) checks the data, fits the prior to the image size, computes the reference image
and the scale between prior units and the data (a :class:`Call`); the method prepares its own per-call state
(:meth:`DiffusionMethod.prepare`, e.g. PET-LiSch's likelihood targets); the loop starts from noise or from the
noised reference (warm start) and runs the hooks at every step:

- VP (DDIM, :class:`VPDiffusionMethod`): ε̂ = network(x_t) (:meth:`~VPDiffusionMethod.correct_noise` may change it:
  the naive sampler's likelihood term, a correction network), x̂₀ by Tweedie, clamped and mapped to the data's
  space by the space, :meth:`~DiffusionMethod.consistent` (DDS, PET-DDS, PET-LiSch), then the DDIM update, minus
  :meth:`~VPDiffusionMethod.guidance` (DPS: a gradient through the network, the only hook run with autograd on).
- VE (predictor-corrector, :class:`VEDiffusionMethod`): a Langevin corrector and a reverse-diffusion predictor per
  step, :meth:`~DiffusionMethod.consistent` after each, :meth:`~VEDiffusionMethod.end_step` after both (Score-MRI).

:meth:`~DiffusionMethod.adapt` runs before every network evaluation (adaptation of the network to the data, e.g.
LoRA steering). The loop times network, physics and guidance gradients (``seconds_gradient``: the backward pass
through the network) apart, counts network evaluations, shows one progress bar, calls the ``callback`` and writes
the report; the space adds its data fit.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from diffrecon.checks import InputError, check_at_least, check_integer, check_positive
from diffrecon.methods.base import Method, Reconstruction, Stopwatch, summarize_samples
from diffrecon.priors.prior import ScoreModel
from diffrecon.priors.schedules import VESchedule, VPSchedule
from diffrecon.priors.steps import (ddim_step, ddim_timesteps, langevin_corrector, random_normal,
                                     reverse_diffusion_predictor, ve_timesteps)


@dataclass
class Call:
    """The state of one call of a diffusion method, shared by the sampler, the space and the method's hooks.

    Attributes:
        data: the checked measurement, in its own units.
        physics: the acquisition model.
        score: the prior fitted to the image size.
        measured: what the data-consistency steps fit (PET: the counts; MRI: the k-space divided by the scale).
        reference: the reference image in the space's image units (PET: OSEM activity; MRI: the zero-filled or
            CG-SENSE image in prior units); a method's :meth:`~DiffusionMethod.prepare` may replace it.
        scale: data units per prior unit.
        clock: network/physics stopwatch.
        generator: the caller's random generator (or None).
        num_samples: samples drawn at once (the batch).
        fidelity: the space's data-fidelity object (value and gradient of the log-likelihood).
        phase: MRI: e^{iφ} the prior's images are demodulated by (None: none).
        state: the method's own per-call state (returned by its :meth:`~DiffusionMethod.prepare`).
        extras: what the space computed that a method may reuse (PET: the OSEM run).
        discrepancy: the data-fit target of the discrepancy principle the space set from the data
            (:class:`~diffrecon.methods.discrepancy.Discrepancy`).
    """

    data: torch.Tensor
    physics: Any
    score: ScoreModel
    measured: torch.Tensor
    reference: torch.Tensor
    scale: float
    clock: Stopwatch
    generator: torch.Generator | None
    num_samples: int
    fidelity: Any
    phase: torch.Tensor | None = None
    state: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    discrepancy: Any = None


class DiffusionMethod(Method):
    """Base of every diffusion method: the settings every one shares and the parts of a call both loops share.

    Args:
        prior: a score model (:class:`~diffrecon.priors.ScoreModel`) with the schedule of the method's form.
        space: the modality space (:class:`~diffrecon.methods.spaces.PETSpace` or
            :class:`~diffrecon.methods.spaces.MRISpace`).
        steps: reverse steps.
        warm_start: None to start from noise; a fraction f in (0, 1) to start at time f T from the noised reference
            image (SDEdit/CCDF), which needs far fewer steps.
        callback: ``callback(step, image)`` after each step's data consistency, with the current image(s) in the
            data's units.
        progress: show a progress bar.
    """

    schedule_kind: ClassVar[type]

    def __init__(self, prior: ScoreModel, space: Any, steps: int, warm_start: float | None,
                 callback: Callable[[int, torch.Tensor], None] | None, progress: bool) -> None:
        if not isinstance(prior, ScoreModel):
            raise InputError(f"prior must be a diffrecon.priors.ScoreModel, got {type(prior).__name__}")
        if not isinstance(prior.schedule, self.schedule_kind):
            raise InputError(f"prior has a {type(prior.schedule).__name__}; {self.name} needs the "
                             f"{self.schedule_kind.kind.upper()} form ({space.prior_hint(self.schedule_kind.kind)})")
        space.check_prior(prior)
        self.prior, self.space = prior, space
        self.steps = check_integer("steps", steps)
        if warm_start is not None and not 0 < warm_start < 1:
            raise InputError(f"warm_start must be a fraction in (0, 1) of the noise schedule (or null: start from "
                             f"pure noise), got {warm_start!r}")
        self.warm_start = None if warm_start is None else float(warm_start)
        if callback is not None and not callable(callback):
            raise InputError(f"callback must be callable or None, got {type(callback).__name__}")
        self.callback = callback
        self.progress = bool(progress)

    def settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "warm_start": self.warm_start, **self.space.settings()}

    def description(self) -> str:
        start = "" if self.warm_start is None else f" warm start {self.warm_start:g}"
        return f"{self.name.upper()} {self.steps} steps{start}{self.description_details()}{self.space.description()}"

    def description_details(self) -> str:
        """The method's own main settings in its one-line description (default: none)."""
        return ""

    # hooks -----------------------------------------------------------------------------------------------------
    def check(self, data: torch.Tensor, physics: Any) -> None:
        """Checks of the method's own settings against the physics, before any work (default: none)."""

    def prepare(self, call: Call) -> Any:
        """The method's per-call state (``call.state``), computed once before sampling; may replace
        ``call.reference`` (default: None)."""
        return None

    def adapt(self, x: torch.Tensor, t: float, call: Call, step: int) -> None:
        """Adapt the network to the data before its evaluation at step ``step`` (default: nothing)."""

    def consistent(self, image: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        """The data-consistent version of ``image`` (the space's image units) at reverse step ``step``
        (default: unchanged)."""
        return image

    def finish(self, call: Call) -> None:
        """Undo what :meth:`prepare` changed outside the call (e.g. adapters on the prior), after sampling, also
        when it fails (default: nothing)."""

    def result(self, image: torch.Tensor, call: Call, evaluations: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """The samples in the data's units from the last step's images, and the data fit to report (the space's
        by default); ``evaluations``: network evaluations per sample."""
        return self.space.output(image, call), self.space.data_fit(image, call, evaluations)

    def summary(self, call: Call) -> dict[str, Any]:
        """What the method adds to the report (JSON-serialisable; default: nothing)."""
        return {}

    def output(self, image: torch.Tensor, call: Call) -> torch.Tensor:
        """The current image(s) in the data's units, as the callback sees them."""
        return self.space.output(image, call)

    # the call --------------------------------------------------------------------------------------------------
    def reconstruct(self, data: torch.Tensor, physics: Any, num_samples: int,
                    generator: torch.Generator | None) -> Reconstruction:
        self.space.check_physics(physics)
        self.check(data, physics)
        call = self.space.prepare(data, physics, self.prior, num_samples, generator)
        with call.clock("physics"):
            call.state = self.prepare(call)
        try:
            self.space.represent(call)
            image, evaluations = self.sample(call)
        finally:
            self.finish(call)
        samples, data_fit = self.result(image, call, evaluations)
        seconds = {"network": 0.0, "physics": 0.0, **call.clock.seconds}
        summary = self.summary(call)
        report = {**summary, "network_evaluations": evaluations, "scale": call.scale, **data_fit,
                  **{f"seconds_{part}": value for part, value in seconds.items()}}
        if "warnings" in summary:  # the method's and the data fit's warnings together
            report["warnings"] = [*summary["warnings"], *data_fit.get("warnings", [])]
        mean, std = summarize_samples(samples)
        return Reconstruction(mean, std, samples, report)

    @abstractmethod
    def sample(self, call: Call) -> tuple[torch.Tensor, int]:
        """The reverse-diffusion loop: the last step's images (space's image units) and the network
        evaluations per sample."""

    def start_noise(self, call: Call, shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normal noise of ``shape`` on the data's device, drawn with the caller's generator."""
        return random_normal(shape, call.generator, call.data.device)

    def after_step(self, step: int, image: torch.Tensor, call: Call, bar: Any) -> None:
        if self.callback is not None:
            self.callback(step, self.output(image, call))
        if self.progress:
            bar.set_postfix(step=step + 1)


class VPDiffusionMethod(DiffusionMethod):
    """A method on the VP/DDIM loop; arguments as :class:`DiffusionMethod` plus:

    Args:
        eta: DDIM stochasticity (0 deterministic given the start noise, 1 ancestral).
        final_time: fraction of T where sampling stops; the last step's consistent estimate is the result.
    """

    schedule_kind = VPSchedule
    needs_gradient: ClassVar[bool] = False
    """True for methods whose :meth:`guidance` differentiates through the network (autograd on for that step)."""

    def __init__(self, prior: ScoreModel, space: Any, steps: int, warm_start: float | None, eta: float,
                 final_time: float, callback: Callable[[int, torch.Tensor], None] | None, progress: bool) -> None:
        super().__init__(prior, space, steps, warm_start, callback, progress)
        self.eta = check_at_least("eta", eta)
        if self.eta > 1:
            raise InputError(f"eta must be in [0, 1], got {eta!r}")
        self.final_time = check_at_least("final_time", final_time)
        if self.final_time >= (self.warm_start or 1.0):
            raise InputError(f"final_time ({final_time}) must be below the start ({self.warm_start or 1.0})")
        last = prior.schedule.num_train_timesteps - 1
        start = last if self.warm_start is None else round(self.warm_start * last)
        self.timesteps = ddim_timesteps(prior.schedule, self.steps, start, round(self.final_time * last))

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "eta": self.eta, "final_time": self.final_time}

    def correct_noise(self, x: torch.Tensor, t: int, noise: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        """The noise prediction the step uses, given the network's (default: the network's)."""
        return noise

    def guidance(self, x: torch.Tensor, denoised: torch.Tensor, call: Call, step: int) -> torch.Tensor | None:
        """A term subtracted from the DDIM update x_{t'}, e.g. DPS's ζ ∇ₓ‖y − A x̂₀(x)‖; ``denoised`` is the space's
        image of x̂₀(x) with the graph to ``x`` when :attr:`needs_gradient` (default: None)."""
        return None

    def sample(self, call: Call) -> tuple[torch.Tensor, int]:
        schedule, space = self.prior.schedule, self.space
        reference = space.to_network(call.reference, call)
        noise = self.start_noise(call, (call.num_samples, *reference.shape))
        alpha, sigma = (float(v) for v in schedule.alpha_sigma(self.timesteps[0][0]))
        x = noise if self.warm_start is None else alpha * reference + sigma * noise
        bar = tqdm(self.timesteps, desc=self.description(), disable=not self.progress, leave=False)
        for step, (t, t_prev) in enumerate(bar):
            with torch.no_grad():
                self.adapt(x, t, call, step)
            if self.needs_gradient:  # one sample at a time: the backward pass keeps one sample's activations
                predicted, denoised, pulls = zip(*(self._denoise(sample, t, call, step) for sample in x.split(1)))
                predicted, denoised = torch.cat(predicted), torch.cat(denoised)
                pull = None if pulls[0] is None else torch.cat(pulls)
            else:
                predicted, denoised, pull = self._denoise(x, t, call, step)
            with torch.no_grad():
                with call.clock("physics"):
                    image = self.consistent(denoised, call, step)
                self.after_step(step, image, call, bar)
                x = ddim_step(space.to_network(image, call), predicted, schedule, t, t_prev, self.eta,
                              call.generator)
                if pull is not None:
                    x = x - pull
        return image, len(self.timesteps)

    def _denoise(self, x: torch.Tensor, t: int, call: Call, step: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The (corrected) noise prediction, x̂₀ in the space's image units and the guidance pull of the samples
        ``x``, with autograd on only for a method whose guidance needs it."""
        with torch.set_grad_enabled(self.needs_gradient):
            if self.needs_gradient:
                x = x.detach().requires_grad_(True)
            with call.clock("network"):
                predicted = call.score.predict_noise(x, t)
            with call.clock("physics"):
                predicted = self.correct_noise(x, t, predicted, call, step)
            with call.clock("network"):
                denoised = self.space.from_network(call.score.tweedie(x, t, predicted), call)
            with call.clock("gradient"):  # DPS: the misfit's gradient through the network (and physics)
                pull = self.guidance(x, denoised, call, step)
        return predicted.detach(), denoised.detach(), pull


class VEDiffusionMethod(DiffusionMethod):
    """A method on the VE predictor-corrector loop (Song et al. 2021); arguments as :class:`DiffusionMethod` plus:

    Args:
        snr: signal-to-noise ratio of the Langevin corrector (0.16 in the reference).
    """

    schedule_kind = VESchedule

    def __init__(self, prior: ScoreModel, space: Any, steps: int, warm_start: float | None, snr: float,
                 callback: Callable[[int, torch.Tensor], None] | None, progress: bool) -> None:
        super().__init__(prior, space, steps, warm_start, callback, progress)
        check_positive("snr", snr)
        self.snr = float(snr)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "snr": self.snr}

    def end_step(self, image: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        """What follows the corrector and predictor of step ``step`` (default: nothing)."""
        return image

    def sample(self, call: Call) -> tuple[torch.Tensor, int]:
        space, score = self.space, call.score
        last = self.prior.schedule.num_train_timesteps - 1
        times, sigmas = ve_timesteps(self.prior.schedule, self.steps,
                                     None if self.warm_start is None else self.warm_start * last)
        reference = space.to_network(call.reference, call)
        x = float(sigmas[0]) * self.start_noise(call, (call.num_samples, *reference.shape))
        if self.warm_start is not None:
            x = x + reference
        with torch.no_grad():
            with call.clock("physics"):
                image = self.consistent(space.from_network(x, call), call, -1)
            bar = tqdm(range(self.steps), desc=self.description(), disable=not self.progress, leave=False)
            for i in bar:
                for corrector in (True, False):
                    with call.clock("network"):
                        parts = space.to_network(image, call)
                        self.adapt(parts, float(times[i]), call, i)
                        gradient = score.score(parts, times[i])
                        if corrector:
                            parts = langevin_corrector(parts, gradient, self.snr, score.spatial_dims, call.generator)
                        else:
                            parts = reverse_diffusion_predictor(parts, gradient, float(sigmas[i]),
                                                                float(sigmas[i + 1]), call.generator,
                                                                add_noise=i < self.steps - 1)
                    with call.clock("physics"):
                        image = self.consistent(space.from_network(parts, call), call, i)
                with call.clock("physics"):
                    image = self.end_step(image, call, i)
                self.after_step(i, image, call, bar)
        return image, 2 * self.steps
