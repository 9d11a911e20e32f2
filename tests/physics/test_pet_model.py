from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.physics.geometry import PRESET_NAMES, get_preset
from diffrecon.physics.pet import PETAcquisitionModel, attenuation_factors, subset_views
from diffrecon.physics.pet_simulation import count_fraction, simulate_pet, trues_per_direct_plane
from diffrecon.physics.projector import PETProjector
from diffrecon.physics.psf import GaussianPSF
from tests.physics.pet_fixtures import cylinder, tiny_grid, tiny_scanner


@pytest.fixture(scope="module")
def model() -> PETAcquisitionModel:
    projector = PETProjector(tiny_scanner(3), tiny_grid())
    generator = torch.Generator().manual_seed(3)
    shape = projector.sinogram_shape()
    return PETAcquisitionModel(projector, multiplicative=0.5 + torch.rand(shape, generator=generator),
                               additive=torch.full(shape, 0.2), psf_fwhm_mm=5.0)


def test_model_adjoint_with_psf_and_factors(model):
    x = torch.rand(2, *model.grid.shape)
    y = torch.rand(2, *model.data_shape)
    lhs = (model.linear(x).double() * y.double()).sum()
    rhs = (x.double() * model.adjoint(y).double()).sum()
    assert abs(lhs - rhs).item() / lhs.item() < 1e-4


@pytest.mark.parametrize("psf_fwhm_mm", [None, 5.0])
def test_a_and_a_adjoint_take_unbatched_images(model, psf_fwhm_mm):
    model = PETAcquisitionModel(model.projector, model.multiplicative, model.additive, psf_fwhm_mm=psf_fwhm_mm)
    x, y = torch.rand(2, *model.grid.shape), torch.rand(2, *model.data_shape)
    torch.testing.assert_close(model.A(x[1]), model.A(x)[1])
    torch.testing.assert_close(model.A(x), model.linear(x))
    torch.testing.assert_close(model.A_adjoint(y[0]), model.A_adjoint(y)[0])
    torch.testing.assert_close(model.forward(x[0]), model.A(x[0]) + model.additive)


def test_psf_is_self_adjoint_and_keeps_interior_counts():
    psf = GaussianPSF((6.0, 6.0, 4.0), (2.0, 2.0, 2.0))
    x, y = torch.rand(2, 20, 20, 20), torch.rand(2, 20, 20, 20)
    assert (psf(x) * y).sum().item() == pytest.approx((x * psf.adjoint(y)).sum().item(), rel=1e-5)
    point = torch.zeros(1, 20, 20, 20)
    point[0, 10, 10, 10] = 1.0
    blurred = psf(point)
    assert blurred.sum().item() == pytest.approx(1.0, rel=1e-5)
    profile = blurred[0, :, 10, 10]
    # FWHM 6 mm = 3 voxels: the value 1.5 voxels from the centre is half the peak (within sampling error)
    half = (profile[8] + profile[9]) / 2  # linear estimate at 1.5 voxels
    assert half.item() == pytest.approx(profile[10].item() / 2, rel=0.15)


def test_gradient_matches_autograd_of_log_likelihood(model):
    x = (torch.rand(1, *model.grid.shape) + 0.1).requires_grad_(True)
    y = torch.poisson(model.forward(x.detach()))
    model.log_likelihood(x, y).sum().backward()
    torch.testing.assert_close(model.gradient(x.detach(), y), x.grad, rtol=1e-3, atol=1e-3)


