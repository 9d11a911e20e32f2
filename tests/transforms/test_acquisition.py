"""The simulated-acquisition transform: fresh Poisson counts at every call (reproducible from its random state),
counts whose mean is the model's expectation, the model that made them, and a bad dose refused at construction."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.data.phantoms import make_subject
from diffrecon.physics.geometry import get_preset
from diffrecon.transforms.acquisition import SimulatePETd


@pytest.fixture(scope="module")
def item():
    subject = make_subject(0, get_preset("demo2d").grid)
    return {"image": subject.fdg, "mu_map": subject.mu_map}


def test_every_call_draws_new_counts_reproducibly_around_the_models_expectation(item):
    transform = SimulatePETd(preset="demo2d", count_level="10%").set_random_state(seed=0)
    first, second = transform(item), transform(item)
    assert not torch.equal(first["sinogram"], second["sinogram"])  # fresh noise
    again = SimulatePETd(preset="demo2d", count_level="10%").set_random_state(seed=0)(item)
    assert torch.equal(again["sinogram"], first["sinogram"])  # the same random state, the same counts
    expected = first["physics"].forward(torch.as_tensor(item["image"])[None])[0]
    assert float(first["sinogram"].sum() / expected.sum()) == pytest.approx(1.0, abs=0.01)
    assert torch.equal(first["sinogram"], first["sinogram"].round()) and first["image"] is item["image"]


def test_a_bad_dose_is_refused_before_any_data():
    with pytest.raises(InputError, match="count_level"):
        SimulatePETd(preset="demo2d", count_level="lots")


def test_a_channel_first_image_is_scanned_and_one_off_the_grid_is_refused_by_name(item):
    channel_first = {"image": item["image"][None], "mu_map": item["mu_map"][None]}
    transform = SimulatePETd(preset="demo2d", count_level="10%").set_random_state(seed=0)
    plain = SimulatePETd(preset="demo2d", count_level="10%").set_random_state(seed=0)(item)
    assert torch.equal(transform(channel_first)["sinogram"], plain["sinogram"])
    with pytest.raises(InputError, match=r"mu_map has shape \(64, 72\); expected \(64, 72, 1\)"):
        transform({"image": item["image"], "mu_map": item["mu_map"][..., 0]})
