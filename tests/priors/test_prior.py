from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.priors import DiffusionPrior, VarianceExplodingPrior, VESchedule, VPSchedule, sample
from tests.priors.conftest import OracleNoise


@pytest.mark.parametrize("schedule, t", [(VPSchedule(), 400), (VESchedule(), 600.5)])
def test_tweedie_and_score_with_exact_noise(schedule, t):
    clean = torch.rand(8, 12)
    prior = DiffusionPrior(OracleNoise(clean, schedule), schedule, size_multiple=4)
    noise = torch.randn(2, 3, 8, 12)
    noisy = schedule.add_noise(clean.expand(2, 3, 8, 12), noise, torch.tensor(float(t)))
    torch.testing.assert_close(prior.predict_noise(noisy, t), noise, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(prior.tweedie(noisy, t), clean.expand(2, 3, 8, 12), atol=1e-4, rtol=1e-4)
    sigma = float(schedule.alpha_sigma(t)[1])
    torch.testing.assert_close(prior.score(noisy, t), -noise / sigma, atol=1e-3, rtol=1e-3)


def test_per_image_timesteps():
    schedule = VPSchedule()
    clean = torch.rand(4, 4)
    prior = DiffusionPrior(OracleNoise(clean, schedule), schedule, size_multiple=4)
    t = torch.tensor([10, 900])
    noise = torch.randn(2, 4, 4)
    noisy = schedule.add_noise(clean.expand(2, 4, 4), noise, t)
    torch.testing.assert_close(prior.tweedie(noisy, t), clean.expand(2, 4, 4), atol=1e-3, rtol=1e-3)
    with pytest.raises(InputError, match="timesteps has 3 values"):
        prior.predict_noise(noisy, torch.tensor([1, 2, 3]))


def test_unet_accepts_other_sizes_and_rejects_bad_ones(tiny_unet):
    prior = DiffusionPrior(tiny_unet, VPSchedule())
    assert prior.size_multiple == 4
    for shape in [(2, 16, 16), (1, 12, 20)]:  # training-like and another size
        assert prior.predict_noise(torch.randn(shape), 5).shape == shape
    with pytest.raises(InputError, match="multiples of 4"):
        prior.predict_noise(torch.randn(1, 10, 16), 5)


def test_variance_exploding_form_of_a_vp_prior():
    """At noise levels the VP schedule has, the VE form of an exact VP noise prediction is exact, and sampling
    it with predictor-corrector steps returns the data."""
    vp = VPSchedule()
    clean = torch.rand(8, 8)
    prior = VarianceExplodingPrior(DiffusionPrior(OracleNoise(clean, vp), vp, size_multiple=4), VESchedule(0.01, 50.0))
    alpha, sigma_vp = vp.alpha_sigma(torch.tensor([30, 400, 700]))
    sigma = sigma_vp / alpha
    t = prior.schedule.timesteps_for(sigma)
    noise = torch.randn(3, 8, 8)
    noisy = prior.schedule.add_noise(clean.expand(3, 8, 8), noise, t)
    torch.testing.assert_close(prior.predict_noise(noisy, t), noise, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(prior.tweedie(noisy, t), clean.expand(3, 8, 8), atol=1e-3, rtol=1e-3)
    samples = sample(prior, (2, 8, 8), steps=60, method="pc", clip=(0.0, 1.0),
                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, clean.expand(2, 8, 8), atol=0.05, rtol=0.0)


def test_variance_exploding_form_needs_vp_prior_and_reachable_sigma(tiny_unet):
    with pytest.raises(InputError, match="sigma_max \\(500.0\\) exceeds"):
        VarianceExplodingPrior(DiffusionPrior(tiny_unet, VPSchedule()), VESchedule(0.01, 500.0))
    with pytest.raises(InputError, match="needs a prior with a VP schedule"):
        VarianceExplodingPrior(DiffusionPrior(tiny_unet, VESchedule()), VESchedule())
