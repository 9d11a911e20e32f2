"""Classifier-free guidance (GuidedScore): w = 0 is the conditional network's conditional evaluation, no MR its
unconditional (zeroed-MR) one, w > 0 the guided combination of two separate evaluations, batched into one network
call; the MR is sliced with x in the tri-planar score; bad inputs are refused by name before any evaluation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.priors import DiffusionPrior, TriPlanarScore, VPSchedule
from diffrecon.priors.guidance import GuidedScore, check_guidance, condition_in_prior_units, guided_score
from diffrecon.transforms.intensity import magnitude_peak
from tests.priors.test_adapters_and_conditions import conditional_unet, randomised


class CountingNetwork(torch.nn.Module):
    """A real network that counts its calls and the images it was given."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network, self.calls, self.images = network, 0, 0

    @property
    def in_channels(self) -> int:
        return self.network.in_channels

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.images += len(x)
        return self.network(x, timesteps=timesteps)


def counted_prior() -> tuple[DiffusionPrior, CountingNetwork]:
    torch.manual_seed(0)
    network = CountingNetwork(conditional_unet())
    return DiffusionPrior(network, VPSchedule(), size_multiple=4), network


def test_w0_is_the_conditional_evaluation_and_no_mr_the_unconditional_one():
    prior, network = counted_prior()
    x, mr = torch.randn(3, 8, 12), torch.rand(8, 12)
    conditional = prior.predict_noise(x, 40, mr.expand(3, 1, 8, 12))
    unconditional = prior.predict_noise(x, 40, torch.zeros(3, 1, 8, 12))
    assert not torch.allclose(conditional, unconditional)  # the network does use the MR channel
    network.calls = 0
    torch.testing.assert_close(GuidedScore(prior, mr, 0.0).predict_noise(x, 40), conditional)
    torch.testing.assert_close(GuidedScore(prior, None, 0.0).predict_noise(x, 40), unconditional)
    assert network.calls == 2  # one call each


