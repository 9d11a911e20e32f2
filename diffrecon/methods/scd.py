"""Steerable conditional diffusion (SCD; Barbano, Denker, Chung et al., IEEE TMI 2025; for PET, Webber, Hammers,
King and Reader, IEEE NSS/MIC 2025): low-rank adapters on the frozen prior's networks are trained during sampling
on the data misfit of the current estimate, steering the prior towards the measured subject when it lies outside
the prior's training family.

On the sampler's adaptation hook (:meth:`~diffrecon.methods.sampler.DiffusionMethod.adapt`): at every ``skip``-th
reverse step and the ``last`` steps, up to ``adapt_iterations`` Adam steps (no weight decay) on the adapters (rank
``rank``, :mod:`diffrecon.priors.adapters`; zero-initialised up-projections, so the adapted network starts equal to
the prior) minimise the data loss of the step's estimate per measurement; the adapters and the optimiser state are
kept across the steps of one call and removed at its end (the prior, in memory and on disk, is unchanged). The step
then proceeds as the base method's with the adapted network.

- DDS (MRI): the loss is ‖A x − y‖² of the estimate after the CG data-consistency step, differentiated through the
  CG iterations (as the reference; without the total-variation couplings, whose splits belong to the sampling).
- PET-DDS and PET-LiSch: the Poisson deviance of the Tweedie estimate (``em_steps=0``: a stop-gradient variant, the
  method's likelihood steps not differentiated) or after ``em_steps`` MLEM steps differentiated through.
- Ours, not the reference's: with ``stop_at_aim`` (the default) a sample's loss counts only above the discrepancy
  aim (:mod:`diffrecon.methods.discrepancy`; PET-LiSch: the step's own likelihood target), and an adapted step stops
  once no sample is above it: a prior that already explains the data as well as the noise allows is left alone.

Measured on validation cases (docs/scd.md): more adaptation was worse or level everywhere in family and on the
out-of-family cases we could build (amyloid PET and T2-weighted MR phantoms, a prior trained on amyloid
reconstructing FDG), so the defaults (learning rate 1e-4, 2 updates at every 4th step and the last 2, rank 4) adapt
little; tried and dropped: the reference's DDIM direction from the unadapted network (worse), its total-variation
term (less harm than none, still worse than no steering), no floor (worse), more updates (worse).

The cost is a forward and a backward pass of the network per update and one forward pass per adapted step,
counted in the report as ``steering_evaluations``.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from diffrecon.checks import InputError, check_integer, check_positive
from diffrecon.methods.dds_mri import DDS
from diffrecon.methods.mri_diffusion import solve_consistency
from diffrecon.methods.pet_dds import PETDDS
from diffrecon.methods.pet_lisch import PETLiSch
from diffrecon.methods.sampler import Call
from diffrecon.priors.adapters import attach_adapters, remove_adapters


@dataclass
class Steering:
    """SCD's settings: adapter ``rank``, Adam ``learning_rate``, at most ``iterations`` updates per adapted step,
    adaptation at every ``skip``-th step and the ``last`` steps, and whether a sample whose loss meets the
    discrepancy aim is left alone (``stop_at_aim``)."""

    rank: int = 4
    learning_rate: float = 1e-4
    iterations: int = 1
    skip: int = 4
    last: int = 2
    stop_at_aim: bool = True

    def __post_init__(self) -> None:
        self.rank = check_integer("rank", self.rank)
        self.learning_rate = check_positive("learning_rate", self.learning_rate)
        self.iterations = check_integer("iterations", self.iterations)
        self.skip = check_integer("skip", self.skip)
        self.last = check_integer("last", self.last, minimum=0)
        if not isinstance(self.stop_at_aim, bool):
            raise InputError(f"stop_at_aim must be true or false, got {self.stop_at_aim!r}")

    def settings(self) -> dict[str, Any]:
        return {"rank": self.rank, "learning_rate": self.learning_rate, "adapt_iterations": self.iterations,
                "skip": self.skip, "last": self.last, "stop_at_aim": self.stop_at_aim}

    def adapted_steps(self, steps: int) -> list[int]:
        """The reverse steps (of ``steps``) whose network is adapted first."""
        return sorted({i for i in range(steps) if i % self.skip == 0} | set(range(max(steps - self.last, 0), steps)))


@dataclass
class SteeringState:
    """Per call: the adapters' optimiser, the steps to adapt and, per adapted step, the loss before and after, the
    updates taken and the network passes spent (forward and backward)."""

    optimizer: torch.optim.Optimizer
    steps: list[int]
    losses: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


class SteeredMethod:
    """What SCD adds to a method on the VP sampler (a mixin before the method's class): adapters attached in
    :meth:`prepare`, trained in :meth:`adapt`, removed in :meth:`finish`; subclasses give :meth:`steering_deviance`."""

    steering: Steering

    def __init__(self, prior, rank: int = 4, learning_rate: float = 1e-4, adapt_iterations: int = 1, skip: int = 4,
                 last: int = 2, stop_at_aim: bool = True, **settings: Any) -> None:
        self.steering = Steering(rank, learning_rate, adapt_iterations, skip, last, stop_at_aim)
        super().__init__(prior, **settings)

    def prepare(self, call: Call) -> Any:
        state = super().prepare(call)
        parameters = attach_adapters(call.score, self.steering.rank)
        optimizer = torch.optim.Adam(parameters, lr=self.steering.learning_rate, weight_decay=0.0)
        call.extras["steering"] = SteeringState(optimizer, self.steering.adapted_steps(len(self.timesteps)))
        return state

    def adapt(self, x: torch.Tensor, t: float, call: Call, step: int) -> None:
        steering: SteeringState = call.extras["steering"]
        if step not in steering.steps:
            return
        start = time.perf_counter()
        x = x.detach()
        with torch.enable_grad():
            losses, updates = [], 0
            for _ in range(self.steering.iterations):
                steering.optimizer.zero_grad()
                deviance = self.steering_deviance(x, t, call)
                losses.append(float(deviance.detach().mean()) / call.discrepancy.measurements)
                excess = self._excess(deviance, call, step)
                if not excess.requires_grad or float(excess.detach()) == 0:  # every sample fits as the noise allows
                    break
                excess.backward()
                steering.optimizer.step()
                updates += 1
        measure_after = updates == len(losses)  # every pass ended in an update, whose effect is not measured yet
        after = losses[-1]
        if measure_after:
            with torch.no_grad():
                after = float(self.steering_deviance(x, t, call).mean()) / call.discrepancy.measurements
        steering.losses.append({"step": step, "before": losses[0], "after": after, "updates": updates,
                                "passes": len(losses) + updates + int(measure_after)})
        steering.seconds += time.perf_counter() - start

    def _excess(self, deviance: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        """The loss the adapters minimise: each sample's deviance above the step's aim (where the data set one
        and :attr:`stop_at_aim`), else its deviance, summed and per measurement."""
        if self.steering.stop_at_aim and call.discrepancy.available:
            deviance = (deviance - self.steering_aim(call, step)).clamp_min(0)
        return deviance.sum() / call.discrepancy.measurements

    def steering_aim(self, call: Call, step: int) -> float:
        """The deviance below which step ``step`` does not adapt: the discrepancy aim (the method's final data
        fit)."""
        return call.discrepancy.aim

    def steering_deviance(self, x: torch.Tensor, t: float, call: Call) -> torch.Tensor:
        """The data misfit (the fidelity's deviance, per sample) of the estimate from the network at ``x``."""
        raise NotImplementedError

    def denoised(self, x: torch.Tensor, t: float, call: Call) -> torch.Tensor:
        """The Tweedie estimate of the (adapted) network at ``x``, in the space's image units."""
        return self.space.from_network(call.score.tweedie(x, t), call)

    def finish(self, call: Call) -> None:
        remove_adapters(call.score)
        super().finish(call)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), **self.steering.settings()}

    def summary(self, call: Call) -> dict[str, Any]:
        steering: SteeringState = call.extras["steering"]
        return {**super().summary(call), "steering_losses": steering.losses,
                "steering_evaluations": sum(entry["passes"] for entry in steering.losses),
                "seconds_steering": steering.seconds}


