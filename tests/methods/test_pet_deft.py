"""PET-DEFT: an untrained h-network leaves the prior's sampling unchanged (zero output layer), training lowers the
ε-matching loss on a tiny set, the output is non-negative, a trained correction beats its own unconditional
estimate on a held-out pair, and mismatched h-networks are refused by name."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.methods.deft_training import export_correction
from diffrecon.methods.pet_deft import LIKELIHOOD_TERMS, PETDEFT, deft_condition, deft_loss
from diffrecon.priors.correction import correction_model, h_network, load_correction
from diffrecon.methods.spaces import PETSpace
from tests.methods.conftest import unet_volume_prior
from diffrecon.physics.pet_simulation import simulate_pet
from tests.methods.test_pet_diffusion import _scan
from tests.physics.pet_fixtures import cylinder, tiny_grid, tiny_scanner
from tests.priors.test_adapters_and_conditions import randomised

TINY = (8, 8, 8)


def _correction(prior, trained: bool = False):
    torch.manual_seed(1)
    network = h_network(TINY)
    return correction_model(prior, {"axial": randomised(network) if trained else network})


def test_an_untrained_correction_leaves_the_prior_unchanged():
    measured, model, _ = _scan()
    prior = unet_volume_prior()
    runs = [PETDEFT(prior, correction, steps=3, progress=False)(measured, model, num_samples=2,
                                                                 generator=torch.Generator().manual_seed(4)).samples
            for correction in (None, _correction(prior))]
    assert torch.equal(runs[0], runs[1])


def test_training_lowers_the_epsilon_loss_and_the_output_is_non_negative():
    measured, model, truth = _scan()
    prior = unet_volume_prior()
    correction = _correction(prior, trained=True)
    space = PETSpace("auto", 8)
    call = space.prepare(measured, model, prior, 1, None)
    clean = space.to_network(truth[None], call)

    def loss() -> float:  # over fixed times and noises, so that before and after compare
        with torch.no_grad():
            return sum(float(deft_loss(prior, correction, clean, call, space, torch.Generator().manual_seed(s)))
                       for s in range(8)) / 8

    before = loss()
    optimiser = torch.optim.Adam(correction.parameters(), lr=1e-3)
    for step in range(40):
        optimiser.zero_grad()
        deft_loss(prior, correction, clean, call, space, torch.Generator().manual_seed(100 + step)).backward()
        optimiser.step()
    assert loss() < 0.9 * before
    result = PETDEFT(prior, correction, steps=3, progress=False)(measured, model, num_samples=2)
    assert (result.samples >= 0).all() and result.report["settings"]["corrected"]


def test_mismatched_h_networks_are_refused():
    prior = unet_volume_prior()
    with pytest.raises(InputError, match=r"h-networks \['coronal'\]; expected one per orientation of the prior: "
                                         r"\['axial'\]"):
        correction_model(prior, {"coronal": h_network(TINY)})
    with pytest.raises(InputError, match="h-network takes 0 condition channels; expected 2"):
        correction_model(prior, {"axial": prior.priors["axial"].network})
    with pytest.raises(InputError, match="correction must be a score model of the prior's structure"):
        PETDEFT(prior, correction=h_network(TINY))


def _rod_scan(row: int, seed: int):
    """A tiny cylinder with a hot rod at ``row``, scanned with noise ``seed``."""
    grid = tiny_grid(4)
    activity = cylinder(grid, 15.0, 2.0)
    activity[row:row + 4, 6:10] = 5.0
    simulation = simulate_pet(activity, cylinder(grid, 18.0, 0.0096), tiny_scanner(1, n_rings=4), grid,
                              trues_per_plane=5e3, psf_fwhm_mm=None, seed=seed)
    return simulation.measured, simulation.model, activity


def test_a_trained_correction_beats_its_unconditional_estimate_on_a_held_out_pair():
    prior = unet_volume_prior()
    correction = _correction(prior, trained=True)
    space = PETSpace("auto", 8)
    pairs = []
    for row, seed in ((4, 1), (6, 2), (8, 3)):
        measured, model, truth = _rod_scan(row, seed)
        call = space.prepare(measured, model, prior, 1, None)
        pairs.append((call, space.to_network(truth[None], call)))
    optimiser = torch.optim.Adam(correction.parameters(), lr=2e-3)
    for step in range(150):
        call, clean = pairs[step % len(pairs)]
        optimiser.zero_grad()
        deft_loss(prior, correction, clean, call, space, torch.Generator().manual_seed(step)).backward()
        optimiser.step()
    measured, model, truth = _rod_scan(5, 9)  # a rod position and noise not trained on
    errors = {}
    for name, used in (("deft", correction), ("unconditional", None)):
        result = PETDEFT(prior, used, steps=5, progress=False)(measured, model, num_samples=2,
                                                                generator=torch.Generator().manual_seed(0))
        errors[name] = float((result.mean - truth).norm() / truth.norm())
    assert errors["deft"] < 0.8 * errors["unconditional"], errors


def test_the_em_term_is_the_gradient_term_times_the_estimate_and_a_mismatched_term_is_refused(tmp_path):
    measured, model, _ = _scan()
    prior = unet_volume_prior()
    space = PETSpace("auto", 8)
    call = space.prepare(measured, model, prior, 1, None)
    x = torch.rand(1, *model.image_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        noise = prior.predict_noise(x, 300)
        em, gradient = (deft_condition(x, 300, noise, call, space, term) for term in LIKELIHOOD_TERMS)
    torch.testing.assert_close(em[:, 0], gradient[:, 0])  # the same Tweedie estimate
    torch.testing.assert_close(em[:, 1], em[:, 0] * gradient[:, 1], rtol=1e-4, atol=1e-6)
    export_correction(correction_model(prior, {"axial": h_network()}), tmp_path, [1.0, 2.0], {"likelihood": "gradient"})
    loaded = load_correction(tmp_path, prior)
    assert PETDEFT(prior, loaded, progress=False).settings()["likelihood"] == "gradient"
    with pytest.raises(InputError, match="likelihood 'em': the h-networks of .* were trained with 'gradient'"):
        PETDEFT(prior, loaded, likelihood="em")
    with pytest.raises(InputError, match="likelihood"):
        PETDEFT(prior, None, likelihood="score")
