"""The data-fidelity objects: gradients equal to autograd's (through the PET model's adjoint) and to finite
differences, deviance >= 0 and zero at a perfect fit, about one per measurement at the truth."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.classical.pet import em_ascent_step
from diffrecon.physics.fidelity import GaussianLeastSquares, PoissonLikelihood
from diffrecon.physics.mri_masks import sampling_mask
from diffrecon.physics.mri_operators import MRIOperator
from diffrecon.physics.pet_simulation import simulate_pet
from tests.physics.pet_fixtures import cylinder, tiny_grid, tiny_scanner


@pytest.fixture(scope="module")
def pet():
    grid = tiny_grid(4)
    activity = cylinder(grid, 15.0, 2.0)
    scan = simulate_pet(activity, cylinder(grid, 18.0, 0.0096), tiny_scanner(1, n_rings=4), grid,
                        trues_per_plane=5e4, psf_fwhm_mm=6.0, seed=1)
    return PoissonLikelihood(scan.model, scan.measured), activity


def test_poisson_gradient_is_autograds_and_a_finite_difference(pet):
    fidelity, activity = pet
    image = (activity + 0.3 * torch.rand(activity.shape, generator=torch.Generator().manual_seed(0)))[None]
    leaf = image.clone().requires_grad_(True)
    fidelity.value(leaf).sum().backward()
    torch.testing.assert_close(leaf.grad, fidelity.gradient(image), rtol=1e-4, atol=1e-3)
    direction = torch.rand(image.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = 1e-3
    change = (fidelity.value((image + h * direction).float()) - fidelity.value((image - h * direction).float())) / (2 * h)
    slope = (fidelity.gradient(image).double() * direction).sum()
    assert float(change) == pytest.approx(float(slope), rel=2e-2)


def test_the_differentiable_em_step_is_the_mlem_step_and_raises_the_likelihood(pet):
    fidelity, activity = pet
    image = (0.5 + torch.rand(activity.shape, generator=torch.Generator().manual_seed(2)))[None]
    step = fidelity.em_step(image)
    torch.testing.assert_close(step, em_ascent_step(image, fidelity.data, fidelity.model))
    assert float(fidelity.value(step)) > float(fidelity.value(image))
    leaf = image.clone().requires_grad_(True)
    fidelity.deviance(fidelity.em_step(leaf)).sum().backward()  # through the step: the adjoint's backward pass
    direction = torch.rand(image.shape, generator=torch.Generator().manual_seed(3))
    h = 1e-2
    change = (fidelity.deviance(fidelity.em_step(image + h * direction))
              - fidelity.deviance(fidelity.em_step(image - h * direction))) / (2 * h)
    assert float(change) == pytest.approx(float((leaf.grad * direction).sum()), rel=2e-2)


def test_poisson_deviance_is_zero_at_a_perfect_fit_and_about_one_per_bin_at_the_truth(pet):
    fidelity, activity = pet
    expected = fidelity.expected(activity[None])[0]
    perfect = PoissonLikelihood(fidelity.model, expected)
    assert float(perfect.deviance(activity[None])) == pytest.approx(0.0, abs=1e-2 * expected.numel() ** 0.5)
    per_bin = float(fidelity.deviance(activity[None])) / fidelity.data.numel()
    assert 0.8 < per_bin < 1.2, per_bin
    assert (fidelity.deviance(torch.stack([activity, 0.5 * activity])) > 0).all()


def test_gaussian_gradient_is_autograds_and_deviance_counts_the_noise():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(16, 16, generator=generator, dtype=torch.complex64)
    mask = sampling_mask("random", (16, 16), 2, center_fraction=0.25, seed=0).mask
    operator = MRIOperator(mask)
    sigma = 0.1
    noise = sigma * torch.randn(16, 16, generator=generator, dtype=torch.complex64)  # variance σ² per sample
    fidelity = GaussianLeastSquares(operator, operator.A(truth) + noise, sigma)
    image = torch.randn(2, 16, 16, generator=generator, dtype=torch.complex64)
    leaf = image.clone().requires_grad_(True)
    fidelity.value(leaf).sum().backward()
    # torch's gradient of a real function of a complex leaf is ∂f/∂Re + i ∂f/∂Im, the convention of gradient()
    torch.testing.assert_close(leaf.grad, fidelity.gradient(image), rtol=1e-4, atol=1e-4)
    samples = int(mask.sum())
    assert 0.8 < float(fidelity.deviance(truth[None])) / samples < 1.2  # |n|² / σ² is about 1 per complex sample
    with pytest.raises(InputError, match="sigma must be a finite number > 0"):
        GaussianLeastSquares(operator, operator.A(truth), 0.0)
