"""Networks whose noise prediction is known in closed form, for tests of samplers and reconstruction methods."""
from __future__ import annotations

import torch

from diffrecon.priors import VESchedule, VPSchedule


class GaussianNoise(torch.nn.Module):
    """Exact noise prediction ``network(x, timesteps)`` for independent pixels N(``mean``, ``std``^2); ``mean`` and
    ``std`` broadcast against the network's input (batch, 1, rows, cols)."""

    def __init__(self, mean: torch.Tensor | float, std: torch.Tensor | float, schedule: VPSchedule | VESchedule) -> None:
        super().__init__()
        self.mean, self.std, self.schedule = mean, std, schedule

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        alpha, sigma = (v.to(x.dtype).reshape(-1, *(1,) * (x.ndim - 1)) for v in self.schedule.alpha_sigma(timesteps))
        return sigma * (x - alpha * self.mean) / (alpha ** 2 * self.std ** 2 + sigma ** 2)
