"""The contract every method shares: one call shape, one result, a JSON report, clear refusals; the registry
builds methods by name and refuses options they do not take."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.classical.pet import osem
from diffrecon.methods import METHODS, Reconstruction, build_method, get_method, method_names, summarize_samples
from diffrecon.methods.registry import method_parameters, required_inputs
from diffrecon.physics.mri_coils import birdcage_maps
from diffrecon.priors.correction import correction_model, h_network
from diffrecon.physics.mri_masks import sampling_mask
from diffrecon.physics.mri_simulation import simulate_kspace
from diffrecon.physics.pet_simulation import simulate_pet
from diffrecon.physics.psf import GaussianPSF
from diffrecon.priors import VPSchedule
from tests.methods.conftest import unet_volume_prior
from tests.physics.pet_fixtures import cylinder, tiny_grid, tiny_scanner


@pytest.fixture(scope="module")
def pet_case():
    grid = tiny_grid(4)
    activity = cylinder(grid, 15.0)
    simulation = simulate_pet(activity, torch.zeros(grid.shape), tiny_scanner(1, n_rings=4), grid,
                              trues_per_plane=2e3, psf_fwhm_mm=None, seed=0)
    return simulation.measured, simulation.model, activity


@pytest.fixture(scope="module")
def mri_case():
    image = torch.zeros(32, 32)
    image[8:24, 10:22] = 1.0
    mask = sampling_mask("random", (32, 32), 2, center_fraction=0.3, seed=0).mask
    kspace, operator = simulate_kspace(image, mask, birdcage_maps((32, 32), 4), snr_db=40)
    return kspace, operator, image


def _inputs(name, anatomy, prior):
    """Tiny settings: 2 iterations and steps where the method has them; the Bowsher MR image (to the methods that
    require one: for the PET diffusion methods an MR is the optional condition of an MR-guided prior); a prior."""
    parameters = method_parameters(name)
    settings = {"iterations": 2, "steps": 2, "mr": anatomy, "prior": prior, "progress": False}
    return {key: value for key, value in settings.items()
            if key in parameters and (key != "mr" or key in required_inputs(name))}


@pytest.mark.parametrize("name", method_names())
def test_every_registered_method_answers_the_one_call_shape(name, pet_case, mri_case, volume_prior, mr_priors):
    data, physics, truth = pet_case if METHODS[name].modality == "PT" else mri_case
    prior = volume_prior if METHODS[name].modality == "PT" else mr_priors[getattr(get_method(name), "schedule_kind", VPSchedule).kind]
    if name.startswith("scd-") and METHODS[name].modality == "PT":  # adapts a network: the stand-in has none
        prior = unet_volume_prior()
    inputs = _inputs(name, pet_case[2].numpy(), prior)
    if "correction" in required_inputs(name):  # PET-DEFT: untrained h-networks of the prior's structure
        inputs["correction"] = correction_model(prior, {"axial": h_network()})
    method = build_method(name, **inputs)
    result = method(data, physics, generator=torch.Generator().manual_seed(7))
    assert isinstance(result, Reconstruction) and result.mean.shape == truth.shape
    report = json.loads(json.dumps(result.report))  # JSON-serialisable
    assert report["method"] == name and report["seed"] == 7 and report["num_samples"] == 1
    assert report["settings"] == method.settings() and report["seconds"] > 0
    assert report["description"] == method.description()
    if method.deterministic:
        with pytest.raises(InputError, match="deterministic; num_samples must be 1"):
            method(data, physics, num_samples=2)
    else:
        samples = method(data, physics, num_samples=2).samples
        assert samples.shape == (2, *truth.shape) and result.std.shape == truth.shape


def test_osem_method_is_the_classical_function(pet_case):
    measured, model, _ = pet_case
    result = build_method("osem", iterations=2, subsets=4, progress=False)(measured, model)
    direct = osem(measured, model, iterations=2, n_subsets=4, progress=False)
    torch.testing.assert_close(result.mean, direct.image)
    assert result.report["log_likelihood"] == direct.log_likelihood
    assert result.report["description"] == "OSEM 2 iterations x 4 subsets"


def test_osem_post_filter_is_a_normalised_gaussian_blur(pet_case):
    """The post-filter is the Gaussian of that FWHM, normalised by its blur of ones (edge slices keep their
    level, as does the total activity)."""
    measured, model, truth = pet_case
    plain = build_method("osem", iterations=2, subsets=4, progress=False)(measured, model)
    filtered = build_method("osem", iterations=2, subsets=4, progress=False, post_filter_mm=8.0)(measured, model)
    blur = GaussianPSF(8.0, model.grid.voxel_size_mm)
    torch.testing.assert_close(filtered.mean, blur(plain.mean) / blur(torch.ones_like(plain.mean)))
    inside = truth > 0.5 * truth.max()
    edge = inside[..., 0]  # the first slice: an unnormalised blur would take a third of its activity
    assert float(filtered.mean[..., 0][edge].mean()) == pytest.approx(float(plain.mean[..., 0][edge].mean()), rel=0.1)
    assert float(filtered.mean.sum()) == pytest.approx(float(plain.mean.sum()), rel=0.02)
    assert filtered.report["settings"]["post_filter_mm"] == 8.0
    assert filtered.report["description"] == "OSEM 2 iterations x 4 subsets, 8 mm Gaussian post-filter"
    with pytest.raises(InputError, match="post_filter_mm must be a finite number >= 0, got -1"):
        build_method("osem", post_filter_mm=-1)


def test_registry_refuses_unknown_and_missing_options():
    with pytest.raises(InputError, match="method 'osem' takes no option 'beta'; it takes iterations, subsets"):
        build_method("osem", beta=1.0)
    with pytest.raises(InputError, match="method 'bowsher' needs 'mr'"):
        build_method("bowsher")
    with pytest.raises(InputError, match="unknown method 'fbp'"):
        get_method("fbp")
    with pytest.raises(InputError, match="iterations must be an integer >= 1, got 0"):
        build_method("mlem", iterations=0)
    with pytest.raises(InputError, match="beta must be a finite number >= 0"):
        build_method("map-rdp", beta=float("nan"))
    assert set(method_names("MR")) == {"zero-filled", "cg-sense", "tv", "score-mri", "dds", "dps", "naive", "scd-dds"}


def test_map_rdp_defaults_to_the_tuned_beta():
    """β 0.3 was tuned on validation phantoms at 0.1-100% counts (docs/robustness.md) and is the demo's β."""
    from diffrecon.pipeline import DEMO_RDP_BETA

    method = build_method("map-rdp")
    assert method.beta == DEMO_RDP_BETA == 0.3 and method.settings()["beta"] == 0.3
    assert "beta=0.3" in method.description()


def test_num_samples_must_be_a_positive_integer(pet_case):
    measured, model, _ = pet_case
    for bad in (0, 1.5, True):
        with pytest.raises(InputError, match="num_samples must be an integer >= 1"):
            build_method("osem")(measured, model, num_samples=bad)


def test_summarize_samples_gives_mean_and_sample_std():
    samples = torch.randn(50, 3, 4, generator=torch.Generator().manual_seed(0)) * 2 + 1
    mean, std = summarize_samples(samples)
    torch.testing.assert_close(mean, samples.mean(0))
    torch.testing.assert_close(std, samples.std(0))
    complex_samples = samples + 1j * samples
    _, complex_std = summarize_samples(complex_samples)
    torch.testing.assert_close(complex_std, samples.std(0) * np.sqrt(2))
    one_mean, one_std = summarize_samples(samples[:1])
    assert torch.equal(one_std, torch.zeros(3, 4)) and torch.equal(one_mean, samples[0])
