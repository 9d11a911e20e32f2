"""Unconditional sampling against data whose noise prediction is known in closed form: independent Gaussian
pixels, x_0 ~ N(mean, std^2) (a point mass when std = 0). Then x_t = alpha x_0 + sigma z is Gaussian too, and
the exact noise prediction is E[z | x_t] = sigma (x_t - alpha mean) / (alpha^2 std^2 + sigma^2), so a sampler
that follows the schedule must return samples with that mean and std, within sampling and step-size error."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.priors import DiffusionPrior, TriPlanarScore, VESchedule, VPSchedule, sample
from tests.priors.stand_ins import GaussianNoise

MEAN = torch.tensor([[0.2, 0.8], [0.5, 1.0]])
STD = torch.tensor([[0.15, 0.3], [0.25, 0.4]])


def _per_class(samples: torch.Tensor) -> torch.Tensor:
    """(n, 2k, 2k) samples of the 2x2 pattern tiled k x k times -> (2, 2, n k^2): the values of each pattern pixel."""
    n, size = samples.shape[0], samples.shape[-1] // 2
    return samples.reshape(n, size, 2, size, 2).permute(2, 4, 0, 1, 3).reshape(2, 2, -1)


@pytest.mark.parametrize("schedule, method, steps", [(VPSchedule(), "ddim", 250), (VPSchedule(), "ddpm", 1000),
                                                     (VESchedule(0.01, 5.0), "pc", 100)])
def test_samples_of_gaussian_data_have_its_mean_and_std(schedule, method, steps):
    """40 images of 32x32 (10240 values per pattern pixel: standard errors 0.004 on the mean, 0.7% on the std).
    Step-size error seen over five seeds: DDIM 250 and DDPM 1000 steps at most 3.5% low on the std, PC 100
    steps at most 3.6% high (its corrector's step size, set per image from the noise and score norms, inflates
    the spread on small images: +9% on 8x8). A sampler that skips noise or steps on the wrong scale fails."""
    prior = DiffusionPrior(GaussianNoise(MEAN.repeat(16, 16), STD.repeat(16, 16), schedule), schedule, size_multiple=1)
    samples = _per_class(sample(prior, (40, 32, 32), steps=steps, method=method,
                                generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(samples.mean(-1), MEAN, atol=0.02, rtol=0.0)
    torch.testing.assert_close(samples.std(-1), STD, atol=0.0, rtol=0.06)


@pytest.mark.parametrize("schedule, method, steps", [(VPSchedule(), "ddim", 10), (VPSchedule(), "ddpm", 20),
                                                     (VESchedule(0.01, 5.0), "pc", 30)])
def test_sampling_a_point_mass_returns_that_image(schedule, method, steps):
    clean = torch.rand(8, 8)
    prior = DiffusionPrior(GaussianNoise(clean, 0.0, schedule), schedule, size_multiple=4)
    samples = sample(prior, (3, 8, 8), steps=steps, method=method, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, clean.expand(3, 8, 8), atol=0.05, rtol=0.0)


def test_volume_samples_from_triplanar_gaussian_priors():
    """Each orientation's prior knows the per-voxel mean of its slices (in the order the tri-planar score stacks
    them, all in one chunk); the three exact predictions agree, so volume samples must have the per-voxel mean
    and the std: a slice put back in the wrong place or orientation moves the mean by ~0.3."""
    schedule, n, std = VPSchedule(), 256, 0.2
    mean = torch.rand(8, 8, 8, generator=torch.Generator().manual_seed(1))
    priors = {name: DiffusionPrior(GaussianNoise(mean.movedim(axis, 0)[:, None].repeat(n, 1, 1, 1), std, schedule),
                                   schedule, size_multiple=1)
              for name, axis in [("axial", 2), ("coronal", 1), ("sagittal", 0)]}
    volumes = sample(TriPlanarScore(priors, chunk_size=8 * n), (n, 8, 8, 8), steps=250,
                     generator=torch.Generator().manual_seed(0))
    # per voxel: standard error 0.0125, the largest of 512 errors ~0.04
    torch.testing.assert_close(volumes.mean(0), mean, atol=0.06, rtol=0.0)
    assert (volumes - mean).std().item() == pytest.approx(std, rel=0.06)


def test_method_must_fit_schedule(tiny_unet):
    with pytest.raises(InputError, match="does not fit the VE schedule"):
        sample(DiffusionPrior(tiny_unet, VESchedule()), (1, 8, 8), method="ddim")
    with pytest.raises(InputError, match="unknown method"):
        sample(DiffusionPrior(tiny_unet, VPSchedule()), (1, 8, 8), method="euler")


def test_clip_keeps_denoised_estimates_in_range(tiny_unet):
    prior = DiffusionPrior(tiny_unet, VPSchedule())
    for method in ("ddim", "ddpm"):
        samples = sample(prior, (2, 8, 8), steps=5, method=method, clip=(0.0, 1.0),
                         generator=torch.Generator().manual_seed(0))
        # the last step returns the clamped estimate at timestep 0 (alpha ~ 1)
        assert samples.min() >= -0.05 and samples.max() <= 1.05


def test_pc_with_clamped_tweedie_score_recovers_point_mass():
    schedule = VESchedule(0.01, 5.0)
    clean = torch.rand(8, 8)
    prior = DiffusionPrior(GaussianNoise(clean, 0.0, schedule), schedule, size_multiple=4)
    samples = sample(prior, (2, 8, 8), steps=30, method="pc", clip=(0.0, 1.0),
                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, clean.expand(2, 8, 8), atol=0.05, rtol=0.0)
