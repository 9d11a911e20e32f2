"""Unconditional sampling from a score model: DDIM/DDPM steps (VP) and predictor-corrector (VE), a smoke test
that a prior has learnt its images (reconstruction methods own their own data-consistent loops)."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from diffrecon.checks import InputError, check_choice
from diffrecon.priors.prior import ScoreModel
from diffrecon.priors.schedules import VESchedule
from diffrecon.priors.steps import (ddim_step, ddim_timesteps, langevin_corrector, reverse_diffusion_predictor,
                                     ve_timesteps)

METHODS = ("ddim", "ddpm", "pc")


@torch.no_grad()
def sample(model: ScoreModel, shape: Sequence[int], steps: int = 50, method: str = "ddim",
           generator: torch.Generator | None = None, device: str | torch.device = "cpu",
           dtype: torch.dtype = torch.float32, corrector_snr: float = 0.16,
           clip: tuple[float, float] | None = None) -> torch.Tensor:
    """Draw samples of ``shape`` (..., *spatial) from pure noise.

    Args:
        model: a :class:`ScoreModel` (a 2D prior, a patch-wise prior or a tri-planar score for volumes).
        shape: output shape; leading dims are independent samples.
        steps: reverse steps (DDIM/DDPM: a subset of the training timesteps; pc: predictor steps).
        method: "ddim" (eta 0) or "ddpm" (ancestral, eta 1) for VP schedules, "pc" (reverse diffusion + Langevin corrector) for VE.
        generator: random generator for reproducible samples.
        device: where to sample.
        dtype: floating dtype of the samples.
        corrector_snr: signal-to-noise ratio of the Langevin corrector (pc only; Song et al. use 0.16).
        clip: (low, high) range of the data; the denoised estimate is clamped to it at each step (for pc, the
            score is taken from the clamped estimate); stabilises sampling with small networks. None: off.
    """
    check_choice("method", method, METHODS)
    if int(steps) < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    is_ve = isinstance(model.schedule, VESchedule)
    if is_ve != (method == "pc"):
        raise InputError(f"method {method!r} does not fit the {model.schedule.kind.upper()} schedule; "
                         f"use {'pc' if is_ve else 'ddim or ddpm'}")
    x = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    if is_ve:
        return _sample_pc(model, x, int(steps), generator, corrector_snr, clip)
    # DDPM steps over a subset of timesteps are DDIM steps with eta = 1 (ancestral sampling with the variance of
    # the skipped interval).
    eta = 1.0 if method == "ddpm" else 0.0
    for t, t_prev in ddim_timesteps(model.schedule, int(steps)):
        noise = model.predict_noise(x, t)
        x0_hat = model.tweedie(x, t, noise)
        if clip is not None:
            x0_hat = x0_hat.clamp(*clip)
        x = ddim_step(x0_hat, noise, model.schedule, t, t_prev, eta, generator)
    return x


def _sample_pc(model: ScoreModel, x: torch.Tensor, steps: int, generator: torch.Generator | None,
               snr: float, clip: tuple[float, float] | None) -> torch.Tensor:
    """Score-SDE predictor-corrector: one reverse-diffusion predictor and one Langevin corrector per step.
    With ``clip``, the score is taken from the clamped Tweedie estimate, ``(clamp(x0_hat) - x) / sigma^2``."""
    schedule = model.schedule
    x = x * schedule.sigma_max
    times, sigmas = ve_timesteps(schedule, steps)

    def score_at(x: torch.Tensor, i: int) -> torch.Tensor:
        if clip is None:
            return model.score(x, times[i])
        return (model.tweedie(x, times[i]).clamp(*clip) - x) / float(sigmas[i]) ** 2

    for i in range(steps):
        x = langevin_corrector(x, score_at(x, i), snr, model.spatial_dims, generator)
        x = reverse_diffusion_predictor(x, score_at(x, i), float(sigmas[i]), float(sigmas[i + 1]), generator,
                                        add_noise=i < steps - 1)
    return x
