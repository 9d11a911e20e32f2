from __future__ import annotations

import pytest
import torch
from monai.networks.schedulers import DDPMScheduler

from diffrecon.checks import InputError
from diffrecon.priors import VESchedule, VPSchedule


def test_vp_add_noise_matches_monai_ddpm():
    schedule = VPSchedule(1000, "linear_beta")
    x0, noise, t = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8), torch.tensor([0, 500, 999])
    expected = DDPMScheduler(1000, "linear_beta").add_noise(x0, noise, t)
    torch.testing.assert_close(schedule.add_noise(x0, noise, t), expected, atol=1e-5, rtol=1e-5)
    alpha, sigma = schedule.alpha_sigma(t)
    torch.testing.assert_close(alpha ** 2 + sigma ** 2, torch.ones(3, dtype=torch.float64))


def test_ve_sigma_endpoints_and_inverse():
    schedule = VESchedule(0.01, 50.0)
    alpha, sigma = schedule.alpha_sigma(torch.tensor([0.0, 999.0]))
    torch.testing.assert_close(sigma, torch.tensor([0.01, 50.0], dtype=torch.float64))
    assert (alpha == 1).all()
    torch.testing.assert_close(schedule.timesteps_for(sigma), torch.tensor([0.0, 999.0], dtype=torch.float64))
    x0, noise = torch.zeros(2, 4), torch.ones(2, 4)
    torch.testing.assert_close(schedule.add_noise(x0, noise, torch.tensor([0.0, 999.0]))[:, 0], torch.tensor([0.01, 50.0]))


@pytest.mark.parametrize("schedule", [VPSchedule(), VESchedule()])
def test_time_out_of_range(schedule):
    with pytest.raises(InputError, match="timesteps"):
        schedule.alpha_sigma(torch.tensor([1000.0]))


def test_bad_ve_levels():
    with pytest.raises(InputError, match="sigma_max"):
        VESchedule(sigma_min=1.0, sigma_max=0.5)


def test_vp_timesteps_for_ratio_inverts_the_schedule():
    schedule = VPSchedule()
    grid = torch.tensor([0, 1, 250, 251, 998, 999])
    alpha, sigma = schedule.alpha_sigma(grid)
    ratios = sigma / alpha
    torch.testing.assert_close(schedule.timesteps_for_ratio(ratios), grid.double(), atol=1e-6, rtol=0)
    # linear in log(sigma / alpha) between training timesteps, clamped to the ends outside them
    halfway = schedule.timesteps_for_ratio((ratios[2] * ratios[3]).sqrt())
    assert float(halfway) == pytest.approx(250.5, abs=1e-6)
    assert schedule.timesteps_for_ratio(torch.tensor([1e-6, 1e6])).tolist() == [0.0, 999.0]
    assert schedule.max_ratio == pytest.approx(float(ratios[-1]))
    with pytest.raises(InputError, match="ratio must be positive and finite"):
        schedule.timesteps_for_ratio(torch.tensor([1.0, 0.0]))
