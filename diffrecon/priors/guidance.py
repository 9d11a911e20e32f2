"""Classifier-free guidance of a conditional prior (Ho and Salimans 2021; Singh et al., MELBA 2024, for MR-guided
PET): a network trained with its condition image (the subject's T1) zeroed for a fraction of the samples scores both
``eps(x, c)`` and ``eps(x, 0)``; sampling uses

    eps = (1 + w) eps(x, c) - w eps(x, 0),

the conditional prediction pushed away from the unconditional one by the guidance strength ``w >= 0``. Written once
here, as a score model wrapping any conditional score (slice, patch-wise, tri-planar: the condition is sliced with
the image there), so every method gets guidance by taking a :class:`GuidedScore` as its prior.

- ``w > 0``: both predictions in one network call (the image twice, with the condition and with zeros, stacked
  into the batch).
- ``w = 0``: the conditional prediction alone, one call (the formula at ``w = 0``, as the reference code).
- no condition: the unconditional prediction alone (the condition zeroed, as in the dropped-out training samples),
  one call; ``w`` must then be 0.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from diffrecon.checks import InputError, check_finite
from diffrecon.priors.prior import ScoreModel
from diffrecon.transforms.intensity import INTENSITY_SCALES

DEFAULT_CONDITION_INTENSITY = "magnitude_peak"
"""How a condition image is scaled where the prior declares nothing: by its 99.9th magnitude percentile."""


def check_guidance(guidance: float, name: str = "guidance") -> float:
    """``guidance`` as a float, refused unless it is a finite number >= 0."""
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number >= 0 (the classifier-free guidance strength w), got {guidance!r}")
    value = float(guidance)
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0 (the classifier-free guidance strength w), got "
                         f"{guidance!r}")
    return value


class GuidedScore(ScoreModel):
    """A conditional score with its condition image fixed and classifier-free guidance of strength ``guidance``.

    Args:
        prior: a conditional score model (``condition_channels`` >= 1): a slice prior, a patch-wise prior or a
            tri-planar score of conditional slice priors.
        condition: the condition in the prior's units, ``(C, *spatial)`` or, for one channel, ``(*spatial)``, on the
            image's spatial grid; broadcast over the samples. None: the unconditional prediction (condition zeroed).
        guidance: ``w >= 0``; must be 0 without a condition.
        name: how refusals name the condition (e.g. "mr").
    """

    def __init__(self, prior: ScoreModel, condition: torch.Tensor | None, guidance: float = 0.0,
                 name: str = "condition") -> None:
        super().__init__()
        if not isinstance(prior, ScoreModel):
            raise InputError(f"prior must be a diffrecon.priors.ScoreModel, got {type(prior).__name__}")
        channels = prior.condition_channels
        if channels < 1:
            raise InputError(f"{name} was given, but the prior is unconditional (its network takes no condition "
                             "channel); use a prior trained with one (e.g. pet_fdg_mr_prior) or leave it out")
        self.guidance = check_guidance(guidance)
        self.name = name
        if condition is None:
            if self.guidance > 0:
                raise InputError(f"guidance {self.guidance:g} > 0 needs {name}: the prior is conditioned on it; give "
                                 f"{name}, or guidance 0 for the unconditional prior alone")
        else:
            condition = torch.as_tensor(condition, dtype=torch.float32)
            check_finite(name, condition)
            if channels == 1 and condition.ndim == prior.spatial_dims:
                condition = condition.unsqueeze(0)
            if condition.ndim != prior.spatial_dims + 1 or condition.shape[0] != channels:
                raise InputError(f"{name} has shape {tuple(condition.shape)}; expected ({channels}, *spatial) with "
                                 f"{prior.spatial_dims} spatial dims" + (", or the spatial shape alone"
                                                                          if channels == 1 else ""))
        self.prior = prior
        self.register_buffer("condition", condition, persistent=False)
        self.schedule, self.spatial_dims = prior.schedule, prior.spatial_dims
        self.voxel_size_mm, self.intensity = prior.voxel_size_mm, prior.intensity
        self.condition_intensity = prior.condition_intensity

    @property
    def evaluations_per_call(self) -> int:
        """Network evaluations per image and step: 2 with guidance (batched into one call), else 1."""
        return 2 if self.guidance > 0 else 1

    def check_image(self, x: torch.Tensor) -> None:
        """As the prior's, and the condition must have ``x``'s spatial shape."""
        self.prior.check_image(x)
        if self.condition is not None:
            spatial = tuple(x.shape[-self.spatial_dims:])
            if tuple(self.condition.shape[1:]) != spatial:
                raise InputError(f"{self.name} has shape {tuple(self.condition.shape[1:])}; expected the image grid's "
                                 f"{spatial} (resample it onto the reconstruction grid first)")

    def predict_noise(self, x: torch.Tensor, timesteps: torch.Tensor | float | int,
                      condition: torch.Tensor | None = None) -> torch.Tensor:
        """The guided noise prediction of ``x`` (..., *spatial); the condition is the one given at construction."""
        if condition is not None:
            raise InputError("GuidedScore holds its condition; call predict_noise without one")
        self.check_image(x)
        lead, spatial = x.shape[:-self.spatial_dims], x.shape[-self.spatial_dims:]
        shape = (*lead, self.prior.condition_channels, *spatial)  # this wrapper fills them: it takes none
        if self.condition is None:
            return self.prior.predict_noise(x, timesteps, x.new_zeros(shape))
        given = self.condition.to(device=x.device, dtype=x.dtype).expand(shape)
        if self.guidance == 0:
            return self.prior.predict_noise(x, timesteps, given)
        t = torch.as_tensor(timesteps)
        t = torch.cat((t.reshape(-1), t.reshape(-1))) if t.numel() > 1 else t
        both = self.prior.predict_noise(torch.stack((x, x)), t, torch.stack((given, torch.zeros_like(given))))
        conditional, unconditional = both.unbind(0)
        return (1 + self.guidance) * conditional - self.guidance * unconditional


def condition_in_prior_units(prior: ScoreModel, image: np.ndarray | torch.Tensor, name: str = "mr") -> torch.Tensor:
    """``image`` divided by the scale of the prior's condition convention (``prior.condition_intensity``, default
    :data:`DEFAULT_CONDITION_INTENSITY`): what its network saw in training.

    Raises:
        InputError: a non-finite or all-zero image (named).
    """
    image = torch.as_tensor(np.asarray(image) if not isinstance(image, torch.Tensor) else image, dtype=torch.float32)
    check_finite(name, image)
    scale = INTENSITY_SCALES[prior.condition_intensity or DEFAULT_CONDITION_INTENSITY](image)
    if not scale > 0:
        raise InputError(f"{name} is (almost) all zero; expected an MR image with signal")
    return image / scale


def guided_score(prior: ScoreModel, mr: np.ndarray | torch.Tensor | None, guidance: float,
                 name: str = "mr") -> ScoreModel:
    """The score a method samples with: ``prior`` itself when it is unconditional (then no ``mr`` and ``guidance``
    0), else its :class:`GuidedScore` with ``mr`` in the prior's units (:func:`condition_in_prior_units`).

    Raises:
        InputError: guidance < 0 or not finite; an ``mr`` or guidance > 0 for an unconditional prior; a conditional
            prior with guidance > 0 and no ``mr``; a bad ``mr`` (named ``name``).
    """
    guidance = check_guidance(guidance)
    if prior.condition_channels < 1:
        if mr is not None:
            raise InputError(f"{name} was given, but the prior is unconditional (its network takes no MR channel); "
                             "use an MR-conditioned prior (e.g. pet_fdg_mr_prior) or leave the MR out")
        if guidance > 0:
            raise InputError(f"guidance {guidance:g} > 0 needs an MR-conditioned prior (e.g. pet_fdg_mr_prior); this "
                             "prior is unconditional (guidance 0)")
        return prior
    condition = None if mr is None else condition_in_prior_units(prior, mr, name)
    return GuidedScore(prior, condition, guidance, name)
