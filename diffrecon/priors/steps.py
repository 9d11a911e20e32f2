"""Single reverse-diffusion steps, public so that data-consistent samplers (the reconstruction methods) and the
unconditional sampler share them.

VP (DDIM, Song et al. 2021): :func:`ddim_step` moves from time t to an earlier time given the denoised estimate
x̂₀ and the noise prediction ε̂, which a method may have changed (data consistency on x̂₀) before stepping;
MONAI's ``DDIMScheduler.step`` recomputes x̂₀ from the network output itself, so it cannot serve them.
VE (Score-SDE, Song et al. 2021): :func:`reverse_diffusion_predictor` and :func:`langevin_corrector`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from diffrecon.checks import InputError
from diffrecon.priors.schedules import VESchedule, VPSchedule


def random_normal(shape: Sequence[int], generator: torch.Generator | None, device: str | torch.device,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device`` drawn with ``generator``, which may live on another device
    (a CPU generator with CUDA data draws on the CPU and moves the noise, so a seed gives the same noise anywhere)."""
    if generator is None or generator.device.type == torch.device(device).type:
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    return torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=dtype).to(device)


def ddim_timesteps(schedule: VPSchedule, steps: int, start: int | None = None, end: int = 0) -> list[tuple[int, int]]:
    """``steps`` (t, t_prev) pairs evenly spaced from ``start`` (default the last training timestep) down to
    ``end``; the final t_prev is -1 (the clean image). A later ``end`` stops at a noisier level, where the last
    step's denoised estimate is the result; an earlier ``start`` begins a warm start (SDEdit/CCDF)."""
    last = schedule.num_train_timesteps - 1
    start = last if start is None else start
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    if not 0 <= end <= start <= last:
        raise InputError(f"timesteps must satisfy 0 <= end ({end}) <= start ({start}) <= {last}")
    if steps > start - end + 1:
        raise InputError(f"steps ({steps}) must not exceed the {start - end + 1} timesteps from {start} to {end}")
    times = torch.linspace(start, end, steps, dtype=torch.float64).round().long().tolist()
    return list(zip(times, times[1:] + [-1]))


def ddim_step(x0_hat: torch.Tensor, noise: torch.Tensor, schedule: VPSchedule, t: int, t_prev: int,
              eta: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The DDIM update x_{t_prev} = α_prev x̂₀ + sqrt(σ_prev² − s²) ε̂ + s z (Song et al. 2021, eq. 12).

    Args:
        x0_hat: denoised estimate at time t (possibly refined by data consistency).
        noise: predicted noise ε̂ at time t (same shape).
        schedule: the VP schedule.
        t, t_prev: current and next network time (t_prev = -1: the clean image, α = 1).
        eta: 0 for deterministic DDIM, 1 for ancestral (DDPM-like) sampling; the stochastic part has
            s = η σ_prev / σ_t · sqrt(1 − α_t² / α_prev²).
        generator: random generator for the stochastic part.
    """
    if not 0 <= eta <= 1:
        raise InputError(f"eta must be in [0, 1], got {eta!r}")
    abar = schedule.alphas_cumprod
    abar_t = float(abar[t])
    abar_prev = 1.0 if t_prev < 0 else float(abar[t_prev])
    variance = eta ** 2 * (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
    x = abar_prev ** 0.5 * x0_hat + max(1 - abar_prev - variance, 0.0) ** 0.5 * noise
    if variance > 0:
        x = x + variance ** 0.5 * random_normal(x.shape, generator, x.device, x.dtype)
    return x


def ve_timesteps(schedule: VESchedule, steps: int, start: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Network times and noise levels of ``steps`` predictor steps of a VE sampler: ``steps + 1`` times evenly
    spaced from ``start`` (default the last training timestep; earlier for a warm start) down to 0, and their
    sigmas (float64). Step i moves from sigmas[i] to sigmas[i + 1]."""
    last = schedule.num_train_timesteps - 1
    start = last if start is None else float(start)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be an integer >= 1, got {steps!r}")
    if not 0 < start <= last:
        raise InputError(f"start must lie in (0, {last}], got {start}")
    times = torch.linspace(start, 0, steps + 1, dtype=torch.float64)
    return times, schedule.alpha_sigma(times)[1]


def reverse_diffusion_predictor(x: torch.Tensor, score: torch.Tensor, sigma: float, sigma_next: float,
                                generator: torch.Generator | None = None, add_noise: bool = True) -> torch.Tensor:
    """VE reverse-diffusion predictor from noise level ``sigma`` to ``sigma_next``: x + (σ² − σ'²) s(x) plus
    noise of that variance (``add_noise=False`` for the last step, which returns the mean)."""
    variance = float(sigma) ** 2 - float(sigma_next) ** 2
    if variance < 0:
        raise InputError(f"sigma_next ({sigma_next}) must not exceed sigma ({sigma})")
    mean = x + variance * score
    if not add_noise:
        return mean
    return mean + variance ** 0.5 * random_normal(x.shape, generator, x.device, x.dtype)


def langevin_corrector(x: torch.Tensor, score: torch.Tensor, snr: float, spatial_dims: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """One Langevin MCMC step at the current noise level, its step size set per image by the target
    signal-to-noise ratio ``snr`` (Song et al. use 0.16): ε = 2 (snr ‖z‖ / ‖s‖)²."""
    dims = tuple(range(-spatial_dims, 0))
    z = random_normal(x.shape, generator, x.device, x.dtype)
    z_norm, score_norm = (v.pow(2).sum(dims, keepdim=True).sqrt() for v in (z, score))  # any number of dims
    step = 2 * (snr * z_norm / score_norm) ** 2
    return x + step * score + (2 * step).sqrt() * z
