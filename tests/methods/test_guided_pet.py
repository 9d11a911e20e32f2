"""MR guidance of the PET diffusion methods through one wrapper (GuidedScore): the methods' ``mr`` and ``guidance``
give the same samples as the wrapped prior given directly, the report says how the prior was guided, and bad input
is refused by name before any sampling (the grid at the call, before the OSEM reference)."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.methods.dps import PETDPS
from diffrecon.methods.naive import PETNaive
from diffrecon.methods.pet_dds import PETDDS
from diffrecon.methods.pet_lisch import PETLiSch
from diffrecon.priors import DiffusionPrior, TriPlanarScore, VPSchedule
from diffrecon.priors.guidance import GuidedScore, condition_in_prior_units
from tests.methods.conftest import unet_volume_prior
from tests.methods.test_pet_diffusion import _scan
from tests.priors.test_adapters_and_conditions import conditional_unet

METHODS = {"pet-dds": PETDDS, "pet-lisch": PETLiSch, "pet-dps": PETDPS, "pet-naive": PETNaive}


@pytest.fixture(scope="module")
def scan():
    return _scan()


@pytest.fixture(scope="module")
def conditional_prior() -> TriPlanarScore:
    torch.manual_seed(0)
    return TriPlanarScore({"axial": DiffusionPrior(conditional_unet(), VPSchedule(), size_multiple=4)})


def _mr(activity: torch.Tensor) -> torch.Tensor:
    """A 'T1' with the activity's edges: bright where the activity is low."""
    return (activity > 0).float() * (1.0 + 0.5 * (activity < 3).float())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_mr_and_guidance_are_the_guided_prior(name, scan, conditional_prior):
    measured, model, activity = scan
    mr = _mr(activity)
    method = METHODS[name](conditional_prior, steps=2, mr=mr, guidance=0.5, progress=False)
    direct = METHODS[name](GuidedScore(conditional_prior, condition_in_prior_units(conditional_prior, mr), 0.5),
                           steps=2, progress=False)
    first = method(measured, model, num_samples=2, generator=torch.Generator().manual_seed(4))
    again = direct(measured, model, num_samples=2, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(first.samples, again.samples)
    assert first.report["settings"]["guidance"] == 0.5 and first.report["settings"]["mr"] is True
    assert first.report["network_evaluations_per_step"] == 2
    assert first.report["description"].endswith("MR-guided w=0.5")  # the figure title and report say it
    unguided = METHODS[name](conditional_prior, steps=2, progress=False)(
        measured, model, num_samples=2, generator=torch.Generator().manual_seed(4))
    assert unguided.report["settings"]["mr"] is False and unguided.report["network_evaluations_per_step"] == 1
    assert unguided.report["description"].endswith("MR prior without an MR")
    assert not torch.allclose(unguided.samples, first.samples)


def test_an_unconditional_prior_reports_as_before(scan):
    measured, model, _ = scan
    report = PETDDS(unet_volume_prior(), steps=2, progress=False)(measured, model).report
    assert "guidance" not in report["settings"] and "network_evaluations_per_step" not in report
    assert "MR" not in report["description"]


def test_bad_mr_and_guidance_are_refused_before_sampling(scan, conditional_prior):
    measured, model, activity = scan
    mr = _mr(activity)
    with pytest.raises(InputError, match="mr was given, but the prior is unconditional"):
        PETDDS(unet_volume_prior(), mr=mr)
    with pytest.raises(InputError, match="guidance 0.4 > 0 needs an MR-conditioned prior"):
        PETLiSch(unet_volume_prior(), guidance=0.4)
    with pytest.raises(InputError, match="guidance 0.4 > 0 needs mr"):
        PETDDS(conditional_prior, guidance=0.4)
    for bad in (-1.0, float("nan")):
        with pytest.raises(InputError, match="guidance must be a finite number >= 0"):
            PETLiSch(conditional_prior, mr=mr, guidance=bad)
    calls = []
    method = PETDDS(conditional_prior, mr=mr[:, :, :3], guidance=0.5, progress=False,
                    callback=lambda step, image: calls.append(step))
    with pytest.raises(InputError, match=r"mr has shape \(16, 16, 3\); expected the image grid's \(16, 16, 4\)"):
        method(measured, model)
    assert calls == []
