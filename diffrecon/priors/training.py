"""Batch preparation for validating priors with MONAI's ``SupervisedEvaluator`` and ``DiffusionInferer``: a
validation loss at fixed noise levels with fixed noise."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.engines.utils import DiffusionPrepareBatch

from diffrecon.checks import InputError


class FixedNoisePrepareBatch(DiffusionPrepareBatch):
    """Validation batches: item ``i`` (its ``index`` key) gets noise level ``timesteps[i % len]`` and noise from
    a generator seeded with ``seed + i``, so the validation loss is comparable between epochs and runs."""

    def __init__(self, num_train_timesteps: int, timesteps: Sequence[float], seed: int = 0,
                 index_key: str = "index") -> None:
        super().__init__(num_train_timesteps)
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
        return super().__call__(batchdata, device, non_blocking, **kwargs)