def test_subset_gradients_sum_to_the_full_gradient(model):
    x = torch.rand(1, *model.grid.shape) + 0.1
    y = torch.poisson(model.forward(x))
    subsets = subset_views(model.projector.n_views, 4)
    assert sorted(v for s in subsets for v in s) == list(range(model.projector.n_views))
    total = sum(model.gradient(x, y, views) for views in subsets)
    torch.testing.assert_close(total, model.gradient(x, y), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(sum(model.sensitivity(v) for v in subsets), model.sensitivity(), rtol=1e-4, atol=1e-4)


def test_likelihood_is_maximal_at_the_noiseless_truth(model):
    x = torch.rand(1, *model.grid.shape) + 0.1
    y = model.forward(x)
    best = model.log_likelihood(x, y)
    for factor in (0.9, 1.1):
        assert model.log_likelihood(x * factor, y) < best


def test_bad_data_and_factors_are_refused(model):
    with pytest.raises(InputError, match="negative"):
        model.check_data(-torch.ones(model.data_shape))
    with pytest.raises(InputError, match="NaN"):
        model.check_data(torch.full(model.data_shape, float("nan")))
    with pytest.raises(InputError, match="sinogram has shape"):
        model.check_data(torch.ones(3, 16, 24))
    with pytest.raises(InputError, match="multiplicative factors have shape"):
        PETAcquisitionModel(model.projector, multiplicative=torch.ones(3, 3))
    with pytest.raises(InputError, match="additive factors contains 1 NaN"):
        bad = torch.ones(model.data_shape)
        bad[0, 0, 0] = float("nan")
        PETAcquisitionModel(model.projector, additive=bad)
    with pytest.raises(InputError, match="n_subsets"):
        subset_views(16, 17)
    with pytest.raises(InputError, match="sinogram holds no counts"):
        model.check_data(torch.zeros(model.data_shape))
    with pytest.raises(InputError, match=r"holds no counts \(batch items \[1\]\)"):
        model.check_data(torch.stack([torch.ones(model.data_shape), torch.zeros(model.data_shape)]))
    with pytest.raises(InputError, match="multiplicative factors are all zero"):
        PETAcquisitionModel(model.projector, multiplicative=torch.zeros(model.data_shape))


def test_mu_map_on_another_grid_or_in_wrong_units_is_refused(model):
    with pytest.raises(InputError, match="mu_map has shape"):
        attenuation_factors(model.projector, torch.zeros(16, 16, 9))
    with pytest.raises(InputError, match="1/mm"):
        attenuation_factors(model.projector, torch.full(model.grid.shape, 0.096 * 10))


def test_attenuation_of_a_water_cylinder():
    projector = PETProjector(tiny_scanner(0), tiny_grid())
    factors = attenuation_factors(projector, cylinder(projector.grid, 18.0, 0.0096))
    centre = projector.scanner.n_bins // 2
    # central chord of ~36 mm water (voxelised): exp(-0.0096 * 36) ~ 0.71
    assert factors[:, :, centre - 1:centre + 1].mean().item() == pytest.approx(0.71, abs=0.03)
    assert factors[:, :, 0].min().item() == pytest.approx(1.0)


def test_simulation_hits_the_requested_counts_and_is_reproducible():
    scanner, grid = tiny_scanner(2), tiny_grid()
    activity = cylinder(grid, 15.0)
    mu = cylinder(grid, 18.0, 0.0096)
    noiseless = simulate_pet(activity, mu, scanner, grid, count_level="1%", background_fraction=0.0, noise=False)
    direct = noiseless.measured[: scanner.n_rings].sum().item() / scanner.n_rings
    assert direct == pytest.approx(trues_per_direct_plane("1%"), rel=1e-4)
    first = simulate_pet(activity, mu, scanner, grid, count_level="1%", seed=5)
    again = simulate_pet(activity, mu, scanner, grid, count_level="1%", seed=5)
    other = simulate_pet(activity, mu, scanner, grid, count_level="1%", seed=6)
    assert torch.equal(first.measured, again.measured)
    assert not torch.equal(first.measured, other.measured)
    assert first.background_counts == pytest.approx(0.3 * first.true_counts, rel=1e-4)
    assert torch.equal(first.measured, first.measured.round()) and first.measured.min() >= 0
    torch.testing.assert_close(first.model.forward(activity[None])[0], first.noiseless, rtol=1e-4, atol=1e-3)


def test_any_count_level_is_a_fraction_of_the_full_one():
    assert [count_fraction(level) for level in ("full", "10%", "0.3%", 0.05, "0.05")] == \
        pytest.approx([1.0, 0.1, 0.003, 0.05, 0.05])
    assert trues_per_direct_plane("0.3%") == pytest.approx(0.003 * trues_per_direct_plane("full"))


def test_simulation_refuses_bad_requests():
    scanner, grid = tiny_scanner(0), tiny_grid()
    activity = cylinder(grid, 15.0)
    for level in ("lots", "0%", "2000%", "-0.1"):
        with pytest.raises(InputError, match=f"count_level must be 'full', a percentage .* got '{level}'"):
            simulate_pet(activity, activity * 0, scanner, grid, count_level=level)
    with pytest.raises(InputError, match="activity contains 1 negative"):
        bad = activity.clone()
        bad[0, 0, 0] = -1
        simulate_pet(bad, activity * 0, scanner, grid)
    with pytest.raises(InputError, match="activity is zero"):
        simulate_pet(activity * 0, activity * 0, scanner, grid)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_grid_is_its_scanners_field_of_view(name):
    """The grid is centred; its width and height lie inside the bins' field of view (its corners outside, as a
    scanner's cylindrical FOV) and its bounding circle inside the ring; an image plane sits on every ring and the
    end planes on the end rings, so direct sinograms need no axial interpolation and no plane is unseen."""
    scanner, grid = get_preset(name).scanner, get_preset(name).grid
    assert grid.origin_mm is None
    extent = np.multiply(grid.shape, grid.voxel_size_mm)
    assert extent[:2].max() / 2 <= scanner.n_bins * scanner.bin_size_mm / 2 + 1e-6
    assert np.hypot(*extent[:2]) / 2 < scanner.ring_radius_mm
    planes, rings = grid.axis_mm(2), scanner.ring_positions_mm
    np.testing.assert_allclose(planes[[0, -1]], rings[[0, -1]], atol=1e-6)
    assert np.abs(rings[:, None] - planes[None, :]).min(axis=1).max() < 1e-6
    assert scanner.n_views == scanner.n_detectors_per_ring // 2


@pytest.mark.parametrize("name", ["demo", "demo2d"])
def test_preset_lines_through_the_centre_cross_the_whole_grid(name):
    """Projecting a uniform image: the data have the scanner's shape, and in every sinogram (direct and oblique)
    the central lines along y (view 0) and x (the middle view) integrate the grid's height and width."""
    scanner, grid = get_preset(name).scanner, get_preset(name).grid
    projector = PETProjector(scanner, grid)
    views = [0, scanner.n_views // 2]
    lines = projector.forward(torch.ones(grid.shape), views)
    assert lines.shape == projector.sinogram_shape(views) == (scanner.data_shape[0], 2, scanner.data_shape[2])
    centre = lines[:, :, scanner.n_bins // 2 - 1:scanner.n_bins // 2 + 1]
    for view, axis in ((0, 1), (1, 0)):
        # oblique lines are longer by sqrt(1 + tilt^2), under 0.1% at ring difference 5
        length = grid.shape[axis] * grid.voxel_size_mm[axis]
        torch.testing.assert_close(centre[:, view], torch.full_like(centre[:, view], length), rtol=0.01, atol=0.0)


def test_simulation_applies_detector_normalisation():
    scanner, grid = tiny_scanner(1), tiny_grid()
    activity, mu = cylinder(grid, 15.0), cylinder(grid, 18.0, 0.0096)
    efficiencies = 0.8 + 0.4 * torch.rand(PETProjector(scanner, grid).sinogram_shape(),
                                          generator=torch.Generator().manual_seed(4))
    plain = simulate_pet(activity, mu, scanner, grid, background_fraction=0.0, noise=False)
    normalised = simulate_pet(activity, mu, scanner, grid, background_fraction=0.0, noise=False,
                              normalisation=efficiencies)
    torch.testing.assert_close(normalised.measured, plain.measured * efficiencies, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(normalised.model.multiplicative, plain.model.multiplicative * efficiencies)
    with pytest.raises(InputError, match="normalisation has shape"):
        simulate_pet(activity, mu, scanner, grid, normalisation=torch.ones(3))
