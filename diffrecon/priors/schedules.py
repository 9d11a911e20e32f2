"""Noise schedules: variance preserving (discrete, MONAI DDPM/DDIM) and variance exploding (continuous, Score-SDE).

Both write a noisy image as ``x_t = alpha(t) x_0 + sigma(t) z`` with time in the network's units, the
``timesteps`` tensor that ``DiffusionModelUNet`` takes (0 .. num_train_timesteps - 1; integers for VP,
real numbers for VE), so one prior object serves either and MONAI's ``DiffusionInferer`` trains both.
"""
from __future__ import annotations

import math

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from diffrecon.checks import InputError, check_choice, check_positive


def _as_time(timesteps: torch.Tensor | float | int, like: torch.Tensor | None) -> torch.Tensor:
    device = like.device if like is not None else None
    return torch.as_tensor(timesteps, device=device).to(torch.float64)


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values (batch,) or a scalar, shaped to multiply ``like`` (batch, ...)."""
    values = values.to(device=like.device, dtype=like.dtype)
    return values.reshape(values.shape + (1,) * (like.ndim - values.ndim))


class VPSchedule:
    """Variance-preserving discrete schedule: ``alpha = sqrt(abar_t)``, ``sigma = sqrt(1 - abar_t)``.

    Args:
        num_train_timesteps: number of discrete noise levels.
        schedule: a MONAI ``NoiseSchedules`` name ("linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine").
        schedule_args: passed to the schedule (e.g. ``beta_start``, ``beta_end``).
    """

    kind = "vp"

    def __init__(self, num_train_timesteps: int = 1000, schedule: str = "linear_beta", **schedule_args) -> None:
        if int(num_train_timesteps) < 2:
            raise InputError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
        self.num_train_timesteps = int(num_train_timesteps)
        self.schedule = schedule
        self.schedule_args = schedule_args
        self.alphas_cumprod = self.scheduler("ddpm").alphas_cumprod.to(torch.float64)
        # log(sigma / alpha) per training timestep, increasing in t (for timesteps_for_ratio)
        self.log_ratios = 0.5 * torch.log((1 - self.alphas_cumprod) / self.alphas_cumprod)

    def scheduler(self, method: str = "ddim", clip: tuple[float, float] | None = None) -> DDPMScheduler | DDIMScheduler:
        """A MONAI scheduler ("ddpm" or "ddim") with this schedule.

        Args:
            method: "ddpm" (only right when stepping through every training timestep: MONAI's DDPM step uses
                the single-step beta) or "ddim" (any subset of timesteps; ``eta=1`` gives ancestral sampling).
            clip: (low, high) range the denoised estimate is clamped to at each step, or None (no clamping;
                the default, since images are not in MONAI's default [-1, 1]).
        """
        check_choice("method", method, ("ddpm", "ddim"))
        cls = DDPMScheduler if method == "ddpm" else DDIMScheduler
        low, high = clip if clip is not None else (-1.0, 1.0)
        return cls(num_train_timesteps=self.num_train_timesteps, schedule=self.schedule, clip_sample=clip is not None,
                   clip_sample_min=low, clip_sample_max=high, **self.schedule_args)

    def alpha_sigma(self, timesteps: torch.Tensor | float | int) -> tuple[torch.Tensor, torch.Tensor]:
        """Signal scale and noise standard deviation at ``timesteps`` (float64, same shape)."""
        t = _as_time(timesteps, timesteps if isinstance(timesteps, torch.Tensor) else None)
        if ((t < 0) | (t > self.num_train_timesteps - 1)).any():
            raise InputError(f"timesteps must lie in [0, {self.num_train_timesteps - 1}], got {t.tolist()}")
        abar = self.alphas_cumprod.to(t.device)[t.round().long()]
        return abar.sqrt(), (1 - abar).sqrt()

    def timesteps_for_ratio(self, ratio: torch.Tensor | float) -> torch.Tensor:
        """Real-valued network time at which ``sigma / alpha`` equals ``ratio`` (linear in log ``sigma / alpha``
        between training timesteps; clamped to [0, num_train_timesteps - 1])."""
        ratio = torch.as_tensor(ratio, dtype=torch.float64)
        if not (torch.isfinite(ratio) & (ratio > 0)).all():
            raise InputError(f"ratio must be positive and finite, got {ratio.tolist()}")
        log_ratios = self.log_ratios
        query = torch.log(ratio.cpu()).clamp(float(log_ratios[0]), float(log_ratios[-1])).reshape(-1)
        upper = torch.searchsorted(log_ratios, query).clamp(1, self.num_train_timesteps - 1)
        low, high = log_ratios[upper - 1], log_ratios[upper]
        times = (upper - 1) + (query - low) / (high - low)
        return times.reshape(ratio.shape).to(ratio.device)

    @property
    def max_ratio(self) -> float:
        """Largest ``sigma / alpha`` of the schedule (at the last training timestep)."""
        return math.exp(float(self.log_ratios[-1]))

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """``alpha x_0 + sigma z`` (the signature MONAI's ``DiffusionInferer`` calls)."""
        alpha, sigma = self.alpha_sigma(timesteps)
        return _broadcast(alpha, original_samples) * original_samples + _broadcast(sigma, noise) * noise


class VESchedule:
    """Variance-exploding continuous schedule (Song et al. 2021): ``alpha = 1``,
    ``sigma(s) = sigma_min (sigma_max / sigma_min)^s`` with ``s = timesteps / (num_train_timesteps - 1)``.

    Args:
        sigma_min: noise level at ``s = 0``.
        sigma_max: noise level at ``s = 1``; about the largest distance between two training images.
        num_train_timesteps: scale of the network's time input (the continuous ``s`` times this minus one).
    """

    kind = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, num_train_timesteps: int = 1000) -> None:
        check_positive("sigma_min", sigma_min)
        check_positive("sigma_max", sigma_max)
        if sigma_max <= sigma_min:
            raise InputError(f"sigma_max ({sigma_max}) must exceed sigma_min ({sigma_min})")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.num_train_timesteps = int(num_train_timesteps)

    def alpha_sigma(self, timesteps: torch.Tensor | float | int) -> tuple[torch.Tensor, torch.Tensor]:
        """Signal scale (ones) and noise standard deviation at ``timesteps`` (float64, same shape)."""
        t = _as_time(timesteps, timesteps if isinstance(timesteps, torch.Tensor) else None)
        if ((t < 0) | (t > self.num_train_timesteps - 1)).any():
            raise InputError(f"timesteps must lie in [0, {self.num_train_timesteps - 1}], got {t.tolist()}")
        s = t / (self.num_train_timesteps - 1)
        return torch.ones_like(s), self.sigma_min * (self.sigma_max / self.sigma_min) ** s

    def timesteps_for(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """Network time at noise level ``sigma`` (inverse of :meth:`alpha_sigma`)."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        s = torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)
        return s * (self.num_train_timesteps - 1)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """``x_0 + sigma z`` (the signature MONAI's ``DiffusionInferer`` calls)."""
        return original_samples + _broadcast(self.alpha_sigma(timesteps)[1], noise) * noise
