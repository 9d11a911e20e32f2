"""Priors of the diffusion-method tests: a tiny score over (x, y, z) volumes, the exact noise prediction of broad
independent Gaussian pixels (so the data, not the prior, must make the image), and the shipped MR prior in both
forms (fast on the tests' small images)."""
from __future__ import annotations

import pytest

from diffrecon.priors import DiffusionPrior, ScoreModel, TriPlanarScore, VPSchedule
from diffrecon.priors.bundle import load_bundle_prior
from tests.priors.stand_ins import GaussianNoise


def gaussian_volume_prior(mean: float = 1.0, std: float = 1.0, size_multiple: int = 1,
                          orientations: tuple[str, ...] = ("axial",)) -> TriPlanarScore:
    """Slice priors of independent Gaussian pixels per orientation; ``size_multiple``: the sizes their "network"
    takes (others are padded for it)."""
    schedule = VPSchedule()
    prior = DiffusionPrior(GaussianNoise(mean, std, schedule), schedule, size_multiple=size_multiple)
    return TriPlanarScore({name: prior for name in orientations})


@pytest.fixture(scope="session")
def volume_prior() -> TriPlanarScore:
    return gaussian_volume_prior()


@pytest.fixture(scope="session")
def mr_priors() -> dict[str, ScoreModel]:
    """The shipped MR slice prior, "vp" (DDS) and "ve" (Score-MRI) forms."""
    return {form: load_bundle_prior("mr_t1_prior", form) for form in ("vp", "ve")}
