"""3D scores from 2D priors: the tri-planar average over axial, coronal and sagittal slices, and patch-wise
evaluation (MONAI sliding windows) for images too large for one network call. Slices are evaluated in chunks
so memory grows linearly with the number of voxels, not with the number of slices at once."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.inferers import SlidingWindowInferer
from torch import nn

from diffrecon.checks import InputError, check_choice
from diffrecon.priors.prior import DiffusionPrior, ScoreModel, check_condition
from diffrecon.transforms.slicing import ORIENTATIONS


class PatchwisePrior(ScoreModel):
    """A prior evaluated over overlapping patches (Gaussian-weighted), for images larger than whole-image calls
    allow. It has the same interface as :class:`DiffusionPrior` and can be used in :class:`TriPlanarScore`.

    Args:
        prior: the prior (2D on slices or 3D on volumes).
        roi_size: patch size, each a multiple of ``prior.size_multiple``.
        overlap: fraction of overlap between neighbouring patches.
        sw_batch_size: patches per network call.
    """

    def __init__(self, prior: DiffusionPrior, roi_size: Sequence[int], overlap: float = 0.25,
                 sw_batch_size: int = 8) -> None:
        super().__init__()
        if len(roi_size) != prior.spatial_dims or any(int(n) % prior.size_multiple for n in roi_size):
            raise InputError(f"roi_size {tuple(roi_size)} must have {prior.spatial_dims} sizes, each a multiple "
                             f"of {prior.size_multiple}")
        self.prior = prior
        self.schedule = prior.schedule
        self.spatial_dims = prior.spatial_dims
        self.size_multiple = 1
        self.voxel_size_mm, self.intensity = prior.voxel_size_mm, prior.intensity
        self.condition_intensity = prior.condition_intensity
        self.inferer = SlidingWindowInferer(roi_size=tuple(int(n) for n in roi_size), sw_batch_size=sw_batch_size,
                                            overlap=overlap, mode="gaussian")

    @property
    def condition_channels(self) -> int:
        """The prior's condition channels."""
        return self.prior.condition_channels

    def predict_noise(self, x: torch.Tensor, timesteps: torch.Tensor | float | int,
                      condition: torch.Tensor | None = None) -> torch.Tensor:
        """Predicted noise over patches (the condition's channels cut into the same patches); ``timesteps`` must be
        one value for all images."""
        t = torch.as_tensor(timesteps, device=x.device, dtype=torch.float32)
        if t.numel() != 1:
            raise InputError(f"timesteps has {t.numel()} values; patch-wise evaluation needs a single time")
        spatial = x.shape[-self.spatial_dims:]
        flat = x.reshape(-1, 1, *spatial)
        channels = self.prior.condition_channels
        if channels or condition is not None:
            check_condition(condition, x, self.spatial_dims, channels)
            flat = torch.cat((flat, condition.reshape(-1, channels, *spatial)), 1)
        out = self.inferer(flat, lambda patch: self.prior.network(patch, timesteps=t.reshape(1).expand(len(patch))))
        return out.reshape(x.shape)



