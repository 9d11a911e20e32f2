from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.priors import DiffusionPrior, TriPlanarScore, VESchedule, VPSchedule, sample
from tests.priors.conftest import OracleNoise


@pytest.mark.parametrize("schedule, method, steps", [(VPSchedule(), "ddim", 10), (VPSchedule(), "ddpm", 20),
                                                     (VESchedule(0.01, 5.0), "pc", 30)])
def test_sampling_a_point_mass_returns_that_image(schedule, method, steps):
    clean = torch.rand(8, 8)
    prior = DiffusionPrior(OracleNoise(clean, schedule), schedule, size_multiple=4)
    samples = sample(prior, (3, 8, 8), steps=steps, method=method, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, clean.expand(3, 8, 8), atol=0.05, rtol=0.0)


def test_volume_sampling_with_triplanar_score(tiny_unet):
    priors = {name: DiffusionPrior(tiny_unet, VPSchedule()) for name in ("axial", "coronal", "sagittal")}
    volume = sample(TriPlanarScore(priors, chunk_size=4), (8, 8, 8), steps=2)
    assert volume.shape == (8, 8, 8) and torch.isfinite(volume).all()


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
    prior = DiffusionPrior(OracleNoise(clean, schedule), schedule, size_multiple=4)
    samples = sample(prior, (2, 8, 8), steps=30, method="pc", clip=(0.0, 1.0),
                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(samples, clean.expand(2, 8, 8), atol=0.05, rtol=0.0)
