from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.priors import DiffusionPrior, PatchwisePrior, TriPlanarScore, VESchedule, VPSchedule
from tests.priors.conftest import OracleNoise


def test_triplanar_tweedie_recovers_clean_volume():
    schedule = VPSchedule()
    clean = torch.rand(8, 12, 16)
    # each orientation's oracle knows the clean volume as that orientation's slice stack (n, 1, rows, cols)
    priors = {name: DiffusionPrior(OracleNoise(clean.movedim(axis, 0)[:, None], schedule), schedule, size_multiple=4)
              for name, axis in [("axial", 2), ("coronal", 1), ("sagittal", 0)]}
    score = TriPlanarScore(priors, chunk_size=100)
    noise = torch.randn(8, 12, 16)
    noisy = schedule.add_noise(clean, noise, torch.tensor(300))
    torch.testing.assert_close(score.tweedie(noisy, 300), clean, atol=1e-4, rtol=1e-4)


def test_triplanar_chunking_does_not_change_result(tiny_unet):
    priors = {name: DiffusionPrior(tiny_unet, VPSchedule()) for name in ("axial", "coronal", "sagittal")}
    volume = torch.randn(1, 8, 12, 16)
    whole = TriPlanarScore(priors, chunk_size=64).predict_noise(volume, 100)
    chunked = TriPlanarScore(priors, chunk_size=3).predict_noise(volume, 100)
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-5)
    assert whole.shape == volume.shape


def test_triplanar_weights_give_the_weighted_mean_of_the_orientations(tiny_unet):
    priors = {name: DiffusionPrior(tiny_unet, VPSchedule()) for name in ("axial", "coronal", "sagittal")}
    volume = torch.randn(1, 8, 12, 16)
    alone = {name: TriPlanarScore({name: prior}).predict_noise(volume, 100) for name, prior in priors.items()}
    weights = {"axial": 2.0, "coronal": 1.0, "sagittal": 1.0}
    weighted = TriPlanarScore(priors, weights=weights).predict_noise(volume, 100)
    expected = (2 * alone["axial"] + alone["coronal"] + alone["sagittal"]) / 4
    torch.testing.assert_close(weighted, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match="weights has orientations"):
        TriPlanarScore(priors, weights={"axial": 1.0})
    with pytest.raises(InputError, match="weights must be >= 0 with a positive sum"):
        TriPlanarScore(priors, weights={"axial": 1.0, "coronal": -1.0, "sagittal": 0.0})


def test_triplanar_bad_input(tiny_unet):
    prior = DiffusionPrior(tiny_unet, VPSchedule())
    with pytest.raises(InputError, match="orientation 'transverse'"):
        TriPlanarScore({"transverse": prior})
    with pytest.raises(InputError, match="schedules"):
        TriPlanarScore({"axial": prior, "coronal": DiffusionPrior(tiny_unet, VESchedule())})
    with pytest.raises(InputError, match="condition was given, but this prior's network is unconditional"):
        TriPlanarScore({"axial": prior}).predict_noise(torch.zeros(8, 8, 8), 10, torch.zeros(1, 8, 8, 8))


def test_patchwise_matches_whole_image_when_one_patch(tiny_unet):
    prior = DiffusionPrior(tiny_unet, VPSchedule())
    image = torch.randn(2, 16, 16)
    patchwise = PatchwisePrior(prior, roi_size=(16, 16))
    torch.testing.assert_close(patchwise.predict_noise(image, 50), prior.predict_noise(image, 50), atol=1e-5, rtol=1e-5)


def test_patchwise_covers_larger_images_exactly_for_pointwise_network():
    schedule = VESchedule()
    clean = torch.zeros(())
    prior = DiffusionPrior(OracleNoise(clean, schedule), schedule, size_multiple=4)
    image = torch.randn(1, 20, 28)
    patchwise = PatchwisePrior(prior, roi_size=(8, 8), overlap=0.5)
    torch.testing.assert_close(patchwise.tweedie(image, 500), torch.zeros_like(image), atol=1e-4, rtol=1e-4)
    with pytest.raises(InputError, match="roi_size"):
        PatchwisePrior(prior, roi_size=(6, 8))
