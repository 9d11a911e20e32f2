"""The one sampler: its hooks run where they should (adaptation before every network evaluation, autograd only for
guidance), DPS and the naive sampler fit the data better as their weight grows, and their bad settings are refused
when built, before any data are seen."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.methods.dps import MRIDPS, PETDPS
from diffrecon.methods.naive import MRINaive, PETNaive
from diffrecon.methods.pet_dds import PETDDS
from diffrecon.physics.fidelity import GaussianLeastSquares, PoissonLikelihood
from diffrecon.physics.mri_masks import sampling_mask
from diffrecon.physics.mri_simulation import simulate_kspace
from diffrecon.physics.pet_simulation import simulate_pet
from diffrecon.priors.bundle import bundle_prior, fit_prior, load_bundle_prior
from diffrecon.transforms.intensity import emission_mean, magnitude_peak
from tests.methods.conftest import gaussian_volume_prior
from tests.physics.pet_fixtures import cylinder, tiny_grid, tiny_scanner


@pytest.fixture(scope="module")
def scan():
    grid = tiny_grid(4)
    activity = cylinder(grid, 15.0, 2.0)
    activity[6:10, 6:10] = 5.0
    simulation = simulate_pet(activity, cylinder(grid, 18.0, 0.0096), tiny_scanner(1, n_rings=4), grid,
                              trues_per_plane=5e3, psf_fwhm_mm=None, seed=3)
    return simulation.measured, simulation.model


@pytest.fixture(scope="module")
def mri(mr_priors):
    from diffrecon.data.phantoms import make_subject
    from diffrecon.physics.geometry import ImageGrid

    image = torch.as_tensor(make_subject(20001, ImageGrid((64, 64, 1), (3.0, 3.0, 3.0)), split="test").t1[..., 0])
    mask = sampling_mask("random", (64, 64), 4, center_fraction=0.1, seed=1).mask
    return simulate_kspace(image.to(torch.complex64), mask, snr_db=30, seed=2)


class CountingPETDDS(PETDDS):
    """PET-DDS that records its adaptation calls and whether autograd was on in them."""

    def adapt(self, x, t, call, step):
        self.adapted.append((step, t, torch.is_grad_enabled()))


def test_adapt_runs_once_before_every_network_evaluation_without_autograd(scan, volume_prior):
    measured, model = scan
    method = CountingPETDDS(volume_prior, steps=3, progress=False)
    method.adapted = []
    method(measured, model)
    assert [(s, t) for s, t, _ in method.adapted] == [(i, t) for i, (t, _) in enumerate(method.timesteps)]
    assert not any(grad for _, _, grad in method.adapted)


def _deviance_pet(result, scan):
    measured, model = scan
    return float(PoissonLikelihood(model, measured).deviance(result.samples).mean())


@pytest.mark.parametrize("build,setting,values", [
    (lambda prior, v: PETDPS(prior, steps=6, zeta=v, warm_start=None, progress=False), "zeta", (1.0, 300.0)),
    (lambda prior, v: PETNaive(prior, steps=6, weight=v, warm_start=None, progress=False), "weight", (1.0, 3000.0)),
])
def test_pet_guided_samplers_fit_the_data_better_with_a_larger_weight(scan, build, setting, values):
    """The prior (broad Gaussian pixels around 1) knows nothing of the cylinder: the data's pull must make it."""
    prior = gaussian_volume_prior(1.0, 1.0)
    measured, model = scan
    fits = [_deviance_pet(build(prior, v)(measured, model, num_samples=2, generator=torch.Generator().manual_seed(0)),
                          scan) for v in values]
    assert fits[1] < 0.7 * fits[0], (setting, fits)


@pytest.mark.parametrize("build,values", [
    (lambda prior, v: MRIDPS(prior, steps=8, zeta=v, progress=False), (1e-3, 3.0)),
    (lambda prior, v: MRINaive(prior, steps=8, weight=v, progress=False), (1e-3, 300.0)),
])
def test_mri_guided_samplers_fit_the_kspace_better_with_a_larger_weight(mri, mr_priors, build, values):
    kspace, operator = mri
    residuals = []
    for value in values:
        result = build(mr_priors["vp"], value)(kspace, operator, num_samples=2,
                                               generator=torch.Generator().manual_seed(0))
        residuals.append(max(result.report["data_residual"]))
        assert result.report["network_evaluations"] == 8 and result.samples.shape == (2, 64, 64)
    assert residuals[1] < 0.8 * residuals[0], residuals
    fidelity = GaussianLeastSquares(operator, kspace)
    assert fidelity.relative_residual(result.samples) == pytest.approx(result.report["data_residual"], rel=1e-3)


@pytest.mark.parametrize("build,message", [
    (lambda p: PETDPS(p, zeta=0.0), "zeta must be a finite number > 0, got 0.0"),
    (lambda p: PETDPS(p, zeta=float("nan")), "zeta must be a finite number > 0, got nan"),
    (lambda p: PETNaive(p, weight=-1.0), "weight must be a finite number > 0"),
    (lambda p: PETNaive(p, weight_schedule=(0.0, 1.5)), r"weight_schedule must be \(first, last\) multipliers in"),
    (lambda p: PETNaive(p, weight_schedule=(0.5,)), "weight_schedule must be"),
])
def test_bad_guidance_settings_are_refused_when_built(build, message, volume_prior):
    with pytest.raises(InputError, match=message):
        build(volume_prior)


def test_a_pet_method_refuses_mri_physics_and_an_mr_prior_before_work(scan, volume_prior, mri, mr_priors):
    kspace, operator = mri
    with pytest.raises(InputError, match="physics must be a PETAcquisitionModel, got MRIOperator"):
        PETDPS(volume_prior, progress=False)(kspace, operator)
    with pytest.raises(InputError, match="prior has a VESchedule; pet-dps needs the VP form"):
        PETDPS(mr_priors["ve"])
    with pytest.raises(InputError, match="physics must be an MRIOperator"):
        MRIDPS(mr_priors["vp"], progress=False)(*scan)


def test_the_shipped_priors_own_their_intensity_convention(mr_priors):
    """The scale between the data and the prior comes from the prior's declared convention (the PET prior's
    emission mean, the MR prior's magnitude peak), the same number as the modality's default."""
    pet = load_bundle_prior("pet_fdg_prior", "triplanar")
    assert pet.intensity == "emission_mean" and all(p.intensity == "emission_mean" for p in pet.priors.values())
    assert mr_priors["vp"].intensity == mr_priors["ve"].intensity == "magnitude_peak"
    image = torch.rand(8, 8, 4, generator=torch.Generator().manual_seed(0))
    assert pet.intensity_scale(image, "magnitude_peak") == emission_mean(image)
    assert mr_priors["ve"].intensity_scale(image, "emission_mean") == magnitude_peak(image)
    with pytest.raises(InputError, match="unknown intensity 'max'"):  # refused before the weights are read
        bundle_prior(torch.nn.Identity(), "missing.pt", pet.schedule, intensity="max")


def test_fit_prior_gives_each_form_and_refuses_one_the_bundle_lacks(scan, mri):
    kspace, operator = mri
    assert fit_prior("mr_t1_prior", operator, "ve").schedule.kind == "ve"
    pet = fit_prior("pet_fdg_prior", scan[1], "vp")
    assert pet.spatial_dims == 3 and set(pet.priors) == {"axial", "coronal", "sagittal"}
    with pytest.raises(InputError, match="holds VP priors; the method samples with a VE schedule"):
        fit_prior("pet_fdg_prior", scan[1], "ve")
