"""PET-DEFT (Webber, Hammers, King and Reader, MICCAI 2025; DEFT: Denker et al., "efficient fine-tuning of diffusion
models by learning the generalised h-transform"): supervised diffusion reconstruction. A small conditional network,
the h-network, corrects the frozen unconditional prior's noise prediction from the measurement; sampling is plain
DDIM with the corrected noise, no data-consistency step and no backpropagation.

At every reverse step the h-network sees the noisy image x_t, the frozen prior's Tweedie estimate x̂₀ (clamped
non-negative) and the likelihood direction at x̂₀, the MLEM update x̂₀ Aᵀ(y / ȳ(x̂₀)) / Aᵀ1 − x̂₀ (in prior units:
the EM step is the Poisson likelihood's natural gradient step, so it needs no step size), and outputs an ε
correction added to the prior's ε. The corrected estimate is clamped non-negative by the PET space. The h-network is
a :class:`~diffrecon.priors.ScoreModel` with two condition channels of the prior's own structure (one slice network
per orientation of a tri-planar prior, :mod:`diffrecon.priors.correction`), so it slices volumes exactly as the prior
does.

Its output convolution starts at zero (MONAI's ``DiffusionModelUNet`` initialises it so), so an untrained h-network
leaves the prior unchanged: DEFT starts as the prior. :func:`deft_loss` is the training objective (ε-matching on
pairs of a reference image and its measurement); :mod:`diffrecon.methods.deft_training` trains the h-networks with
MONAI's trainer (bundles/pet_deft). The correction runs in the sampler's ``correct_noise`` hook, whose time counts
as physics; the report gives it on its own as ``seconds_correction``, the h-networks' training record, and a warning
where the data's counts lie outside the range they were trained on.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from diffrecon.checks import InputError, check_choice
from diffrecon.methods.sampler import Call, VPDiffusionMethod
from diffrecon.methods.spaces import PETSpace
from diffrecon.priors.prior import ScoreModel

LIKELIHOOD_TERMS = ("em", "gradient")
"""The likelihood term of the h-network's condition (:func:`deft_condition`); the shipped networks use "em"."""
COUNT_MARGIN = 1.25
"""Data whose total counts lie more than this factor outside the trained range get a warning in the report."""


def deft_condition(x: torch.Tensor, t: int, noise: torch.Tensor, call: Call, space: PETSpace,
                   likelihood: str = "em") -> torch.Tensor:
    """The h-network's condition at x_t: (B, 2, ...) of the Tweedie estimate of ``noise`` (prior units) and the
    likelihood term at it (``LIKELIHOOD_TERMS``): "em", the MLEM update direction in prior units; "gradient", the
    Poisson log-likelihood gradient over the sensitivity, Aᵀ(y / ȳ − 1) / Aᵀ1 (the EM direction without its factor
    x̂₀)."""
    estimate = call.score.tweedie(x, t, noise).clamp_min(0)
    activity = space.from_network(estimate, call)
    if likelihood == "em":
        term = space.to_network(call.fidelity.em_step(activity), call) - estimate
    else:
        sensitivity = call.physics.sensitivity().clamp_min(torch.finfo(activity.dtype).tiny)
        term = call.fidelity.gradient(activity) / sensitivity
    return torch.stack((estimate, term), dim=1)


def deft_example(prior: ScoreModel, clean: torch.Tensor, call: Any, space: PETSpace, t: int | None = None,
                 generator: torch.Generator | None = None, likelihood: str = "em"
                 ) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
    """One ε-matching example of DEFT for reference images ``clean`` (prior units) measured as ``call`` holds
    them: the noisy image x_t at time ``t`` (random when None), ``t``, the h-network's condition at x_t (frozen
    prior, no gradient) and the target of the correction, ε − ε_prior."""
    schedule = prior.schedule
    if t is None:
        t = int(torch.randint(0, schedule.num_train_timesteps, (1,), generator=generator))
    noise = torch.randn(clean.shape, generator=generator).to(clean)
    alpha, sigma = (float(v) for v in schedule.alpha_sigma(t))
    noisy = alpha * clean + sigma * noise
    with torch.no_grad():
        predicted = prior.predict_noise(noisy, t)
        condition = deft_condition(noisy, t, predicted, call, space, likelihood)
    return noisy, t, condition, noise - predicted