@pytest.mark.parametrize("w", [0.25, 1.0])
def test_guided_noise_is_the_combination_of_two_separate_calls_made_in_one(w):
    prior, network = counted_prior()
    x, mr = torch.randn(3, 8, 12), torch.rand(8, 12)
    conditional = prior.predict_noise(x, 40, mr.expand(3, 1, 8, 12))
    unconditional = prior.predict_noise(x, 40, torch.zeros(3, 1, 8, 12))
    network.calls = network.images = 0
    guided = GuidedScore(prior, mr, w)
    torch.testing.assert_close(guided.predict_noise(x, 40), (1 + w) * conditional - w * unconditional,
                               rtol=1e-4, atol=1e-5)
    assert (network.calls, network.images) == (1, 6) and guided.evaluations_per_call == 2
    # per-image timesteps are repeated for both halves; score and Tweedie follow the guided noise
    t = torch.tensor([10, 40, 90])
    expected = (1 + w) * prior.predict_noise(x, t, mr.expand(3, 1, 8, 12)) - w * prior.predict_noise(
        x, t, torch.zeros(3, 1, 8, 12))
    torch.testing.assert_close(guided.predict_noise(x, t), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(guided.tweedie(x, 40), prior.tweedie(x, 40, guided.predict_noise(x, 40)))


def test_the_mr_is_sliced_with_x_in_the_triplanar_score():
    torch.manual_seed(0)
    priors = {name: DiffusionPrior(CountingNetwork(conditional_unet()), VPSchedule(), size_multiple=4)
              for name in ("axial", "coronal", "sagittal")}
    tri = TriPlanarScore(priors, chunk_size=64)
    volume, mr = torch.randn(2, 8, 12, 4), torch.rand(8, 12, 4)
    w = 0.5
    guided = GuidedScore(tri, mr, w)
    for prior in priors.values():
        prior.network.calls = 0
    noise = guided.predict_noise(volume, 30)
    assert [p.network.calls for p in priors.values()] == [1, 1, 1]  # both evaluations in one call per orientation
    expected = torch.zeros_like(volume)
    for name, axis in (("axial", 3), ("coronal", 2), ("sagittal", 1)):  # slice by hand: (sample, slice, rows, cols)
        stack = torch.movedim(volume, axis, 1)
        condition = torch.movedim(mr, axis - 1, 0).expand(2, *stack.shape[1:])
        flat, cond = stack.reshape(-1, *stack.shape[2:]), condition.reshape(-1, 1, *stack.shape[2:])
        prior = priors[name]
        eps = (1 + w) * prior.predict_noise(flat, 30, cond) - w * prior.predict_noise(flat, 30, torch.zeros_like(cond))
        expected += torch.movedim(eps.reshape(stack.shape), 1, axis) / 3
    torch.testing.assert_close(noise, expected, rtol=1e-4, atol=1e-5)
    # an MR flipped along x changes the score: it is not ignored nor broadcast the wrong way
    assert not torch.allclose(noise, GuidedScore(tri, mr.flip(0), w).predict_noise(volume, 30))


def test_guided_score_of_an_unconditional_prior_is_the_prior_and_bad_inputs_are_refused(tiny_unet):
    plain = DiffusionPrior(tiny_unet, VPSchedule())
    assert guided_score(plain, None, 0.0) is plain
    with pytest.raises(InputError, match="mr was given, but the prior is unconditional"):
        guided_score(plain, np.ones((8, 8)), 0.0)
    with pytest.raises(InputError, match="guidance 0.5 > 0 needs an MR-conditioned prior"):
        guided_score(plain, None, 0.5)
    conditional, _ = counted_prior()
    with pytest.raises(InputError, match="guidance 0.5 > 0 needs mr"):
        guided_score(conditional, None, 0.5)
    for bad in (-0.1, math.nan, math.inf, "0.5", True):
        with pytest.raises(InputError, match="guidance must be"):
            guided_score(conditional, np.ones((8, 8)), bad)
    with pytest.raises(InputError, match="mr contains 64 NaN"):
        guided_score(conditional, np.full((8, 8), np.nan), 0.5)
    with pytest.raises(InputError, match="mr is .*all zero"):
        guided_score(conditional, np.zeros((8, 8)), 0.5)
    with pytest.raises(InputError, match=r"mr has shape \(2, 2, 8, 8\)"):
        guided_score(conditional, np.ones((2, 2, 8, 8)), 0.5)
    guided = guided_score(conditional, np.ones((8, 12)), 0.5)
    with pytest.raises(InputError, match=r"mr has shape \(8, 12\); expected the image grid's \(8, 8\)"):
        guided.check_image(torch.empty(1, 8, 8, device="meta"))
    assert check_guidance(np.float32(0.25)) == 0.25


def test_the_mr_is_scaled_by_its_peak():
    prior, _ = counted_prior()
    mr = torch.rand(8, 12) * 700
    torch.testing.assert_close(condition_in_prior_units(prior, mr), mr / magnitude_peak(mr))
    guided = guided_score(prior, mr, 0.5)
    torch.testing.assert_close(guided.condition[0], mr / magnitude_peak(mr))


def test_guided_score_keeps_the_prior_attributes():
    prior, _ = counted_prior()
    prior.voxel_size_mm, prior.intensity = (3.0, 3.0, 3.0), "emission_mean"
    guided = GuidedScore(prior, torch.ones(8, 8), 0.5)
    assert guided.schedule is prior.schedule and guided.spatial_dims == 2 and guided.condition_channels == 0
    assert guided.voxel_size_mm == (3.0, 3.0, 3.0) and guided.intensity == "emission_mean"
    assert TriPlanarScore({"axial": prior}).condition_channels == 1
    with pytest.raises(InputError, match="different condition channels"):
        TriPlanarScore({"axial": prior, "coronal": DiffusionPrior(randomised(conditional_unet(2)), VPSchedule())})
