"""Priors of the diffusion-method tests: a tiny score over (x, y, z) volumes, the exact noise prediction of broad
independent Gaussian pixels (so the data, not the prior, must make the image), and the shipped MR prior in both
forms (fast on the tests' small images)."""
from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from diffrecon.priors import DiffusionPrior, ScoreModel, TriPlanarScore, VPSchedule
from diffrecon.priors.bundle import load_bundle_prior
from tests.priors.stand_ins import GaussianNoise
from tests.priors.test_adapters_and_conditions import randomised


def gaussian_volume_prior(mean: float = 1.0, std: float = 1.0, size_multiple: int = 1,
                          orientations: tuple[str, ...] = ("axial",)) -> TriPlanarScore:
    """Slice priors of independent Gaussian pixels per orientation; ``size_multiple``: the sizes their "network"
    takes (others are padded for it)."""
    schedule = VPSchedule()
    prior = DiffusionPrior(GaussianNoise(mean, std, schedule), schedule, size_multiple=size_multiple)
    return TriPlanarScore({name: prior for name in orientations})


def unet_volume_prior(size_multiple: int = 4) -> TriPlanarScore:
    """An axial prior with a real (tiny, randomly initialised) 2D DiffusionModelUNet: for methods that adapt the
    network (SCD). Randomised throughout: MONAI zero-initialises the output layers, which would pass no gradient."""
    torch.manual_seed(0)
    network = randomised(DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(8, 8, 8),
                                            attention_levels=(False, False, False), num_res_blocks=1,
                                            norm_num_groups=4, num_head_channels=8).eval())
    return TriPlanarScore({"axial": DiffusionPrior(network, VPSchedule(), size_multiple=size_multiple)})


@pytest.fixture(scope="session")
def volume_prior() -> TriPlanarScore:
    return gaussian_volume_prior()


@pytest.fixture(scope="session")
def mr_priors() -> dict[str, ScoreModel]:
    """The shipped MR slice prior, "vp" (DDS) and "ve" (Score-MRI) forms."""
    return {form: load_bundle_prior("mr_t1_prior", form) for form in ("vp", "ve")}
