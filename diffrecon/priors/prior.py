"""A diffusion prior: a noise-predicting ``DiffusionModelUNet`` plus its schedule, giving the predicted noise,
the score and the Tweedie denoised estimate of a noisy image."""
from __future__ import annotations

import torch
from torch import nn

from diffrecon.checks import InputError
from diffrecon.priors.schedules import VESchedule, VPSchedule
from diffrecon.transforms.intensity import INTENSITY_SCALES

MIN_SPATIAL_SIZE = 8  # the smallest spatial size a prior takes (smaller images would be mostly padding)


class ScoreModel(nn.Module):
    """Base of every score: subclasses give ``predict_noise``; score and Tweedie estimate follow from the schedule.

    Subclasses set ``schedule`` and ``spatial_dims`` (the trailing image dimensions of one sample).
    ``voxel_size_mm`` is the voxel size the network was trained at, where known (set by the bundle), so a
    reconstruction can refuse a grid the prior has never seen. ``intensity`` names the prior's intensity convention
    (a key of :data:`diffrecon.transforms.intensity.INTENSITY_SCALES`: how its training images were normalised),
    where the bundle declares it; ``condition_intensity`` the same for the condition image of a conditional network
    (e.g. the T1 of an MR-guided PET prior). ``condition_channels``: the network's extra input channels.
    """

    schedule: VPSchedule | VESchedule
    spatial_dims: int
    voxel_size_mm: tuple[float, ...] | None = None
    intensity: str | None = None
    condition_intensity: str | None = None

    @property
    def condition_channels(self) -> int:
        """Input channels beyond the noisy image that the network needs (0: unconditional)."""
        return 0

    def intensity_scale(self, image: torch.Tensor, default: str) -> float:
        """The scale that maps ``image`` to this prior's units (image / scale): by the prior's intensity
        convention, ``default`` where it declares none."""
        return INTENSITY_SCALES[self.intensity or default](image)

    def check_image(self, x: torch.Tensor) -> None:
        """Raise :class:`InputError` unless this score accepts images shaped like ``x`` (any tensor, e.g. on the
        meta device); the base accepts any image with ``spatial_dims`` trailing sizes."""
        if x.ndim < self.spatial_dims:
            raise InputError(f"x has shape {tuple(x.shape)}; expected at least {self.spatial_dims} spatial dims")

    def predict_noise(self, x: torch.Tensor, timesteps: torch.Tensor | float | int,
                      condition: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise ``eps(x_t, t[, c])``, same shape as ``x``; ``condition``: extra input channels of a
        conditional network, (..., C, *spatial) with the leading shape of ``x`` (:func:`check_condition`)."""
        raise NotImplementedError

    def score(self, x: torch.Tensor, timesteps: torch.Tensor | float | int, noise: torch.Tensor | None = None,
              condition: torch.Tensor | None = None) -> torch.Tensor:
        """Score ``grad log p_t(x) = -eps / sigma``; pass ``noise`` to reuse a prediction already made."""
        noise = self.predict_noise(x, timesteps, condition) if noise is None else noise
        return -noise / _per_image(self.schedule.alpha_sigma(timesteps)[1], x, self.spatial_dims)

    def tweedie(self, x: torch.Tensor, timesteps: torch.Tensor | float | int, noise: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """Tweedie denoised estimate ``x0_hat = (x - sigma eps) / alpha`` (posterior mean of the clean image)."""
        noise = self.predict_noise(x, timesteps, condition) if noise is None else noise
        alpha, sigma = (_per_image(v, x, self.spatial_dims) for v in self.schedule.alpha_sigma(timesteps))
        return (x - sigma * noise) / alpha

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | float | int) -> torch.Tensor:
        """Same as :meth:`predict_noise`."""
        return self.predict_noise(x, timesteps)


class DiffusionPrior(ScoreModel):
    """Score model ``eps(x_t, t)`` on images shaped ``(..., *spatial)`` with any leading batch dimensions.

    The network sees ``(batch, 1, *spatial)``; every leading dimension of the input is folded into its batch.
    Networks are fully convolutional apart from the attention in the middle block, so they take any spatial size
    that is a multiple of ``size_multiple`` (2 per down-sampling); other sizes of at least :attr:`min_size` voxels
    are padded up to the next multiple for the network and cropped back (:meth:`predict_noise`).

    Args:
        network: a single-channel noise-prediction network ``network(x, timesteps=t)``
            (``monai.networks.nets.DiffusionModelUNet``).
        schedule: the schedule the network was trained with.
        spatial_dims: 2 for slice priors, 3 for volume (patch) priors.
        size_multiple: the network takes spatial sizes that are multiples of this (``2 ** (levels - 1)``).
    """

    def __init__(self, network: nn.Module, schedule: VPSchedule | VESchedule, spatial_dims: int = 2,
                 size_multiple: int | None = None) -> None:
        super().__init__()
        self.network = network
        self.schedule = schedule
        self.spatial_dims = int(spatial_dims)
        levels = len(getattr(network, "block_out_channels", (0,)))
        self.size_multiple = int(size_multiple or 2 ** (levels - 1))

    @property
    def min_size(self) -> int:
        """The smallest spatial size this prior takes: :data:`MIN_SPATIAL_SIZE`, or ``size_multiple`` where that
        is smaller (a size the network takes as it is needs no padding)."""
        return min(MIN_SPATIAL_SIZE, self.size_multiple)

    def check_image(self, x: torch.Tensor) -> None:
        """Raise :class:`InputError` unless ``x`` has ``spatial_dims`` trailing sizes, each at least
        :attr:`min_size` (any size: :meth:`predict_noise` pads to the network's multiple)."""
        super().check_image(x)
        spatial = tuple(x.shape[-self.spatial_dims:])
        if min(spatial) < self.min_size:
            raise InputError(f"x has spatial shape {spatial}; this prior needs at least {self.min_size} voxels "
                             "along each spatial axis")

    @property
    def condition_channels(self) -> int:
        """Input channels beyond the noisy image (0 for an unconditional network)."""
        return int(getattr(self.network, "in_channels", 1)) - 1

    def predict_noise(self, x: torch.Tensor, timesteps: torch.Tensor | float | int,
                      condition: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise ``eps(x_t, t[, c])``, same shape as ``x``.

        Spatial sizes that are not multiples of ``size_multiple`` are padded (and the condition with them)
        symmetrically up to the next multiple, and the prediction is cropped back. The padding reflects the image
        (replicates it on an axis too short to reflect): a reflected x_t looks like noise in the pad at high noise
        levels and like a continuation of the image at low ones, where zeros would be an edge the network never saw.

        Args:
            x: noisy images ``(..., *spatial)``.
            timesteps: network time, a scalar or one value per image (leading dims flattened).
            condition: the extra input channels of a conditional network, (..., C, *spatial) with the leading
                shape of ``x``; None for an unconditional one.
        """
        self.check_image(x)
        spatial = x.shape[-self.spatial_dims:]
        flat = x.reshape(-1, 1, *spatial)
        if self.condition_channels or condition is not None:
            check_condition(condition, x, self.spatial_dims, self.condition_channels)
            flat = torch.cat((flat, condition.reshape(-1, condition.shape[-self.spatial_dims - 1], *spatial)), 1)
        t = torch.as_tensor(timesteps, device=x.device, dtype=torch.float32).reshape(-1)
        if t.numel() == 1:
            t = t.expand(flat.shape[0])
        elif t.numel() != flat.shape[0]:
            raise InputError(f"timesteps has {t.numel()} values; expected 1 or one per image ({flat.shape[0]})")
        padded, crop = pad_to_multiple(flat, self.spatial_dims, self.size_multiple)
        return self.network(padded, timesteps=t)[crop].reshape(x.shape)


class VarianceExplodingPrior(ScoreModel):
    """A VP-trained prior as a variance-exploding score model (the form Score-MRI's sampler needs).

    A VE image ``x = x_0 + sigma z`` is, times ``alpha = 1 / sqrt(1 + sigma^2)``, the VP image at the level where
    ``sigma_vp / alpha = sigma``, with the same noise ``z`` (Song et al. 2021; Karras et al. 2022). So the VP
    network's noise prediction there is the VE noise, and it sees inputs of unit scale at every ``sigma``: one
    network serves both forms, and fine-tuning it updates both.

    Args:
        prior: a :class:`DiffusionPrior` with a :class:`VPSchedule`.
        schedule: the VE schedule to sample with; ``sigma_max`` must not exceed the VP schedule's largest
            ``sigma / alpha``.
    """

    def __init__(self, prior: DiffusionPrior, schedule: VESchedule) -> None:
        super().__init__()
        if not isinstance(prior.schedule, VPSchedule) or not isinstance(schedule, VESchedule):
            raise InputError("VarianceExplodingPrior needs a prior with a VP schedule and a VE schedule, got "
                             f"{type(prior.schedule).__name__} and {type(schedule).__name__}")
        if schedule.sigma_max > prior.schedule.max_ratio:
            raise InputError(f"sigma_max ({schedule.sigma_max}) exceeds the largest noise level of the VP prior "
                             f"(sigma / alpha = {prior.schedule.max_ratio:.1f} at its last timestep)")
        self.prior, self.schedule = prior, schedule
        self.spatial_dims, self.size_multiple = prior.spatial_dims, prior.size_multiple
        self.voxel_size_mm, self.intensity = prior.voxel_size_mm, prior.intensity
        self.condition_intensity = prior.condition_intensity

    @property
    def condition_channels(self) -> int:
        """The VP prior's condition channels."""
        return self.prior.condition_channels

    def check_image(self, x: torch.Tensor) -> None:
        """As the VP prior's :meth:`DiffusionPrior.check_image`."""
        self.prior.check_image(x)

    def predict_noise(self, x: torch.Tensor, timesteps: torch.Tensor | float | int,
                      condition: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise of VE images ``x`` at VE network time ``timesteps``."""
        sigma = self.schedule.alpha_sigma(timesteps)[1]
        alpha = _per_image((1 + sigma ** 2).rsqrt(), x, self.spatial_dims)
        return self.prior.predict_noise(x * alpha, self.prior.schedule.timesteps_for_ratio(sigma), condition)


def pad_to_multiple(x: torch.Tensor, spatial_dims: int, multiple: int) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """``x`` (batch, channels, *spatial) padded on its ``spatial_dims`` trailing axes up to the next multiple of
    ``multiple``, the extra split between both sides (the smaller half before), by reflection, or by replication on
    an axis too short to reflect; and the index that crops a result of the padded shape back to ``x``'s."""
    crop = [slice(None)] * x.ndim
    for axis in range(x.ndim - spatial_dims, x.ndim):
        n = x.shape[axis]
        extra = -n % multiple
        if not extra:
            continue
        before, after = extra // 2, extra - extra // 2
        pad = [0, 0] * spatial_dims  # F.pad lists the last axis first
        pad[2 * (x.ndim - 1 - axis):2 * (x.ndim - axis)] = before, after
        x = torch.nn.functional.pad(x, pad, mode="reflect" if after < n else "replicate")
        crop[axis] = slice(before, before + n)
    return x, tuple(crop)


def check_condition(condition: torch.Tensor | None, x: torch.Tensor, spatial_dims: int, channels: int) -> None:
    """Raise :class:`InputError` unless ``condition`` is the (..., ``channels``, *spatial) companion of ``x``
    (..., *spatial) on its device: what a network with ``channels`` condition channels needs."""
    if channels == 0:
        if condition is not None:
            raise InputError("condition was given, but this prior's network is unconditional (one input channel)")
        return
    if condition is None:
        raise InputError(f"this prior's network takes {channels} condition channel(s) beside the image; pass "
                         "condition=")
    expected = (*x.shape[:-spatial_dims], channels, *x.shape[-spatial_dims:])
    if tuple(condition.shape) != expected:
        raise InputError(f"condition has shape {tuple(condition.shape)}; expected {expected} (x's leading shape, "
                         f"{channels} channel(s), x's spatial shape)")
    if condition.device != x.device:
        raise InputError(f"condition is on {condition.device}; expected x's device {x.device}")


def _per_image(values: torch.Tensor, x: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Schedule values (a scalar or one per image) shaped to multiply ``x`` (..., *spatial)."""
    values = values.to(device=x.device, dtype=x.dtype)
    if values.numel() == 1:
        return values.reshape(())
    return values.reshape(*x.shape[:-spatial_dims], *(1,) * spatial_dims)