def _with_steering(base: type):
    """A class decorator: the steered class gets a constructor signature listing ``base``'s settings and the
    steering settings, so that the registry, the command line and the bundles see (and check) every option."""
    def decorate(cls: type) -> type:
        inherited = list(inspect.signature(base).parameters.values())
        mixins = [k for k in cls.__mro__[1:cls.__mro__.index(base)] if "__init__" in vars(k)]
        own = [p for mixin in mixins for name, p in inspect.signature(mixin.__init__).parameters.items()
               if name not in ("self", "prior", "settings")]
        cls.__signature__ = inspect.Signature(inherited[:1] + own + inherited[1:])
        return cls
    return decorate


@_with_steering(DDS)
class SteeredDDS(SteeredMethod, DDS):
    """SCD with DDS (MRI): arguments as :class:`~diffrecon.methods.dds_mri.DDS` plus the :class:`Steering`
    settings ``rank``, ``learning_rate``, ``adapt_iterations``, ``skip``, ``last``, ``stop_at_aim``."""

    name = "scd-dds"

    def steering_deviance(self, x: torch.Tensor, t: float, call: Call) -> torch.Tensor:
        denoised = self.denoised(x, t, call)
        gamma = call.state.gamma.reshape(-1, *(1,) * (denoised.dim() - 1)).to(denoised.real.dtype)
        refined = solve_consistency(denoised, call.measured, call.physics, self.cg_iterations, 1 / gamma, denoised)
        return call.fidelity.deviance(refined)


