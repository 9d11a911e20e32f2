"""Centred FFTs, the single-coil and SENSE operators (adjointness, errors) and k-space simulation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.physics.mri_coils import birdcage_maps
from diffrecon.physics.mri_fft import fft_centered, ifft_centered, remove_readout_oversampling
from diffrecon.physics.mri_masks import sampling_mask
from diffrecon.physics.mri_operators import MRIOperator
from diffrecon.physics.mri_simulation import simulate_kspace


def _adjoint_gap(operator: MRIOperator, batch: tuple[int, ...] = (2,)) -> float:
    x = torch.randn(*batch, *operator.shape, dtype=torch.complex128)
    y = torch.randn(*batch, *operator.kspace_shape, dtype=torch.complex128)
    lhs = torch.vdot(operator.A(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), operator.A_adjoint(y).flatten())
    return float(abs(lhs - rhs) / abs(lhs))


@pytest.mark.parametrize("shape", [(7, 6), (5, 6, 4)])
def test_fft_centered_matches_numpy_and_is_orthonormal(shape):
    x = torch.randn(3, *shape, dtype=torch.complex128)
    axes = tuple(range(-len(shape), 0))
    expected = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x.numpy(), axes), axes=axes, norm="ortho"), axes)
    k = fft_centered(x, len(shape))
    assert np.allclose(k.numpy(), expected)
    assert torch.allclose(ifft_centered(k, len(shape)), x)
    assert torch.allclose(k.abs().pow(2).sum(), x.abs().pow(2).sum())  # Parseval


def test_fft_rejects_real_input_naming_it():
    with pytest.raises(InputError, match="image must be a complex"):
        fft_centered(torch.ones(4, 4))


def test_remove_readout_oversampling_keeps_the_central_image():
    image = torch.zeros(16, 6, dtype=torch.complex64)
    image[4:12] = torch.randn(8, 6, dtype=torch.complex64)
    cropped = remove_readout_oversampling(fft_centered(image), dim=0, factor=2)
    assert cropped.shape == (8, 6)
    assert torch.allclose(ifft_centered(cropped), image[4:12], atol=1e-5)


@pytest.mark.parametrize("shape", [(12, 10), (8, 6, 4)])
@pytest.mark.parametrize("coils", [0, 4])
def test_operators_have_exact_adjoints(shape, coils):
    mask = sampling_mask("random", shape, 2, seed=3).mask
    maps = birdcage_maps(shape, coils, dtype=torch.complex128) if coils else None
    assert _adjoint_gap(MRIOperator(mask, maps)) < 1e-5


def test_sense_operator_with_batched_maps_is_adjoint():
    maps = torch.randn(2, 3, 6, 5, dtype=torch.complex128)
    assert _adjoint_gap(MRIOperator(torch.ones(6, 5, dtype=torch.bool), maps)) < 1e-5


def test_fully_sampled_single_coil_operator_is_unitary():
    x = torch.randn(6, 5, dtype=torch.complex128)
    operator = MRIOperator(torch.ones(6, 5, dtype=torch.bool))
    assert torch.allclose(operator.normal(x), x)


def test_coil_maps_of_the_wrong_shape_are_named():
    with pytest.raises(InputError, match="coil_maps has shape"):
        MRIOperator(torch.ones(8, 8, dtype=torch.bool), torch.ones(4, 8, 7, dtype=torch.complex64))


def test_check_kspace_rejects_real_nan_and_wrong_shape():
    operator = MRIOperator(torch.ones(4, 4, dtype=torch.bool), torch.ones(2, 4, 4, dtype=torch.complex64))
    with pytest.raises(InputError, match="kspace must be a complex"):
        operator.check_kspace(torch.ones(2, 4, 4))
    with pytest.raises(InputError, match=r"expected trailing shape \(2, 4, 4\)"):
        operator.check_kspace(torch.ones(3, 4, 4, dtype=torch.complex64))
    bad = torch.ones(2, 4, 4, dtype=torch.complex64)
    bad[0, 1, 1] = float("nan")
    with pytest.raises(InputError, match="NaN/Inf"):
        operator.check_kspace(bad)


def test_simulated_noise_has_the_requested_snr():
    image = torch.rand(64, 64, dtype=torch.float64)
    mask = sampling_mask("random", (64, 64), 2, seed=0).mask
    maps = birdcage_maps((64, 64), 4, dtype=torch.complex128)
    clean, operator = simulate_kspace(image, mask, maps)
    noisy, _ = simulate_kspace(image, mask, maps, snr_db=20, seed=1)
    sampled = mask.expand_as(clean)
    rms = [values[sampled].abs().pow(2).mean().sqrt() for values in (clean, noisy - clean)]
    snr = 20 * torch.log10(rms[0] / rms[1])
    assert abs(float(snr) - 20) < 0.3
    assert torch.all(noisy[~sampled] == 0)
    assert operator.n_coils == 4
    again, _ = simulate_kspace(image, mask, maps, snr_db=20, seed=1)
    assert torch.equal(noisy, again)


def test_simulation_rejects_an_image_that_does_not_match_the_mask():
    with pytest.raises(InputError, match="image has shape"):
        simulate_kspace(torch.rand(8, 9), torch.ones(8, 8, dtype=torch.bool))
