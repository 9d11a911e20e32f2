"""Tiny networks shared by the prior tests."""
from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet


class OracleNoise(torch.nn.Module):
    """Noise prediction that is exact for data concentrated at one image ``clean``: eps = (x - alpha c) / sigma."""

    def __init__(self, clean: torch.Tensor, schedule) -> None:
        super().__init__()
        self.clean, self.schedule = clean, schedule

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha, sigma = (v.to(x.dtype).reshape(-1, *(1,) * (x.ndim - 1)) for v in self.schedule.alpha_sigma(timesteps))
        return (x - alpha * self.clean) / sigma


@pytest.fixture
def tiny_unet():
    """A 3-level 2D DiffusionModelUNet with a few thousand parameters (accepts multiples of 4)."""
    return DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 8, 8),
                              attention_levels=(False, False, False), num_res_blocks=1, norm_num_groups=4,
                              num_head_channels=8).eval()
