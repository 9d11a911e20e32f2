"""Zero-filled, CG-SENSE and TV reconstruction on simulated data: known-image recovery, objectives, errors."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.classical.mri import cg_sense, zero_filled
from diffrecon.classical.mri_tv import gradient, gradient_adjoint, tv_reconstruct
from diffrecon.physics.mri_coils import birdcage_maps
from diffrecon.physics.mri_masks import sampling_mask
from diffrecon.physics.mri_simulation import simulate_kspace


def _phantom(n: int = 32) -> torch.Tensor:
    image = torch.zeros(n, n, dtype=torch.complex128)
    image[n // 8:-n // 8, n // 4:-n // 4] = 1.0
    image[n // 3:n // 2, n // 3:n // 2] = 2.0
    return image


def _error(image: torch.Tensor, truth: torch.Tensor) -> float:
    return float((image.abs() - truth.abs()).norm() / truth.abs().norm())


def test_zero_filled_of_full_data_is_the_image():
    truth = _phantom()
    maps = birdcage_maps(truth.shape, 4, dtype=torch.complex128)
    kspace, operator = simulate_kspace(truth, torch.ones(truth.shape, dtype=torch.bool), maps)
    assert _error(zero_filled(kspace, operator, "rss").image, truth) < 1e-10
    assert torch.allclose(zero_filled(kspace, operator, "sense").image, truth)
    single, op1 = simulate_kspace(truth, torch.ones(truth.shape, dtype=torch.bool))
    assert torch.allclose(zero_filled(single, op1).image, truth)


def test_cg_sense_recovers_the_image_from_undersampled_multicoil_data():
    truth = _phantom()
    mask = sampling_mask("equispaced", truth.shape, 2, center_fraction=0.1, seed=0).mask
    kspace, operator = simulate_kspace(truth, mask, birdcage_maps(truth.shape, 8, dtype=torch.complex128))
    result = cg_sense(kspace, operator, iterations=30)
    assert _error(result.image, truth) < 1e-3 < _error(zero_filled(kspace, operator).image, truth)
    assert len(result.objective) == 30 and result.objective[-1] < 1e-6 * result.objective[0]


@pytest.mark.parametrize("coils", [0, 4])
def test_tv_beats_zero_filled_on_a_piecewise_constant_image(coils):
    truth = _phantom()
    mask = sampling_mask("random", truth.shape, 4, seed=0).mask
    maps = birdcage_maps(truth.shape, coils, dtype=torch.complex128) if coils else None
    kspace, operator = simulate_kspace(truth, mask, maps, snr_db=30)
    result = tv_reconstruct(kspace, operator, lam=0.01, iterations=300)
    assert _error(result.image, truth) < 0.6 * _error(zero_filled(kspace, operator).image, truth)
    assert result.objective[-1] < result.objective[0]


def test_gradient_adjoint_is_exact_in_3d():
    x = torch.randn(2, 5, 4, 3, dtype=torch.complex128)
    field = torch.randn(3, 2, 5, 4, 3, dtype=torch.complex128)
    lhs = torch.vdot(gradient(x, 3).flatten(), field.flatten())
    assert abs(lhs - torch.vdot(x.flatten(), gradient_adjoint(field, 3).flatten())) < 1e-10


def test_bad_options_are_named():
    truth = _phantom(16)
    kspace, operator = simulate_kspace(truth, torch.ones(16, 16, dtype=torch.bool))
    with pytest.raises(InputError, match="iterations must be >= 1"):
        cg_sense(kspace, operator, iterations=0)
    with pytest.raises(InputError, match="lam must be > 0"):
        tv_reconstruct(kspace, operator, lam=-1)
    with pytest.raises(InputError, match="unknown combine 'mean'"):
        zero_filled(kspace, operator, "mean")
    with pytest.raises(InputError, match="kspace must be a complex"):
        cg_sense(kspace.real, operator)