class SteeredPETMethod(SteeredMethod):
    """SCD's loss for the PET methods: the Poisson deviance of the (adapted) network's Tweedie estimate after
    ``em_steps`` MLEM steps differentiated through (the projector's exact adjoint as their backward pass); 0 (the
    default) is a stop-gradient variant: the deviance of the estimate itself, the method's own likelihood steps
    not differentiated."""

    def __init__(self, prior, em_steps: int = 0, **settings: Any) -> None:
        self.em_steps = check_integer("em_steps", em_steps, minimum=0)
        super().__init__(prior, **settings)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "em_steps": self.em_steps}

    def steering_deviance(self, x: torch.Tensor, t: float, call: Call) -> torch.Tensor:
        image = self.denoised(x, t, call)
        for _ in range(self.em_steps):
            image = call.fidelity.em_step(image)
        return call.fidelity.deviance(image)


@_with_steering(PETDDS)
class SteeredPETDDS(SteeredPETMethod, PETDDS):
    """SCD with PET-DDS: arguments as :class:`~diffrecon.methods.pet_dds.PETDDS` plus the :class:`Steering`
    settings ``rank``, ``learning_rate``, ``adapt_iterations``, ``skip``, ``last``, ``stop_at_aim`` and ``em_steps``."""

    name = "scd-pet-dds"


@_with_steering(PETLiSch)
class SteeredPETLiSch(SteeredPETMethod, PETLiSch):
    """SCD with PET-LiSch (the seed's pairing, Webber et al. 2025): arguments as
    :class:`~diffrecon.methods.pet_lisch.PETLiSch` plus the :class:`Steering` settings ``rank``,
    ``learning_rate``, ``adapt_iterations``, ``skip``, ``last``, ``stop_at_aim`` and ``em_steps``."""

    name = "scd-pet-lisch"

    def steering_aim(self, call: Call, step: int) -> float:
        """The step's own likelihood target (the schedule's, rising to the discrepancy aim), as a deviance."""
        return 2 * (call.fidelity.saturated() - call.state.targets[step])
