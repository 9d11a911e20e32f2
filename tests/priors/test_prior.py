from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from diffrecon.checks import InputError
from diffrecon.priors import DiffusionPrior, VarianceExplodingPrior, VESchedule, VPSchedule, sample
from diffrecon.priors.prior import MIN_SPATIAL_SIZE
from tests.priors.conftest import OracleNoise
from tests.priors.test_adapters_and_conditions import conditional_unet


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


def test_unet_takes_any_size_and_refuses_too_small_ones(tiny_unet):
    prior = DiffusionPrior(tiny_unet, VPSchedule())
    assert prior.size_multiple == 4 and prior.min_size == 4  # a size the network takes as it is is never refused
    for shape in [(2, 16, 16), (1, 12, 20), (1, 10, 16), (2, 9, 13), (1, 4, 5)]:  # multiples of 4 and others
        assert prior.predict_noise(torch.randn(shape), 5).shape == shape
    with pytest.raises(InputError, match=r"x has spatial shape \(3, 16\); this prior needs at least 4 voxels along"):
        prior.predict_noise(torch.randn(1, 3, 16), 5)
    deep = DiffusionPrior(OracleNoise(torch.zeros(()), VPSchedule()), VPSchedule(), size_multiple=32)
    assert deep.min_size == MIN_SPATIAL_SIZE == 8
    with pytest.raises(InputError, match=r"x has spatial shape \(40, 7\); this prior needs at least 8 voxels"):
        deep.check_image(torch.empty(2, 40, 7, device="meta"))
    with pytest.raises(InputError, match=r"spatial shape \(5, 40\); this prior needs at least 8"):
        VarianceExplodingPrior(deep, VESchedule(0.01, 50.0)).predict_noise(torch.randn(5, 40), 5)


class _Seen(torch.nn.Module):
    """Returns the image channel of its input and keeps the input it saw."""

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.in_channels, self.seen = in_channels, None

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return x[:, :1]


def test_odd_sizes_are_padded_by_reflection_for_the_network_and_cropped_back():
    prior = DiffusionPrior(conditional_unet(), VPSchedule())  # takes multiples of 4, and one condition channel
    x, condition = torch.randn(2, 9, 13), torch.randn(2, 1, 9, 13)
    noise = prior.predict_noise(x, 50, condition)
    assert noise.shape == x.shape
    padded = F.pad(torch.cat((x[:, None], condition), 1), (1, 2, 1, 2), mode="reflect")  # 9 -> 12, 13 -> 16
    expected = prior.network(padded, timesteps=torch.full((2,), 50.0))[:, 0, 1:10, 1:14]
    torch.testing.assert_close(noise, expected)


@pytest.mark.parametrize("shape, multiple, seen, mode", [
    ((2, 9, 13), 4, (12, 16), "reflect"),
    ((1, 9, 8), 32, (32, 32), "replicate"),  # 23 and 24 more voxels: more than the axes hold, so replicated
    ((2, 5, 6, 7), 4, (8, 8, 8), "reflect"),  # a volume prior
])
def test_the_network_sees_the_padded_image_centred(shape, multiple, seen, mode):
    spatial_dims = len(seen)
    prior = DiffusionPrior(_Seen(), VPSchedule(), spatial_dims=spatial_dims, size_multiple=multiple)
    x = torch.randn(shape)
    torch.testing.assert_close(prior.predict_noise(x, 5), x)  # cropped back exactly
    assert prior.network.seen.shape[2:] == seen
    pads = [(s - n) for s, n in zip(seen, shape[-spatial_dims:])]
    pad = [side for extra in reversed(pads) for side in (extra // 2, extra - extra // 2)]
    flat = x.reshape(-1, 1, *shape[-spatial_dims:])
    torch.testing.assert_close(prior.network.seen, F.pad(flat, pad, mode=mode))


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
