from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.classical.penalties import AnchorPenalty, QuadraticPenalty, RelativeDifferencePenalty, bowsher_selection
from diffrecon.classical.pet import em_ascent_step, map_em, mlem, osem
from diffrecon.physics.pet import PETAcquisitionModel, subset_views
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


def _cov(image: torch.Tensor, region: torch.Tensor) -> float:
    """Coefficient of variation of ``image`` in ``region``: the noise of a uniform region."""
    return (image[region].std() / image[region].mean()).item()


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


def test_mlem_reuses_the_likelihood_projection_and_matches_plain_em_steps(phantom, monkeypatch):
    """MLEM's next EM step reuses the forward projection of its log-likelihood: K iterations cost K + 1 forward
    projections (not 2K), with the same images as K plain EM steps."""
    simulation, _ = phantom
    model = simulation.model
    start = mlem(simulation.measured, model, iterations=1, progress=False).image
    plain = start[None]
    for _ in range(3):
        plain = em_ascent_step(plain, simulation.measured, model)
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs))
    result = mlem(simulation.measured, model, iterations=3, initial=start, progress=False)
    assert len(calls) == 3 + 1
    torch.testing.assert_close(result.image, plain[0])


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
    assert _cov(result.image, background) < 0.7 * _cov(ml, background)
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


def test_step_without_penalty_is_an_osem_subset_update(phantom):
    simulation, _ = phantom
    model, data = simulation.model, simulation.measured[None]
    image = osem(simulation.measured, model, iterations=1, n_subsets=4, progress=False).image[None]
    views = subset_views(model.projector.n_views, 4)[1]
    ratio = data[..., views, :] / model.forward(image, views)
    expected = image / model.sensitivity(views) * model.adjoint(ratio, views)
    torch.testing.assert_close(em_ascent_step(image, data, model, views), expected)


def test_step_with_a_strong_anchor_lands_on_the_anchor(phantom):
    simulation, _ = phantom
    model, grid = simulation.model, simulation.model.grid
    image = torch.full((2, *grid.shape), 3.0)
    anchor = torch.rand(2, *grid.shape) * 5
    step = em_ascent_step(image, simulation.measured, model, penalty=AnchorPenalty(1e9, anchor))
    torch.testing.assert_close(step, anchor, rtol=1e-4, atol=1e-4)


def _large_units(simulation, factor: float) -> PETAcquisitionModel:
    """The same acquisition with activity in ``factor``-times larger units (multiplicative factors / factor)."""
    model = simulation.model
    return PETAcquisitionModel(model.projector, model.multiplicative / factor, model.additive)


def _best_constant_objective(measured, model, penalty) -> float:
    """max over c of the MAP objective of the constant image c in the FOV (concave in c: golden section)."""
    ones = (model.sensitivity() > 0).float()[None]

    def objective(c: float) -> float:
        return (model.log_likelihood(c * ones, measured[None]) - penalty.value(c * ones)).item()

    low, high, ratio = 0.0, 10 * measured.sum().item() / model.linear(ones).sum().item(), (5 ** 0.5 - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        low, high = (a, high) if objective(a) < objective(b) else (low, b)
    return objective((low + high) / 2)


def test_strong_rdp_in_large_units_gives_a_smooth_image_not_zero(phantom):
    """Activity in 20x larger units with a strong β once drove BSREM to an all-zero image (a preconditioner adding
    terms of different units; a voxel at 0 never moved again). The MAP image must be smooth and non-zero, and its
    objective no lower than that of the best constant image."""
    simulation, background = phantom
    grid = simulation.model.grid
    model = _large_units(simulation, 20.0)
    penalty = RelativeDifferencePenalty(beta=10.0, shape=grid.shape, voxel_size_mm=grid.voxel_size_mm)
    result = map_em(simulation.measured, model, penalty, iterations=6, n_subsets=4, progress=False)
    inside = cylinder(grid, 18.0).bool()
    assert (result.image[inside] == 0).float().mean() < 0.05
    assert result.objective[-1] >= _best_constant_objective(simulation.measured, model, penalty)
    ml = osem(simulation.measured, model, iterations=6, n_subsets=4, progress=False).image
    assert _cov(result.image, background) < 0.5 * _cov(ml, background)


def test_map_rdp_is_equivariant_to_the_activity_units(phantom):
    """RDP is homogeneous of degree 1 and the likelihood depends on m x only, so data with m / k and β / k have
    the MAP image k x; the optimiser's iterates must scale the same way."""
    simulation, _ = phantom
    grid = simulation.model.grid
    images = []
    for factor in (1.0, 20.0):
        penalty = RelativeDifferencePenalty(beta=3.0 / factor, shape=grid.shape, voxel_size_mm=grid.voxel_size_mm)
        images.append(map_em(simulation.measured, _large_units(simulation, factor), penalty, iterations=4,
                             n_subsets=4, progress=False).image / factor)
    torch.testing.assert_close(images[1], images[0], rtol=1e-4, atol=1e-5 * images[0].max().item())


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
    with pytest.raises(InputError, match="image must be a batch"):
        em_ascent_step(torch.ones(simulation.model.grid.shape), simulation.measured, simulation.model)
