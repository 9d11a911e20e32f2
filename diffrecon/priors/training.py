"""Batch preparation for training and validating priors with MONAI's ``SupervisedTrainer``/``SupervisedEvaluator``
and ``DiffusionInferer``: a validation loss at fixed noise levels with fixed noise, and the condition channels of a
conditional prior (e.g. the T1 of an MR-guided PET prior) concatenated to the noisy image, not noised and not
scored, dropped out (zeroed) per sample in training for classifier-free guidance."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.engines.utils import DiffusionPrepareBatch

from diffrecon.checks import InputError

GUIDANCE_DROPOUT = 0.1
"""Fraction of training samples whose condition is zeroed (Singh et al.'s ``guided_p_uncond``)."""


def _concatenated(infer_kwargs: dict) -> dict:
    """The inferer's arguments with the condition concatenated to the noisy image as input channels."""
    return {**infer_kwargs, "mode": "concat"} if "condition" in infer_kwargs else infer_kwargs


class GuidanceDropoutPrepareBatch(DiffusionPrepareBatch):
    """Training batches of a conditional prior: the image (key "image") is noised and its noise is the target; the
    condition (``condition_name``, e.g. "mr") enters as extra input channels, zeroed for each sample with
    probability ``dropout`` (classifier-free guidance: the same network learns the unconditional score).

    Args:
        num_train_timesteps: the schedule's training timesteps.
        condition_name: the batch key of the condition channels (batch, C, *spatial).
        dropout: probability in [0, 1) of zeroing a sample's condition.
    """

    def __init__(self, num_train_timesteps: int, condition_name: str = "mr",
                 dropout: float = GUIDANCE_DROPOUT) -> None:
        super().__init__(num_train_timesteps, condition_name)
        if not 0 <= float(dropout) < 1:
            raise InputError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)

    def __call__(self, batchdata: dict[str, torch.Tensor], device: str | torch.device | None = None,
                 non_blocking: bool = False, **kwargs):
        if self.condition_name not in batchdata:
            raise InputError(f"training batches of a conditional prior need the condition key "
                             f"{self.condition_name!r}; the batch has {sorted(batchdata)}")
        images, target, args, infer_kwargs = super().__call__(batchdata, device, non_blocking, **kwargs)
        condition = infer_kwargs["condition"]
        keep = torch.rand(len(condition), device=condition.device) >= self.dropout
        infer_kwargs["condition"] = condition * keep.reshape(-1, *(1,) * (condition.ndim - 1)).to(condition.dtype)
        return images, target, args, _concatenated(infer_kwargs)


class FixedNoisePrepareBatch(DiffusionPrepareBatch):
    """Validation batches: item ``i`` (its ``index`` key) gets noise level ``timesteps[i % len]`` and noise from
    a generator seeded with ``seed + i``, so the validation loss is comparable between epochs and runs. With
    ``condition_name``, that key's channels are concatenated to the noisy image (a conditional prior, validated with
    its condition)."""

    def __init__(self, num_train_timesteps: int, timesteps: Sequence[float], seed: int = 0,
                 index_key: str = "index", condition_name: str | None = None) -> None:
        super().__init__(num_train_timesteps, condition_name)
        if not len(timesteps) or any(not 0 <= t <= num_train_timesteps - 1 for t in timesteps):
            raise InputError(f"timesteps {list(timesteps)} must be non-empty and in [0, {num_train_timesteps - 1}]")
        self.levels = torch.as_tensor([float(t) for t in timesteps])
        self.seed = int(seed)
        self.index_key = index_key
        self._indices = torch.zeros(0, dtype=torch.long)

    def get_noise(self, images: torch.Tensor) -> torch.Tensor:
        noise = [torch.randn(images.shape[1:], generator=torch.Generator().manual_seed(self.seed + int(i)))
                 for i in self._indices]
        return torch.stack(noise).to(images.device, images.dtype)

    def get_timesteps(self, images: torch.Tensor) -> torch.Tensor:
        return self.levels[self._indices % len(self.levels)].to(images.device)

    def __call__(self, batchdata: dict[str, torch.Tensor], device: str | torch.device | None = None,
                 non_blocking: bool = False, **kwargs):
        if self.index_key not in batchdata:
            raise InputError(f"validation batches need an {self.index_key!r} key (see validation_slices)")
        self._indices = torch.as_tensor(batchdata[self.index_key]).reshape(-1).long().cpu()
        images, target, args, infer_kwargs = super().__call__(batchdata, device, non_blocking, **kwargs)
        return images, target, args, _concatenated(infer_kwargs)
