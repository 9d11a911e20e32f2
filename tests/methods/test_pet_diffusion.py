"""PET-DDS and PET-LiSch on a tiny 3D scanner with a prior that knows nothing of the image (broad Gaussian
pixels): the call shape and report, determinism by seed, non-negativity, PET-LiSch's likelihood targets, the
likelihood step, recovery of a known image from noiseless data, and refusals before sampling."""
from __future__ import annotations

import json
import re

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.classical.pet import em_ascent_step, osem
from diffrecon.methods.pet_dds import PETDDS
from diffrecon.methods.pet_lisch import PETLiSch
from diffrecon.physics.geometry import ImageGrid
from diffrecon.physics.pet_simulation import simulate_pet
from diffrecon.priors import DiffusionPrior, VPSchedule
from tests.methods.conftest import gaussian_volume_prior
from tests.physics.pet_fixtures import cylinder, tiny_grid, tiny_scanner
from tests.priors.stand_ins import GaussianNoise


def _scan(noise: bool = True):
    grid = tiny_grid(4)
    activity = cylinder(grid, 15.0, 2.0)
    activity[6:10, 6:10] = 5.0  # a hot rod
    simulation = simulate_pet(activity, cylinder(grid, 18.0, 0.0096), tiny_scanner(1, n_rings=4), grid,
                              trues_per_plane=5e3, psf_fwhm_mm=None, noise=noise, seed=3)
    return simulation.measured, simulation.model, activity


@pytest.fixture(scope="module")
def scan():
    return _scan()


METHODS = {"pet-dds": lambda prior, **kw: PETDDS(prior, progress=False, **{"steps": 4, **kw}),
           "pet-lisch": lambda prior, **kw: PETLiSch(prior, progress=False, **{"steps": 4, "iterations": 5, **kw})}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_samples_are_nonnegative_deterministic_and_reported(name, scan, volume_prior):
    measured, model, activity = scan
    method = METHODS[name](volume_prior)
    first = method(measured, model, num_samples=3, generator=torch.Generator().manual_seed(1))
    again = method(measured, model, num_samples=3, generator=torch.Generator().manual_seed(1))
    other = method(measured, model, num_samples=3, generator=torch.Generator().manual_seed(2))
    assert first.samples.shape == (3, *activity.shape) and first.mean.shape == first.std.shape == activity.shape
    assert torch.equal(first.samples, again.samples) and not torch.equal(first.samples, other.samples)
    assert first.samples.min() >= 0 and (first.std > 0).any()
    torch.testing.assert_close(first.mean, first.samples.mean(0))
    report = json.loads(json.dumps(first.report))
    assert report["network_evaluations"] == 4 and report["seed"] == 1 and len(report["final_log_likelihood"]) == 3
    assert report["seconds_network"] > 0 and report["seconds_physics"] > 0
    assert report["seconds"] >= report["seconds_network"] + report["seconds_physics"]


@pytest.mark.parametrize("subsets,schedule_subsets,iterations", [(1, 1, 8), (4, 1, 8), (8, 8, 3)])
def test_lisch_meets_its_likelihood_targets(scan, volume_prior, subsets, schedule_subsets, iterations):
    measured, model, _ = scan
    result = PETLiSch(volume_prior, steps=5, iterations=iterations, subsets=subsets, schedule_subsets=schedule_subsets,
                      max_ascent_steps=50, progress=False)(measured, model, num_samples=2,
                                                           generator=torch.Generator().manual_seed(0))
    report = result.report
    assert report["capped_steps"] == [] and len(report["targets"]) == 5
    assert report["targets"] == sorted(report["targets"])  # rising along the (OS)EM curve
    curve = report["schedule_log_likelihood"]
    target = report["target_log_likelihood"]
    assert len(curve) == iterations + 1 and target == pytest.approx(curve[-1])  # iteration 0: the uniform start
    # iso-likelihood: the line search lands on the K-th likelihood, not past it (float32 sums: 1e-6 slack)
    for value in report["final_log_likelihood"]:
        assert target - 1e-6 * abs(target) <= value < target + 0.01 * (curve[-1] - curve[-2])


@pytest.mark.parametrize("schedule_subsets,iterations", [(4, 5), (4, 1), (1, 3)])
def test_lisch_schedule_is_one_em_run_continued_from_the_scale_osem(scan, volume_prior, schedule_subsets, iterations):
    """With the scale's OSEM algorithm (4 subsets here) as the schedule, that run's iterations are reused and it is
    continued: the curve is that of one OSEM run to K; with 1 subset it is MLEM's."""
    measured, model, _ = scan
    report = PETLiSch(volume_prior, steps=2, iterations=iterations, schedule_subsets=schedule_subsets,
                      osem_iterations=2, osem_subsets=4, progress=False)(measured, model).report
    expected = osem(measured, model, iterations, schedule_subsets, progress=False).log_likelihood
    assert report["schedule_log_likelihood"][1:] == pytest.approx(expected, rel=1e-7)
    assert report["target_log_likelihood"] == pytest.approx(expected[-1], rel=1e-7)


def test_a_pass_over_subsets_needs_fewer_likelihood_steps(scan, volume_prior):
    measured, model, _ = scan
    steps = {}
    for subsets in (1, 4):
        method = PETLiSch(volume_prior, steps=5, iterations=8, schedule_subsets=1, subsets=subsets, progress=False)
        steps[subsets] = method(measured, model, num_samples=2,
                                generator=torch.Generator().manual_seed(0)).report["likelihood_steps"]
    assert steps[4] < steps[1], steps