def deft_loss(prior: ScoreModel, correction: ScoreModel, clean: torch.Tensor, call: Call, space: PETSpace,
              generator: torch.Generator | None = None, likelihood: str = "em") -> torch.Tensor:
    """The ε-matching loss of DEFT on a batch of reference images ``clean`` (prior units, the shape the prior
    scores) measured as ``call`` holds them: a random time and noise (:func:`deft_example`), the h-network's
    correction with gradient; mean of ‖ε − (ε_prior + ε_h)‖²."""
    noisy, t, condition, target = deft_example(prior, clean, call, space, generator=generator, likelihood=likelihood)
    return (target - correction.predict_noise(noisy, t, condition)).pow(2).reshape(clean.shape[0], -1).mean()


class PETDEFT(VPDiffusionMethod):
    """PET-DEFT on the sampler in the PET space (module notes).

    Args:
        prior: the frozen VP prior (a :class:`~diffrecon.priors.TriPlanarScore` for volumes).
        correction: the h-networks as a score model of the prior's structure
            (:func:`~diffrecon.priors.correction.load_correction` from a bundle, with their training record;
            :func:`~diffrecon.priors.correction.correction_model`), or None: no correction, the prior's own DDIM
            estimate (the unconditional reference DEFT is compared with).
        likelihood: the likelihood term of the condition (:data:`LIKELIHOOD_TERMS`); None: the one the h-networks
            were trained with (their training record; "em" without one).
        steps, warm_start, eta, final_time, callback, progress: as
            :class:`~diffrecon.methods.sampler.VPDiffusionMethod`.
        osem_iterations, osem_subsets: the OSEM image that sets the scale and the warm start
            (:class:`~diffrecon.methods.spaces.PETSpace`).
    """

    name = "pet-deft"
    modality = "PT"

    def __init__(self, prior: ScoreModel, correction: ScoreModel | None, likelihood: str | None = None,
                 steps: int = 5, warm_start: float | None = 0.3, eta: float = 0.1, final_time: float = 0.0,
                 osem_iterations: int | str = "auto", osem_subsets: int = 8,
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, PETSpace(osem_iterations, osem_subsets), steps, warm_start, eta, final_time, callback,
                         progress)
        if correction is not None and (not isinstance(correction, ScoreModel)
                                       or type(correction) is not type(prior)):
            raise InputError(f"correction must be a score model of the prior's structure ({type(prior).__name__}; "
                             f"diffrecon.priors.correction.load_correction) or None, got {type(correction).__name__}")
        if likelihood is not None:
            check_choice("likelihood", likelihood, LIKELIHOOD_TERMS)
        self.training: dict[str, Any] = dict(getattr(correction, "training_record", None) or {})
        trained = self.training.get("likelihood", "em")
        if likelihood not in (None, trained):
            raise InputError(f"likelihood {likelihood!r}: the h-networks of {self.training.get('bundle')!r} were "
                             f"trained with {trained!r}; leave it unset or train networks for it")
        self.likelihood = trained
        self.correction = correction

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "corrected": self.correction is not None, "likelihood": self.likelihood}

    def summary(self, call: Call) -> dict[str, Any]:
        """The training record of the h-networks and a warning where the data's counts lie outside the range
        they were trained on (another dose or scanner: the correction may not hold)."""
        if not self.training:
            return {}
        low, high = self.training["total_counts"]
        counts = float(call.data.sum())
        summary: dict[str, Any] = {"deft_training": self.training, "total_counts": counts}
        if not low / COUNT_MARGIN <= counts <= high * COUNT_MARGIN:
            warning = (f"the data hold {counts:.3g} counts; the h-networks of {self.training['bundle']} were trained "
                       f"on {low:.3g}-{high:.3g} (another dose or scanner): the correction may not hold; fine-tune "
                       "on pairs at this count level (bundles/pet_deft/configs/finetune.json)")
            warnings.warn(warning, stacklevel=2)
            summary["warnings"] = [warning]
        return summary

    def correct_noise(self, x: torch.Tensor, t: int, noise: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        if self.correction is None:
            return noise
        with call.clock("correction"):  # inside the sampler's physics time; reported on its own too
            condition = deft_condition(x, t, noise, call, self.space, self.likelihood)
            return noise + self.correction.predict_noise(x, t, condition)