class TriPlanarScore(ScoreModel):
    """Average of perpendicular 2D priors over a volume: each slices the (..., x, y, z) volume in its
    orientation (axial: (z, x, y), coronal: (y, x, z), sagittal: (x, y, z), as
    ``diffrecon.transforms.slicing.ORIENTATIONS``), predicts the noise of every slice, and the three noise
    fields are averaged (with ``weights``, a weighted mean: e.g. to lean on the orientation whose prior is best).

    Args:
        priors: orientation name -> 2D prior (or :class:`PatchwisePrior`); all share one schedule.
        chunk_size: slices per network call (memory use scales with it, not with the volume's slice count).
        weights: orientation name -> weight >= 0 (normalised to sum 1); None for the plain mean.
    """

    def __init__(self, priors: Mapping[str, DiffusionPrior | PatchwisePrior], chunk_size: int = 16,
                 weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not priors:
            raise InputError("priors is empty; expected at least one of 'axial', 'coronal', 'sagittal'")
        for name, prior in priors.items():
            check_choice("orientation", name, ORIENTATIONS)
            if prior.spatial_dims != 2:
                raise InputError(f"the {name} prior is {prior.spatial_dims}D; tri-planar scores need 2D priors")
        channels = {p.condition_channels for p in priors.values()}
        if len(channels) > 1:
            raise InputError(f"priors take different condition channels ({sorted(channels)}); expected one number")
        kinds = {type(p.schedule).__name__ for p in priors.values()}
        if len(kinds) > 1:
            raise InputError(f"priors use different schedules ({sorted(kinds)}); expected one shared schedule")
        if int(chunk_size) < 1:
            raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
        self.priors = nn.ModuleDict(dict(priors))
        self.weights = _normalised_weights(weights, list(priors))
        self.schedule = next(iter(priors.values())).schedule
        self.chunk_size = int(chunk_size)
        self.spatial_dims = 3
        sizes = {p.voxel_size_mm for p in priors.values()}
        self.voxel_size_mm = sizes.pop() if len(sizes) == 1 else None
        conventions = {p.intensity for p in priors.values()}
        self.intensity = conventions.pop() if len(conventions) == 1 else None
        conventions = {p.condition_intensity for p in priors.values()}
        self.condition_intensity = conventions.pop() if len(conventions) == 1 else None

    @property
    def condition_channels(self) -> int:
        """The condition channels every orientation's prior takes."""
        return next(iter(self.priors.values())).condition_channels

    def check_image(self, volume: torch.Tensor) -> None:
        """Raise :class:`InputError` unless every orientation's prior accepts the slices of ``volume``
        (..., x, y, z), e.g. a tensor on the meta device."""
        super().check_image(volume)
        for name, prior in self.priors.items():
            stack = torch.movedim(volume, volume.ndim - 3 + ORIENTATIONS[name], -3)
            try:
                prior.check_image(stack)
            except InputError as error:
                raise InputError(f"the {name} prior cannot take the {name} slices of a volume of shape "
                                 f"{tuple(volume.shape[-3:])}: {error}") from None

    def predict_noise(self, volume: torch.Tensor, timesteps: torch.Tensor | float | int,
                      condition: torch.Tensor | None = None) -> torch.Tensor:
        """(Weighted) mean over orientations of the slice-wise predicted noise of ``volume`` (..., x, y, z) at one
        time; ``condition`` (..., C, x, y, z) is sliced and chunked exactly as the volume."""
        if volume.ndim < 3:
            raise InputError(f"volume has shape {tuple(volume.shape)}; expected (..., x, y, z)")
        if torch.as_tensor(timesteps).numel() != 1:
            raise InputError("timesteps must be a single value for a tri-planar score")
        if condition is not None:
            channels = condition.shape[-4] if condition.ndim >= 4 else 0
            check_condition(condition, volume, 3, max(channels, 1))
        total = torch.zeros_like(volume)
        for name, prior in self.priors.items():
            axis = volume.ndim - 3 + ORIENTATIONS[name]
            stack = torch.movedim(volume, axis, -3)  # (..., n_slices, rows, cols)
            flat = stack.reshape(-1, *stack.shape[-2:])
            chunks = flat.split(self.chunk_size)
            if condition is None:
                conditions = [None] * len(chunks)
            else:  # (..., C, x, y, z) -> (..., n_slices, C, rows, cols), sliced as the volume
                sliced = torch.movedim(torch.movedim(condition, condition.ndim - 3 + ORIENTATIONS[name], -3), -4, -3)
                conditions = sliced.reshape(-1, *sliced.shape[-3:]).split(self.chunk_size)
            noise = torch.cat([prior.predict_noise(chunk, timesteps, part) for chunk, part in zip(chunks, conditions)])
            total += self.weights[name] * torch.movedim(noise.reshape(stack.shape), -3, axis)
        return total


def _normalised_weights(weights: Mapping[str, float] | None, names: Sequence[str]) -> dict[str, float]:
    """Weights per orientation of ``names`` summing to 1 (equal when ``weights`` is None)."""
    if weights is None:
        return {name: 1 / len(names) for name in names}
    if set(weights) != set(names):
        raise InputError(f"weights has orientations {sorted(weights)}; expected exactly those of the priors, "
                         f"{sorted(names)}")
    values = {name: float(weights[name]) for name in names}
    total = sum(values.values())
    if any(not value >= 0 for value in values.values()) or not total > 0:
        raise InputError(f"weights must be >= 0 with a positive sum, got {values}")
    return {name: value / total for name, value in values.items()}