def test_a_capped_likelihood_step_is_reported(scan, volume_prior):
    measured, model, _ = scan
    report = PETLiSch(volume_prior, steps=3, iterations=30, max_ascent_steps=1, progress=False)(measured, model).report
    assert report["capped_steps"] and report["final_log_likelihood"][0] < report["target_log_likelihood"]


def test_the_likelihood_step_raises_the_log_likelihood(scan):
    measured, model, activity = scan
    image = (activity * 0.5 + torch.rand(activity.shape, generator=torch.Generator().manual_seed(0)))[None]
    image = image * (model.sensitivity() > 0)
    stepped = em_ascent_step(image, measured, model)
    assert (model.log_likelihood(stepped, measured) > model.log_likelihood(image, measured)).all()


@pytest.mark.parametrize("name,settings", [("pet-lisch", {"iterations": 60, "steps": 6, "max_ascent_steps": 60}),
                                           ("pet-dds", {"lam": 0.01, "ascent_steps": 10, "subsets": 2,
                                                        "steps": 6, "final_time": 0.0})])
def test_a_known_image_is_recovered_from_noiseless_data(name, settings):
    """The prior knows only the mean level (near-constant images, std 0.05): the structure must come from the
    data. (With a broad noise-like prior the result keeps the prior's noise at MLEM's likelihood: iso-likelihood
    is not identity.) MLEM itself reaches 0.056 here after 60 iterations."""
    measured, model, activity = _scan(noise=False)
    result = METHODS[name](gaussian_volume_prior(1.0, 0.05), **settings)(measured, model,
                                                                         generator=torch.Generator().manual_seed(0))
    inner = cylinder(tiny_grid(4), 12.0).bool()
    error = (result.mean[inner] - activity[inner]).norm() / activity[inner].norm()
    assert error < 0.1, error


def test_pet_dds_reconstructs_a_grid_of_any_size():
    """Slices the priors' networks do not take as they are (15 x 17, 15 x 9, 17 x 9 against multiples of 8) are
    padded for them: the result has the grid's shape."""
    grid = ImageGrid((15, 17, 9), (3.0, 3.0, 3.0))
    simulation = simulate_pet(cylinder(grid, 15.0, 2.0), cylinder(grid, 18.0, 0.0096), tiny_scanner(1, n_rings=9),
                              grid, trues_per_plane=5e3, psf_fwhm_mm=None, seed=3)
    prior = gaussian_volume_prior(size_multiple=8, orientations=("axial", "coronal", "sagittal"))
    result = PETDDS(prior, steps=2, progress=False)(simulation.measured, simulation.model, num_samples=2,
                                                    generator=torch.Generator().manual_seed(0))
    assert result.samples.shape == (2, 15, 17, 9) and result.mean.shape == grid.shape
    assert torch.isfinite(result.samples).all() and result.samples.min() >= 0


@pytest.mark.parametrize("build,message", [
    (lambda p: PETLiSch(p, steps=0), "steps must be an integer >= 1, got 0"),
    (lambda p: PETLiSch(p, iterations=0), "iterations must be 'auto' (chosen from the data) or an integer >= 1, got 0"),
    (lambda p: PETLiSch(p, subsets=0), "subsets must be an integer >= 1, got 0"),
    (lambda p: PETLiSch(p, step_size=-0.5), "step_size must be in"),
    (lambda p: PETDDS(p, lam=-1.0), "lam must be 'auto' (chosen from the data) or a number >= 0"),
    (lambda p: PETDDS(p, warm_start=1.5), "warm_start must be a fraction in (0, 1) of the noise schedule (or null"),
    (lambda p: PETDDS("prior"), "prior must be a diffrecon.priors.ScoreModel"),
])
def test_bad_settings_are_refused_when_built(build, message, volume_prior):
    with pytest.raises(InputError, match=re.escape(message)):
        build(volume_prior)


def test_bad_data_and_unfit_priors_are_refused_before_sampling(scan, volume_prior):
    measured, model, _ = scan
    with pytest.raises(InputError, match="num_samples must be an integer >= 1"):
        PETDDS(volume_prior)(measured, model, num_samples=0)
    with pytest.raises(InputError, match="holds no counts"):
        PETDDS(volume_prior)(torch.zeros_like(measured), model)
    with pytest.raises(InputError, match="measured sinogram has shape"):
        PETDDS(volume_prior)(measured[:, :3], model)
    schedule = VPSchedule()
    flat = DiffusionPrior(GaussianNoise(1.0, 1.0, schedule), schedule, size_multiple=1)
    with pytest.raises(InputError, match="prior scores 2D images; PET methods need a score over"):
        PETDDS(flat)(measured, model)
    picky = gaussian_volume_prior(size_multiple=8, orientations=("coronal",))  # coronal slices: 16 x 4
    with pytest.raises(InputError, match=r"the coronal prior cannot take the coronal slices of a volume of shape "
                                         r"\(16, 16, 4\): x has spatial shape \(16, 4\); this prior needs at least 8"):
        PETLiSch(picky)(measured, model)
    coarse = gaussian_volume_prior()
    coarse.voxel_size_mm = (2.0, 2.0, 2.0)
    with pytest.raises(InputError, match=r"voxels of \(3.0, 3.0, 3.0\) mm; the prior was trained at \(2.0"):
        PETLiSch(coarse)(measured, model)
    views = model.projector.n_views
    too_many = rf"^subsets must be between 1 and the number of views \({views}\), got {views + 1}$"
    for method in (PETLiSch, PETDDS):
        with pytest.raises(InputError, match=too_many):
            method(volume_prior, subsets=views + 1)(measured, model)
    for name in ("osem_subsets", "schedule_subsets"):
        with pytest.raises(InputError, match=rf"^{name} must be between 1 and the number of views \({views}\)"):
            PETLiSch(volume_prior, **{name: views + 1})(measured, model)
