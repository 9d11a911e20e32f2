from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.priors import DiffusionPrior, VarianceExplodingPrior, VESchedule, VPSchedule
from diffrecon.priors.quality import (best_gaussian_filter, masked_mse, median_tissue_ratio, nearest_correlation,
                                      tissue_ratio, tweedie_vs_gaussian)
from tests.priors.conftest import OracleNoise


def _two_tissue_image(grey: float, white: float = 1.0) -> np.ndarray:
    image = np.zeros((16, 16))
    image[2:14, 2:14] = grey
    image[5:11, 5:11] = white
    return image


def test_tissue_ratio_recovers_grey_white_ratio():
    assert tissue_ratio(_two_tissue_image(4.0)) == pytest.approx(4.0)
    ratio, measured = median_tissue_ratio(np.stack([_two_tissue_image(3.0), _two_tissue_image(3.5),
                                                    np.zeros((16, 16))]))
    assert ratio == pytest.approx(3.25) and measured == 2
    with pytest.raises(InputError, match="tissue"):
        tissue_ratio(np.ones((16, 16)))


def test_nearest_correlation_separates_structure_from_noise():
    rng = np.random.default_rng(0)
    references = np.stack([_two_tissue_image(g) for g in (3.0, 3.5, 4.0)])
    assert nearest_correlation(2 * references[:1] + 1, references)[0] == pytest.approx(1.0)
    assert nearest_correlation(rng.random((4, 16, 16)), references).max() < 0.5


def test_masked_mse_scores_only_masked_pixels():
    clean = np.zeros((2, 4, 4))
    estimates = clean.copy()
    estimates[:, 0, 0] = 2.0  # an error of 2 in one pixel, inside the first mask only
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, :2, :2] = True
    masks[1, 2:, 2:] = True
    np.testing.assert_allclose(masked_mse(estimates, clean, masks), [1.0, 0.0])
    with pytest.raises(InputError, match="select no pixel"):
        masked_mse(estimates, clean, np.zeros_like(masks))
    with pytest.raises(InputError, match="one shape"):
        masked_mse(estimates[:1], clean, masks)


def test_best_gaussian_filter_smooths_noise_and_leaves_clean_images():
    rng = np.random.default_rng(0)
    clean = np.ones((2, 16, 16))
    masks = np.ones_like(clean, dtype=bool)
    noisy = clean + 0.5 * rng.standard_normal(clean.shape)
    mse, width = best_gaussian_filter(noisy, clean, masks)
    assert (width > 1).all() and (mse < 0.1 * masked_mse(noisy, clean, masks)).all()
    edges = np.zeros((1, 16, 16))
    edges[:, :, 8:] = 1.0
    mse, width = best_gaussian_filter(edges, edges, masks[:1])
    assert width[0] == 0 and mse[0] == 0
    with pytest.raises(InputError, match="widths"):
        best_gaussian_filter(noisy, clean, masks, widths=())


class _ZeroNoise(torch.nn.Module):
    """A network that predicts no noise: its Tweedie estimate is the noisy image over alpha, unfiltered."""

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def test_tweedie_vs_gaussian_separates_a_knowing_prior_from_an_ignorant_one():
    schedule = VPSchedule()
    clean = torch.zeros(3, 12, 16)
    clean[:, 2:10, 3:13] = 1.0
    clean[:, 4:8, 6:10] = 3.0
    masks = clean > 0
    knowing = DiffusionPrior(OracleNoise(clean[:, None], schedule), schedule, size_multiple=4)
    ignorant = DiffusionPrior(_ZeroNoise(), schedule, size_multiple=4)
    result = tweedie_vs_gaussian(knowing, clean, masks, 1.2, torch.Generator().manual_seed(0))
    assert result["sigma_over_alpha"] == pytest.approx(1.2, rel=0.01)
    assert (result["ratio"] < 1e-6).all()
    np.testing.assert_allclose(result["tweedie"], clean, atol=1e-3)
    assert result["noisy"].shape == clean.shape and np.abs(result["noisy"] - clean.numpy()).mean() > 0.5
    result = tweedie_vs_gaussian(ignorant, clean, masks, 1.2, torch.Generator().manual_seed(0))
    assert (result["ratio"] > 1).all() and (result["gaussian_width"] > 0).all()
    again = tweedie_vs_gaussian(ignorant, clean, masks, 1.2, torch.Generator().manual_seed(0), batch_size=2)
    np.testing.assert_allclose(again["ratio"], result["ratio"], rtol=1e-6)


def test_tweedie_vs_gaussian_refuses_a_ve_prior():
    prior = VarianceExplodingPrior(DiffusionPrior(_ZeroNoise(), VPSchedule(), size_multiple=4), VESchedule())
    with pytest.raises(InputError, match="VP"):
        tweedie_vs_gaussian(prior, torch.ones(1, 4, 4), torch.ones(1, 4, 4), 1.0, torch.Generator())
