from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.classical.penalties import QuadraticPenalty, RelativeDifferencePenalty, bowsher_selection
from diffrecon.classical.pet import map_em, mlem, osem
from diffrecon.physics.pet_simulation import simulate_pet
from tests.physics.pet_fixtures import cylinder, tiny_grid, tiny_scanner


@pytest.fixture(scope="module")
def phantom():
    """Warm cylinder with a hot rod, on the tiny 3D scanner, at low counts."""
    grid = tiny_grid()
    activity = cylinder(grid, 18.0)
    x, y = np.meshgrid(grid.axis_mm(0), grid.axis_mm(1), indexing="ij")
    activity[torch.tensor((x - 6) ** 2 + y ** 2 <= 16)] = 4.0
    simulation = simulate_pet(activity, cylinder(grid, 20.0, 0.0096), tiny_scanner(2), grid,
                              trues_per_plane=3e3, psf_fwhm_mm=None, seed=1)
    background = cylinder(grid, 12.0).bool() & (activity == 1.0)
    return simulation, background


def test_mlem_log_likelihood_is_non_decreasing(phantom):
    simulation, _ = phantom
    result = mlem(simulation.measured, simulation.model, iterations=12, progress=False)
    increments = np.diff(result.log_likelihood)
    assert np.all(increments >= -1e-6 * abs(result.log_likelihood[-1]))
    assert result.log_likelihood[-1] > result.log_likelihood[0]


def test_osem_with_one_subset_is_mlem(phantom):
    simulation, _ = phantom
    a = mlem(simulation.measured, simulation.model, iterations=3, progress=False)
    b = osem(simulation.measured, simulation.model, iterations=3, n_subsets=1, progress=False)
    torch.testing.assert_close(a.image, b.image)
    assert a.log_likelihood == b.log_likelihood


def test_mlem_recovers_a_known_image_from_noiseless_data():
    grid = tiny_grid()
    activity = cylinder(grid, 15.0) * (1 + torch.linspace(0, 1, grid.shape[2]))[None, None]
    simulation = simulate_pet(activity, torch.zeros(grid.shape), tiny_scanner(3), grid, trues_per_plane=1e5,
                              background_fraction=0.2, psf_fwhm_mm=None, noise=False)
    result = osem(simulation.measured, simulation.model, iterations=30, n_subsets=4, progress=False)
    inner = cylinder(grid, 12.0).bool()
    inner[:, :, [0, -1]] = False  # end planes are sampled by fewer LORs
    error = (result.image[inner] - activity[inner]).norm() / activity[inner].norm()
    assert error < 0.06


def test_fov_mask_and_initial_image_are_used(phantom):
    """Voxels outside the FOV mask stay 0; EM is multiplicative, so an initial image's zeros stay zero and one
    iteration from a given start is the second iteration of a run that reached that start."""
    simulation, _ = phantom
    grid = tiny_grid()
    fov = cylinder(grid, 14.0).bool()
    masked = mlem(simulation.measured, simulation.model, iterations=3, fov_mask=fov, progress=False).image
    assert masked[~fov].abs().max() == 0 and masked[fov].min() > 0
    start = mlem(simulation.measured, simulation.model, iterations=1, progress=False).image
    resumed = mlem(simulation.measured, simulation.model, iterations=1, initial=start, progress=False).image
    two = mlem(simulation.measured, simulation.model, iterations=2, progress=False).image
    torch.testing.assert_close(resumed, two)
    holed = start.clone()
    holed[fov] = 0
    assert mlem(simulation.measured, simulation.model, iterations=2, initial=holed, progress=False).image[fov].max() == 0


def test_map_rdp_has_lower_background_noise_than_mlem(phantom):
    simulation, background = phantom
    grid = simulation.model.grid
    ml = osem(simulation.measured, simulation.model, iterations=6, n_subsets=4, progress=False).image
    penalty = RelativeDifferencePenalty(beta=2.0, shape=grid.shape, voxel_size_mm=grid.voxel_size_mm)
    result = map_em(simulation.measured, simulation.model, penalty, iterations=6, n_subsets=4, progress=False)
    cov = lambda image: (image[background].std() / image[background].mean()).item()  # noqa: E731
    assert cov(result.image) < 0.7 * cov(ml)
    assert result.objective[-1] > result.objective[0]
    for image in (ml, result.image):
        assert image.min() >= 0


def test_bowsher_uses_the_anatomy_to_keep_edges(phantom):
    simulation, background = phantom
    grid = simulation.model.grid
    anatomy = simulation.activity.clone()  # an MR with the same boundaries as the PET
    selection = bowsher_selection(anatomy, n_selected=8)
    bowsher = QuadraticPenalty(beta=0.5, shape=grid.shape, voxel_size_mm=grid.voxel_size_mm, selection=selection)
    plain = QuadraticPenalty(beta=0.5, shape=grid.shape, voxel_size_mm=grid.voxel_size_mm)
    hot = simulation.activity == 4.0
    contrast = {}
    for name, penalty in (("bowsher", bowsher), ("quadratic", plain)):
        image = map_em(simulation.measured, simulation.model, penalty, iterations=6, n_subsets=4,
                       progress=False).image
        contrast[name] = (image[hot].mean() / image[background].mean()).item()
        assert image.min() >= 0
    assert contrast["bowsher"] > contrast["quadratic"]


@pytest.mark.parametrize("penalty_class", [RelativeDifferencePenalty, QuadraticPenalty])
def test_penalty_gradient_matches_autograd_with_asymmetric_weights(penalty_class):
    shape = (6, 5, 4)
    anatomy = torch.rand(shape)
    penalty = penalty_class(beta=1.3, shape=shape, voxel_size_mm=(2.0, 2.0, 3.0),
                            selection=bowsher_selection(anatomy, n_selected=5))
    x = (torch.rand(2, *shape) + 0.1).double().requires_grad_(True)
    penalty.value(x).sum().backward()
    torch.testing.assert_close(penalty.gradient(x.detach()), x.grad)
    # the curvature is the Hessian diagonal: compare with finite differences of the gradient at a few voxels
    x = x.detach()
    curvature = penalty.curvature(x)
    for voxel in [(0, 2, 2, 1), (1, 0, 4, 3), (0, 5, 0, 0)]:
        step = torch.zeros_like(x)
        step[voxel] = 1e-6
        second = (penalty.gradient(x + step)[voxel] - penalty.gradient(x - step)[voxel]) / 2e-6
        assert curvature[voxel].item() == pytest.approx(second.item(), rel=1e-4)


def test_bad_reconstruction_inputs_are_refused(phantom):
    simulation, _ = phantom
    with pytest.raises(InputError, match="iterations"):
        mlem(simulation.measured, simulation.model, iterations=0)
    with pytest.raises(InputError, match="initial image contains"):
        mlem(simulation.measured, simulation.model, iterations=1, initial=-torch.ones(simulation.model.grid.shape))
    with pytest.raises(InputError, match="fov_mask has shape"):
        mlem(simulation.measured, simulation.model, iterations=1, fov_mask=torch.ones(3, 3, 3))
    with pytest.raises(InputError, match="measured sinogram contains"):
        mlem(simulation.measured - 1e6, simulation.model, iterations=1)
    with pytest.raises(InputError, match="n_selected"):
        bowsher_selection(torch.rand(4, 4, 4), n_selected=27)
    with pytest.raises(InputError, match="beta"):
        RelativeDifferencePenalty(beta=-1, shape=(4, 4, 4), voxel_size_mm=(1, 1, 1))
