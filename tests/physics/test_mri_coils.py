"""Coil combination and ESPIRiT maps on simulated multi-coil data."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.physics.mri_coils import birdcage_maps, espirit_maps, rss, sense_combine, sense_operator
from diffrecon.physics.mri_fft import fft_centered
from diffrecon.physics.mri_masks import sampling_mask


def _disc(n: int = 48) -> torch.Tensor:
    grid = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")) - n / 2 + 0.5
    return ((grid ** 2).sum(0) < (0.4 * n) ** 2).to(torch.complex128) * (1 + 0.3 * torch.cos(grid[0] / 5))


def test_rss_and_sense_combine_recover_the_magnitude_and_image():
    image = _disc()
    maps = birdcage_maps(image.shape, 6, dtype=torch.complex128)
    coil_images = maps * image
    assert torch.allclose(rss(coil_images), image.abs())
    assert torch.allclose(sense_combine(coil_images, maps), image)


def test_espirit_maps_explain_the_coil_images():
    image = _disc()
    maps = birdcage_maps(image.shape, 4, dtype=torch.complex128)
    estimated = espirit_maps(fft_centered(maps * image), calibration=20)
    assert estimated.shape == maps.shape and estimated.dtype == torch.complex128
    inside = image.abs() > 0.5
    # ESPIRiT maps equal the true maps up to one phase per voxel: the projection conj(S_est)·S is unimodular.
    overlap = (estimated.conj() * maps).sum(0).abs()[inside]
    assert overlap.min() > 0.95


def test_espirit_refuses_a_calibration_smaller_than_its_kernel():
    with pytest.raises(InputError, match="calibration 4 must exceed kernel_width 6"):
        espirit_maps(torch.ones(2, 16, 16, dtype=torch.complex64), calibration=4)


def test_birdcage_refuses_zero_coils():
    with pytest.raises(InputError, match="n_coils must be >= 1"):
        birdcage_maps((8, 8), 0)


def test_sense_operator_maps_from_a_narrow_calibration_region_match_the_coils():
    # 10 calibration lines (an 8% centre of 128): a kernel of 6 would leave 25 calibration patches for 288 unknowns
    image = _disc(64)
    maps = birdcage_maps(image.shape, 8, dtype=torch.complex128)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[:, 27:37] = True
    mask[:, ::4] = True
    noise = torch.randn(8, 64, 64, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    kspace = (fft_centered(maps * image) + 0.2 * noise) * mask
    estimated = sense_operator(kspace, mask).coil_maps
    overlap = (estimated.conj() * maps).sum(0).abs()[image.abs() > 0.5]
    assert overlap.quantile(0.01) > 0.985  # a kernel of 6 gives 0.978, of 3 0.991


def test_sense_operator_takes_odd_sized_k_space():
    """21 x 27 k-space with a centre of 4 lines: all 4 are the calibration region."""
    image = _disc(27)[3:24]
    maps = birdcage_maps(image.shape, 4, dtype=torch.complex128)
    mask = sampling_mask("random", image.shape, 4, center_fraction=0.15, seed=0).mask
    estimated = sense_operator(fft_centered(maps * image) * mask, mask).coil_maps
    assert estimated.shape == (4, 21, 27)
    assert (estimated.conj() * maps).sum(0).abs()[image.abs() > 0.5].min() > 0.8  # coarse maps from 4 lines


def test_sense_operator_refuses_a_kernel_as_wide_as_the_calibration_region():
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:, 12:20] = True
    with pytest.raises(InputError, match="kernel_width 8 must be smaller than the fully sampled centre of 8"):
        sense_operator(torch.ones(2, 32, 32, dtype=torch.complex64) * mask, mask, kernel_width=8)
