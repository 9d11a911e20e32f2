"""PET-DEFT (Webber, Hammers, King and Reader, MICCAI 2025; DEFT: Denker et al., "efficient fine-tuning of diffusion
models by learning the generalised h-transform"): supervised diffusion reconstruction. A small conditional network,
the h-network, corrects the frozen unconditional prior's noise prediction from the measurement; sampling is plain
DDIM with the corrected noise, no data-consistency step and no backpropagation.

At every reverse step the h-network sees the noisy image x_t, the frozen prior's Tweedie estimate x̂₀ (clamped
non-negative) and the likelihood direction at x̂₀, the MLEM update x̂₀ Aᵀ(y / ȳ(x̂₀)) / Aᵀ1 − x̂₀ (in prior units:
the EM step is the Poisson likelihood's natural gradient step, so it needs no step size), and outputs an ε
correction added to the prior's ε. The corrected estimate is clamped non-negative by the PET space. The h-network is
a :class:`~diffrecon.priors.ScoreModel` with two condition channels of the prior's own structure (one slice network
per orientation of a tri-planar prior, :func:`correction_model`), so it slices volumes exactly as the prior does.

Its output convolution starts at zero (MONAI's ``DiffusionModelUNet`` initialises it so), so an untrained h-network
leaves the prior unchanged: DEFT starts as the prior. :func:`deft_loss` is the training objective (ε-matching on
pairs of a reference image and its measurement); :mod:`diffrecon.methods.deft_training` trains the h-networks with
MONAI's trainer (bundles/pet_deft). The correction runs in the sampler's ``correct_noise`` hook, whose time counts
as physics; the report gives it on its own as ``seconds_correction``, the h-networks' training record, and a warning
where the data's counts lie outside the range they were trained on.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from diffrecon.bundle import bundle_path
from diffrecon.checks import InputError, check_choice, check_file
from diffrecon.methods.sampler import Call, VPDiffusionMethod
from diffrecon.methods.spaces import PETSpace
from diffrecon.priors import DiffusionPrior, TriPlanarScore
from diffrecon.priors.prior import ScoreModel
from diffrecon.priors.weights import load_weights

LIKELIHOOD_TERMS = ("em", "gradient")
"""The likelihood term of the h-network's condition (:func:`deft_condition`); the shipped networks use "em"."""
CONDITION_CHANNELS = 2
"""The h-network's condition: the prior's Tweedie estimate and the likelihood (MLEM) direction at it."""
TRAINING_RECORD = "deft_training.json"
"""Written beside the exported h-networks: the count range of the pairs they were trained on, the source of the
report's untrained-dose warning."""
COUNT_MARGIN = 1.25
"""Data whose total counts lie more than this factor outside the trained range get a warning in the report."""
H_CHANNELS = (8, 8, 16)
"""Channels per level of the h-network: 49k parameters, 8% of a shipped PET prior network's 636k (the issue: at most
10%)."""


def h_network(channels: Sequence[int] = H_CHANNELS) -> DiffusionModelUNet:
    """A small 2D conditional UNet (one residual block per level, no attention) taking x_t and the condition."""
    return DiffusionModelUNet(spatial_dims=2, in_channels=1 + CONDITION_CHANNELS, out_channels=1,
                              channels=tuple(channels), attention_levels=(False,) * len(channels), num_res_blocks=1,
                              norm_num_groups=8, num_head_channels=channels[-1])


def correction_model(prior: ScoreModel, networks: Mapping[str, nn.Module] | nn.Module) -> ScoreModel:
    """The h-network as a score model of ``prior``'s structure: per orientation of a tri-planar prior (``networks``
    by orientation, the same orientations), or one slice network for a slice prior.

    Raises:
        InputError: orientations that differ from the prior's, or networks without the condition channels.
    """
    if isinstance(prior, TriPlanarScore):
        if not isinstance(networks, Mapping) or set(networks) != set(prior.priors):
            given = sorted(networks) if isinstance(networks, Mapping) else type(networks).__name__
            raise InputError(f"h-networks {given}; expected one per orientation of the prior: {sorted(prior.priors)}")
        models = {name: _conditional(networks[name], prior.schedule) for name in prior.priors}
        return TriPlanarScore(models, prior.chunk_size)
    if isinstance(networks, Mapping):
        raise InputError(f"h-networks by orientation {sorted(networks)} for a slice prior; expected one network")
    return _conditional(networks, prior.schedule)


