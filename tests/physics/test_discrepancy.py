"""The expected misfit of the truth: the Poisson expected deviance against Monte Carlo, the count check, and the
k-space noise estimate on noise of known σ."""
from __future__ import annotations

import math

import pytest
import torch

from diffrecon.physics.discrepancy import kspace_noise_sigma, non_count_reason, poisson_expected_deviance
from diffrecon.physics.mri_fft import fft_centered


@pytest.mark.parametrize("mean", [0.02, 0.3, 1.0, 4.0, 30.0, 49.9, 50.1, 400.0])
def test_expected_poisson_deviance_matches_monte_carlo(mean):
    draws = torch.poisson(torch.full((400_000,), mean, dtype=torch.float64), torch.Generator().manual_seed(1))
    deviance = 2 * (mean - draws + torch.xlogy(draws, draws) - torch.xlogy(draws, torch.tensor(mean)))
    standard_error = float(deviance.std()) / math.sqrt(draws.numel())
    expected = float(poisson_expected_deviance(torch.tensor(mean)))
    assert expected == pytest.approx(float(deviance.mean()), abs=4 * standard_error)


def test_expected_deviance_is_low_for_near_empty_bins_and_one_for_full_ones():
    values = poisson_expected_deviance(torch.tensor([0.0, 1e-9, 0.01, 1e4]))
    assert values[0] == 0 and 0 < values[1] < values[2] < 0.1  # "one per bin" is far too loose at low counts
    assert values[3] == pytest.approx(1.0, abs=1e-4)


def test_data_that_are_not_counts_are_named():
    counts = torch.poisson(torch.full((3, 8, 9), 4.0), torch.Generator().manual_seed(0))
    assert non_count_reason(counts) is None
    assert "not whole counts" in non_count_reason(counts * 0.37)
    assert "negative" in non_count_reason(counts - 2)


def _noise(shape, sigma, seed=0):
    return sigma * torch.randn(shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("coils", [1, 8])
def test_noise_of_known_sigma_is_estimated_from_line_masked_kspace_with_an_object(coils):
    """Cartesian lines: the background of hybrid space; an object in the middle of the field of view."""
    image = torch.zeros(96, 96, dtype=torch.complex64)
    image[30:66, 24:72] = 40.0
    mask = torch.zeros(96, 96, dtype=torch.bool)
    mask[:, ::3] = True
    mask[:, 42:54] = True
    kspace = (fft_centered(image.expand(coils, 96, 96)) + _noise((coils, 96, 96), 0.5)) * mask
    assert kspace_noise_sigma(kspace, mask) == pytest.approx(0.5, rel=0.1)


def test_noise_is_estimated_from_the_periphery_of_a_2d_mask_and_refused_without_samples():
    mask = torch.rand(96, 96, generator=torch.Generator().manual_seed(2)) < 0.3
    smooth = torch.exp(-((torch.arange(96) - 48.0) ** 2) / 200)
    image = (smooth[:, None] * smooth[None]).to(torch.complex64) * 30
    kspace = (fft_centered(image) + _noise((96, 96), 0.2)) * mask
    assert kspace_noise_sigma(kspace, mask) == pytest.approx(0.2, rel=0.1)
    centre = torch.zeros(96, 96, dtype=torch.bool)
    centre[40:56, 40:56] = True
    assert kspace_noise_sigma(kspace * centre, centre) is None
