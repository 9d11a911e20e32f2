"""Self-tuning data consistency: the Poisson target matches the truth's deviance on data simulated from a known
image, the "auto" settings meet their targets and say so, data that are not counts fall back with a warning, the
search finds a known weight, and "auto" or a number is what the settings accept."""
from __future__ import annotations

import math

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.methods.dds_mri import DDS
from diffrecon.methods.discrepancy import TOLERANCE, Discrepancy, match_discrepancy, poisson_discrepancy
from diffrecon.methods.pet_dds import PETDDS
from diffrecon.methods.pet_lisch import PETLiSch
from diffrecon.methods.score_mri import ScoreMRI
from diffrecon.physics.discrepancy import poisson_expected_deviance
from diffrecon.physics.fidelity import PoissonLikelihood
from tests.methods.test_mri_diffusion import _single_coil, brain  # noqa: F401 (a fixture)
from tests.methods.test_pet_diffusion import _scan


@pytest.fixture(scope="module")
def scan():
    return _scan()


def test_the_truths_expected_deviance_matches_its_monte_carlo_value(scan):
    _, model, activity = scan
    mean = model.forward(activity[None])[0]
    draws = torch.poisson(mean.expand(200, *mean.shape).contiguous(), torch.Generator().manual_seed(0))
    deviance = PoissonLikelihood(model, draws).deviance(activity.expand(200, *activity.shape))
    assert float(poisson_expected_deviance(mean).sum()) == pytest.approx(float(deviance.mean()), rel=0.02)


def test_the_target_from_an_osem_image_is_close_to_the_truths(scan):
    measured, model, activity = scan
    from diffrecon.classical.pet import osem
    fidelity = PoissonLikelihood(model, measured)
    target = poisson_discrepancy(fidelity, osem(measured, model, 2, 4, progress=False).image).target
    truth = float(poisson_expected_deviance(model.forward(activity[None])).sum())
    assert target == pytest.approx(truth, rel=0.03)


@pytest.mark.parametrize("make", [lambda p: PETLiSch(p, steps=4, progress=False),
                                  lambda p: PETDDS(p, steps=4, ascent_steps=20, progress=False)],
                         ids=["pet-lisch", "pet-dds"])
def test_auto_pet_methods_meet_the_discrepancy_target(make, scan, volume_prior):
    """(PET-DDS with more ascent steps than its default: from this know-nothing prior's estimates, 5 cannot fit the
    data that closely even unanchored.)"""
    measured, model, _ = scan
    report = make(volume_prior)(measured, model, num_samples=2, generator=torch.Generator().manual_seed(0)).report
    assert report["discrepancy_source"].startswith("expected Poisson deviance")
    measurements = report["measurements"]
    target, aim = (report[f"discrepancy_{key}_per_measurement"] * measurements for key in ("target", "aim"))
    tolerance = TOLERANCE * target * math.sqrt(2 / measurements)  # one standard deviation of the truth's deviance
    assert aim == pytest.approx(target + tolerance)  # Morozov's τ > 1: the most regularised fit within the noise
    for deviance in report["deviance_per_measurement"]:
        assert abs(deviance * measurements - aim) <= tolerance / 2 * 1.01
    assert report["warnings"] == []


def test_pet_data_that_are_not_counts_fall_back_and_warn(scan, volume_prior):
    measured, model, _ = scan
    report = PETLiSch(volume_prior, steps=3, progress=False)(measured * 0.37, model).report
    assert report["iterations"] == 3 and "not whole counts" in report["warnings"][0]


def test_a_result_far_from_the_target_is_flagged():
    target = Discrepancy(1000.0, 500, "given")
    over, under, met = (target.report(torch.tensor([value])) for value in (600.0, 2000.0, 1010.0))
    assert over["warnings"][0].startswith("over-fitting") and under["warnings"][0].startswith("under-fitting")
    assert met["warnings"] == [] and met["discrepancy_ratio"] == [pytest.approx(1.01)]
    assert met["deviance_per_measurement"] == [pytest.approx(2.02)]
    assert Discrepancy(1000.0, 500, "k-space", warn_overfit=False).report(torch.tensor([600.0]))["warnings"] == []


@pytest.mark.parametrize("make,low", [(lambda p: DDS(p["vp"], steps=4, gamma="auto", progress=False), 0.95),
                                      (lambda p: ScoreMRI(p["ve"], steps=4, projection="auto", progress=False), 0.5)],
                         ids=["dds", "score-mri"])
def test_auto_mri_methods_meet_the_target_of_the_estimated_noise(make, low, brain, mr_priors):  # noqa: F811
    """DDS's search lands on the target from either side; Score-MRI's relaxed projection only stops short of the
    data (an image that already fits more closely is left as it is), where the hard one fits them exactly."""
    kspace, operator = _single_coil(brain, snr_db=20)
    report = make(mr_priors)(kspace, operator).report
    assert "estimated from the k-space" in report["discrepancy_source"]
    assert low <= report["discrepancy_ratio"][0] <= 1.05


def test_noise_free_kspace_gets_hard_consistency(brain, mr_priors):  # noqa: F811
    kspace, operator = _single_coil(brain)
    report = DDS(mr_priors["vp"], steps=3, gamma="auto", noise_sigma=0, progress=False)(kspace, operator).report
    assert report["gamma"].startswith("hard") and report["data_residual"][0] < 0.05


def test_the_search_finds_a_known_weight():
    weights = torch.tensor([1.0, 1.0, 50.0])
    scales = torch.tensor([1.0, 30.0, 0.01])  # deviance = scale / w**2: the target 4 at w = sqrt(scale / 4)
    image, found, deviance = match_discrepancy(lambda w: w.clone(), lambda w: scales / w.square(), weights, 4.0,
                                               0.04)
    assert torch.allclose(found, (scales / 4).sqrt(), rtol=0.03) and torch.equal(image, found)
    assert torch.allclose(deviance, torch.full((3,), 4.0), rtol=0.05)


@pytest.mark.parametrize("make,message", [
    (lambda p: PETLiSch(p, iterations="often"), "iterations must be 'auto' (chosen from the data) or an integer"),
    (lambda p: PETDDS(p, lam=-1), "lam must be 'auto' (chosen from the data) or a number >= 0"),
])
def test_settings_take_auto_or_a_number(make, message, volume_prior):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make(volume_prior)
