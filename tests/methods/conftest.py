"""A tiny score over (x, y, z) volumes for the diffusion-method tests: the exact noise prediction of broad
independent Gaussian pixels, so the data, not the prior, must make the image."""
from __future__ import annotations

import pytest

from diffrecon.priors import DiffusionPrior, TriPlanarScore, VPSchedule
from tests.priors.stand_ins import GaussianNoise


def gaussian_volume_prior(mean: float = 1.0, std: float = 1.0) -> TriPlanarScore:
    schedule = VPSchedule()
    return TriPlanarScore({"axial": DiffusionPrior(GaussianNoise(mean, std, schedule), schedule, size_multiple=1)})


@pytest.fixture(scope="session")
def volume_prior() -> TriPlanarScore:
    return gaussian_volume_prior()
