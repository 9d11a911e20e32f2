"""The public reverse-diffusion steps: DDIM agrees with MONAI's scheduler where MONAI's is right, and the VE
steps do what their equations say."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.priors.schedules import VPSchedule
from diffrecon.priors.steps import ddim_step, ddim_timesteps, langevin_corrector, reverse_diffusion_predictor


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_matches_monai_for_its_own_timestep_spacing(eta):
    schedule = VPSchedule()
    scheduler = schedule.scheduler("ddim")
    scheduler.set_timesteps(10)  # MONAI steps from t to t - 100
    x, noise = torch.randn(2, 6, 6), torch.randn(2, 6, 6)
    expected, x0_monai = scheduler.step(noise, 500, x, eta=eta, generator=torch.Generator().manual_seed(3))
    alpha, sigma = (float(v) for v in schedule.alpha_sigma(500))
    x0_hat = (x - sigma * noise) / alpha
    ours = ddim_step(x0_hat, noise, schedule, 500, 400, eta, torch.Generator().manual_seed(3))
    torch.testing.assert_close(x0_hat, x0_monai, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_ddim_final_step_returns_the_denoised_estimate_and_timesteps_cover_the_schedule():
    schedule = VPSchedule()
    x0_hat, noise = torch.rand(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(ddim_step(x0_hat, noise, schedule, 5, -1, eta=1.0), x0_hat)
    pairs = ddim_timesteps(schedule, 7)
    assert pairs[0][0] == 999 and pairs[-1] == (0, -1) and len(pairs) == 7
    assert all(t > t_prev for t, t_prev in pairs) and all(a[1] == b[0] for a, b in zip(pairs, pairs[1:]))
    assert ddim_timesteps(schedule, 3, start=400, end=100) == [(400, 250), (250, 100), (100, -1)]
    with pytest.raises(InputError, match="steps \\(1001\\) must not exceed the 1000 timesteps"):
        ddim_timesteps(schedule, 1001)
    with pytest.raises(InputError, match="0 <= end"):
        ddim_timesteps(schedule, 5, start=100, end=200)
    with pytest.raises(InputError, match="eta must be in"):
        ddim_step(x0_hat, noise, schedule, 5, 4, eta=2.0)


def test_ve_predictor_and_corrector_follow_their_equations():
    x, score = torch.randn(4, 8, 8), torch.randn(4, 8, 8)
    torch.testing.assert_close(reverse_diffusion_predictor(x, score, 2.0, 1.0, add_noise=False), x + 3.0 * score)
    noisy = reverse_diffusion_predictor(x, score, 2.0, 1.0, torch.Generator().manual_seed(0))
    assert abs(float((noisy - x - 3.0 * score).std()) - 3.0 ** 0.5) < 0.2
    # Langevin on a standard normal (score -x) keeps it standard normal (to O(step), step ~ 2 snr^2 = 0.05)
    samples = torch.randn(64, 32, 32)
    for _ in range(20):
        samples = langevin_corrector(samples, -samples, snr=0.16, spatial_dims=2)
    assert abs(float(samples.mean())) < 0.05 and abs(float(samples.std()) - 1) < 0.05
    with pytest.raises(InputError, match="must not exceed sigma"):
        reverse_diffusion_predictor(x, score, 1.0, 2.0)
