from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.metrics import background_cov, bias_and_variance, crc, nrmse, psnr, ssim


def test_identical_images():
    reference = np.random.default_rng(0).random((24, 24, 12))
    assert psnr(reference, reference) == float("inf")
    assert ssim(reference, reference) == pytest.approx(1.0)
    assert nrmse(reference, reference) == 0.0


def test_known_values():
    reference = np.linspace(0, 2, 400).reshape(20, 20)
    scaled = 1.1 * reference
    assert nrmse(scaled, reference) == pytest.approx(0.1)
    mse = np.mean((0.1 * reference) ** 2)
    assert psnr(scaled, reference) == pytest.approx(10 * np.log10(4 / mse))
    assert psnr(torch.tensor(scaled), torch.tensor(reference)) == pytest.approx(psnr(scaled, reference))


def test_ssim_drops_with_noise_in_2d_and_3d():
    rng = np.random.default_rng(1)
    for shape in ((32, 32), (16, 16, 16)):
        reference = rng.random(shape)
        slightly = reference + 0.05 * rng.standard_normal(shape)
        very = reference + 0.5 * rng.standard_normal(shape)
        assert 1 > ssim(slightly, reference) > ssim(very, reference)


def _smooth_pair(shape, offset):
    grids = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    reference = offset + np.sin(grids[0] / 3) * np.cos(grids[1] / 5)
    return reference + 0.3 * np.sin(grids[0] * grids[1] / 7 + grids[-1]), reference


@pytest.mark.parametrize(("shape", "offset", "expected"), [
    ((32, 32), 0.0, 0.7277704244225666), ((32, 32), 100.0, 0.7278440195628535),
    ((16, 18, 14), 0.0, 0.681614542151995), ((16, 18, 14), 100.0, 0.6855034234859536)])
def test_ssim_matches_skimage(shape, offset, expected):
    # expected: skimage 0.26 structural_similarity(image, reference, data_range=np.ptp(reference),
    # gaussian_weights=True, sigma=1.5, use_sample_covariance=False). MONAI 1.6's SSIM (float32) gave 0.79
    # where skimage gives 0.117 for a smoothed random 3D image with offset 100.
    image, reference = _smooth_pair(shape, offset)
    assert ssim(image, reference) == pytest.approx(expected, abs=1e-9)
    assert ssim(1e4 * image, 1e4 * reference) == pytest.approx(ssim(image, reference), abs=1e-9)


def test_ssim_mask_averages_part_of_the_map():
    image, reference = _smooth_pair((32, 32), 0.0)
    image[:16] = reference[:16]
    top = np.zeros(image.shape, dtype=bool)
    top[:10] = True
    assert ssim(image, reference, top) == pytest.approx(1.0)
    assert ssim(image, reference, ~top) < ssim(image, reference) < 1
    with pytest.raises(InputError, match="border"):
        ssim(image, reference, np.pad(np.ones((2, 32), dtype=bool), ((0, 30), (0, 0))))


def test_crc_and_background_cov():
    reference = np.ones((10, 10, 10))
    lesion = np.zeros_like(reference, dtype=bool)
    lesion[4:6, 4:6, 4:6] = True
    reference[lesion] = 3.0
    background = ~lesion
    assert crc(reference, reference, lesion, background) == pytest.approx(1.0)
    assert crc(np.ones_like(reference), reference, lesion, background) == pytest.approx(0.0)
    half = reference.copy()
    half[lesion] = 2.0
    assert crc(half, reference, lesion, background) == pytest.approx(0.5)
    noisy = np.where(background, 1 + 0.1 * np.random.default_rng(2).standard_normal(reference.shape), 3.0)
    assert background_cov(noisy, background) == pytest.approx(0.1, rel=0.15)


def test_bias_and_variance_of_known_noise():
    rng = np.random.default_rng(3)
    reference = np.full((8, 8, 8), 2.0)
    realisations = reference * 1.1 + 0.2 * rng.standard_normal((200, 8, 8, 8))
    bias, variance = bias_and_variance(realisations, reference)
    assert bias == pytest.approx(0.1, abs=0.01)  # 10% multiplicative bias
    assert variance == pytest.approx(0.04 / 4, rel=0.05)


def test_bad_metric_inputs():
    with pytest.raises(InputError, match="expected the reference's shape"):
        nrmse(np.ones((3, 3)), np.ones((3, 4)))
    with pytest.raises(InputError, match="mask is empty"):
        nrmse(np.ones((3, 3)), np.ones((3, 3)), np.zeros((3, 3)))
    with pytest.raises(InputError, match="no contrast"):
        crc(np.ones((3, 3)), np.ones((3, 3)), np.eye(3), 1 - np.eye(3))
    with pytest.raises(InputError, match="image contains 1 NaN/Inf"):
        psnr(np.array([[np.nan, 1.0]]), np.ones((1, 2)))
    with pytest.raises(InputError, match="realisations contains"):
        bias_and_variance(np.array([[1.0, 2.0], [np.inf, 1.0]]), np.ones(2))
    with pytest.raises(InputError, match="at least 2"):
        bias_and_variance(np.ones((1, 3, 3)), np.ones((3, 3)))