def load_correction(bundle: str | Path, prior: ScoreModel, device: str | torch.device = "cpu"
                    ) -> tuple[ScoreModel, dict[str, Any]]:
    """The h-networks of ``bundle`` (its ``models/model_<orientation>.pt``, checksums verified; or a folder of
    them, as a training run exports them) for ``prior``'s orientations, and their training record
    (:data:`TRAINING_RECORD`: the count range trained on).

    Raises:
        InputError: no such bundle, a missing orientation or record, weights that do not fit the h-network.
    """
    models = Path(bundle) if (Path(bundle) / TRAINING_RECORD).is_file() else bundle_path(bundle) / "models"
    orientations = list(prior.priors) if isinstance(prior, TriPlanarScore) else ["axial"]
    networks = {name: load_weights(h_network(), models / f"model_{name}.pt").to(device) for name in orientations}
    record_file = check_file("h-network training record", models / TRAINING_RECORD)
    try:
        record = json.loads(record_file.read_text())
        low, high = (float(v) for v in record["total_counts"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise InputError(f"{str(record_file)!r} is not a DEFT training record (total_counts [low, high]): "
                         f"{error}") from error
    correction = correction_model(prior, networks if isinstance(prior, TriPlanarScore) else networks["axial"])
    return correction, {**record, "total_counts": [low, high], "bundle": str(bundle)}


def _conditional(network: nn.Module, schedule: Any) -> DiffusionPrior:
    model = DiffusionPrior(network, schedule)
    if model.condition_channels != CONDITION_CHANNELS:
        raise InputError(f"h-network takes {model.condition_channels} condition channels; expected "
                         f"{CONDITION_CHANNELS} (the Tweedie estimate and the likelihood direction)")
    return model


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
        correction: the h-networks: a bundle name or folder holding them (:func:`load_correction`; default the
            shipped ``pet_deft``), a score model of the prior's structure (:func:`correction_model`), or None: no
            correction, the prior's own DDIM estimate (the unconditional reference DEFT is compared with).
        likelihood: the likelihood term of the condition (:data:`LIKELIHOOD_TERMS`); None: the one the bundle's
            h-networks were trained with (its training record), "em" for networks given as a model.
        steps, warm_start, eta, final_time, callback, progress: as
            :class:`~diffrecon.methods.sampler.VPDiffusionMethod`.
        osem_iterations, osem_subsets: the OSEM image that sets the scale and the warm start
            (:class:`~diffrecon.methods.spaces.PETSpace`).
    """

    name = "pet-deft"
    modality = "PT"

    def __init__(self, prior: ScoreModel, correction: ScoreModel | str | Path | None = "pet_deft",
                 likelihood: str | None = None, steps: int = 5, warm_start: float | None = 0.3, eta: float = 0.1, final_time: float = 0.0,
                 osem_iterations: int | str = "auto", osem_subsets: int = 8,
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, PETSpace(osem_iterations, osem_subsets), steps, warm_start, eta, final_time, callback,
                         progress)
        if likelihood is not None:
            check_choice("likelihood", likelihood, LIKELIHOOD_TERMS)
        self.training: dict[str, Any] = {}
        if isinstance(correction, (str, Path)):
            device = next((p.device for p in prior.parameters()), torch.device("cpu"))
            correction, self.training = load_correction(correction, prior, device)
            trained = self.training.get("likelihood", "em")
            if likelihood not in (None, trained):
                raise InputError(f"likelihood {likelihood!r}: the h-networks of {self.training['bundle']!r} were trained "
                                 f"with {trained!r}; leave it unset or train networks for it")
            likelihood = trained
        self.likelihood = likelihood or "em"
        if correction is not None and (not isinstance(correction, ScoreModel)
                                       or type(correction) is not type(prior)):
            raise InputError(f"correction must be a score model of the prior's structure ({type(prior).__name__}; "
                             f"diffrecon.methods.pet_deft.correction_model), a bundle of h-networks or None, got "
                             f"{type(correction).__name__}")
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
