"""The uncertainty figures: coverage of a known Gaussian posterior, recalibration, the null-space decomposition
through PET and MRI physics, lesion verdicts and the errors bad inputs give."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.methods.base import summarize_samples
from diffrecon.physics.mri_fft import fft_centered, ifft_centered
from diffrecon.physics.mri_masks import sampling_mask
from diffrecon.physics.mri_operators import MRIOperator
from diffrecon.physics.pet import PETAcquisitionModel
from diffrecon.physics.projector import PETProjector
from diffrecon.uncertainty import (calibration_curve, coverage, fit_std_calibration, gaussian_k, hallucination_map,
                                   lesion_report, null_space_decomposition, object_mask, posterior_summary,
                                   quantile_coverage, uncertainty_metrics, z_scores)
from tests.physics.pet_fixtures import tiny_grid, tiny_scanner


def gaussian_posterior(sigma: float = 0.2, n: int = 64, shape: tuple[int, ...] = (24, 24), seed: int = 0):
    """A truth drawn from N(centre, σ) and samples from the same N(centre, σ): a calibrated posterior."""
    rng = np.random.default_rng(seed)
    centre = 1.0 + rng.random(shape)
    truth = centre + sigma * rng.standard_normal(shape)
    samples = centre + sigma * rng.standard_normal((n, *shape))
    return truth, samples


@pytest.fixture(scope="module")
def pet_model() -> PETAcquisitionModel:
    projector = PETProjector(tiny_scanner(1, n_rings=2), tiny_grid(2))
    factors = 0.5 + torch.rand(projector.sinogram_shape(), generator=torch.Generator().manual_seed(0))
    return PETAcquisitionModel(projector, multiplicative=factors, psf_fwhm_mm=4.0)


@pytest.fixture(scope="module")
def mri_operator() -> MRIOperator:
    return MRIOperator(sampling_mask("random", (32, 32), 4.0, seed=1).mask)


def test_summary_matches_the_methods_mean_and_std_and_orders_quantiles():
    samples = torch.randn(6, 5, 4, dtype=torch.complex64)
    summary = posterior_summary(samples)
    mean, std = summarize_samples(samples)
    np.testing.assert_allclose(summary.mean, mean.abs().numpy(), rtol=1e-5)
    np.testing.assert_allclose(summary.std, std.numpy(), rtol=1e-5)
    assert (summary.quantiles[0.05] <= summary.quantiles[0.5]).all()
    assert (summary.quantiles[0.5] <= summary.quantiles[0.95]).all()


def test_coverage_of_a_known_gaussian_posterior_is_recovered():
    truth, samples = gaussian_posterior()
    summary = posterior_summary(samples)
    covered = coverage(truth, summary.mean, summary.std)
    assert covered[1.0] == pytest.approx(0.683, abs=0.04)
    assert covered[2.0] == pytest.approx(0.954, abs=0.025)
    assert quantile_coverage(truth, samples, (0.9,))[0.9] == pytest.approx(0.9, abs=0.04)
    curve = calibration_curve(truth, summary.mean, summary.std, samples, levels=(0.5, 0.8))
    np.testing.assert_allclose(curve["gaussian"], [0.5, 0.8], atol=0.05)
    np.testing.assert_allclose(curve["quantile"], [0.5, 0.8], atol=0.05)
    z = z_scores(truth, summary.mean, summary.std)
    assert np.abs(z).mean() == pytest.approx(np.sqrt(2 / np.pi), abs=0.06)  # E|z| of a standard normal


def test_overconfident_std_undercovers_and_recalibration_factor_is_about_two():
    cases = []
    for seed in range(3):
        truth, samples = gaussian_posterior(seed=seed)
        summary = posterior_summary(samples)
        cases.append({"reference": truth, "mean": summary.mean, "std": summary.std / 2})
    assert coverage(**cases[0])[2.0] < 0.75  # a 2x too small std covers ~68% at "2 std"
    calibration = fit_std_calibration(cases[:2], target=0.954, k=2.0, scope="test")
    assert calibration.factor == pytest.approx(2.0, rel=0.12)
    assert calibration.cases == 2 and calibration.voxels == 2 * 24 * 24
    held_out = cases[2]
    assert coverage(held_out["reference"], held_out["mean"], calibration.factor * held_out["std"])[2.0] == \
        pytest.approx(0.954, abs=0.03)
    assert "x2." in calibration.describe() or "x1.9" in calibration.describe()


def test_std_of_zero_is_guarded():
    truth = np.ones((4, 4))
    with pytest.raises(InputError, match="std is zero everywhere"):
        z_scores(truth, truth, np.zeros((4, 4)))
    std = np.ones((4, 4))
    std[0, 0] = 0.0
    z = z_scores(truth + 1.0, truth, std)
    assert np.isfinite(z).all() and z[0, 0] > 1e5


def test_null_component_of_an_image_in_the_range_of_the_pet_adjoint_is_zero(pet_model):
    y = torch.rand(pet_model.data_shape, generator=torch.Generator().manual_seed(1))
    decomposition = null_space_decomposition(pet_model.A_adjoint(y), pet_model)
    assert decomposition.null_fraction < 0.02
    noise = torch.rand(pet_model.image_shape, generator=torch.Generator().manual_seed(2))
    random = null_space_decomposition(noise, pet_model)
    assert random.null_fraction > 0.1  # the PSF and few views leave much of a noise image unseen
    torch.testing.assert_close(random.measurement + random.null, noise)
    assert null_space_decomposition(random.null, pet_model).null_fraction > 0.9  # what is null stays null


def test_null_space_decomposition_through_undersampled_fourier(mri_operator):
    kspace = torch.randn(32, 32, dtype=torch.complex64, generator=torch.Generator().manual_seed(2))
    in_range = mri_operator.A_adjoint(kspace)
    assert null_space_decomposition(in_range, mri_operator).null_fraction < 2e-3
    unsampled = torch.where(mri_operator.mask, torch.zeros_like(kspace), kspace)
    in_null = ifft_centered(unsampled)
    decomposition = null_space_decomposition(in_null, mri_operator)
    assert decomposition.null_fraction > 0.999
    assert decomposition.measurement.abs().max() < 1e-3 * in_null.abs().max()
    mixed = null_space_decomposition(in_range + in_null, mri_operator)
    assert (mixed.null - in_null).norm() < 5e-3 * in_null.norm()  # the damping's bias is 0.1% of the range part


def test_hallucination_map_of_a_complex_estimate_against_a_magnitude_truth(mri_operator):
    truth = torch.rand(32, 32, generator=torch.Generator().manual_seed(3))
    phase = torch.exp(1j * torch.linspace(0, 1, 32)).expand(32, 32)
    exact = hallucination_map(truth * phase, truth, mri_operator)
    assert exact.null.abs().max() < 1e-5 and exact.measurement.abs().max() < 1e-5  # the phase is not an error
    blob = torch.zeros(32, 32)
    blob[10:14, 10:14] = 1.0
    unseen = ifft_centered(torch.where(mri_operator.mask, 0, fft_centered(blob.to(torch.complex64))))
    assert hallucination_map((truth + unseen.real) * phase, truth, mri_operator).null_fraction > 0.5


def phantom(size: int = 24):
    """A flat background with one hot lesion and its mask (and a background mask away from it)."""
    truth = np.ones((size, size))
    lesion = np.zeros((size, size), dtype=bool)
    lesion[4:8, 4:8] = True
    truth[lesion] = 3.0
    background = np.zeros((size, size), dtype=bool)
    background[12:, :] = True
    return truth, lesion, background


def test_erased_lesion_and_invented_blob_are_flagged():
    truth, lesion, background = phantom()
    rng = np.random.default_rng(0)
    samples = truth + 0.05 * rng.standard_normal((8, *truth.shape))
    report = lesion_report(samples, truth, lesion[None], background)
    assert [v.verdict for v in report.lesions] == ["recovered"] and report.invented == []
    assert report.lesions[0].kind == "hot" and report.lesions[0].crc_mean == pytest.approx(1.0, abs=0.05)
    erased = samples.copy()
    erased[:, lesion] = 1.0 + 0.05 * rng.standard_normal((8, int(lesion.sum())))  # the lesion filled in
    erased[:, 16:20, 14:18] += 1.0  # a blob the truth lacks
    report = lesion_report(erased, truth, lesion[None], background & ~(np.arange(24)[None, :] >= 14))
    assert report.counts() == {"lesions_recovered": 0, "lesions_erased": 1, "lesions_invented": 1}
    assert len(report.lesions[0].crc_samples) == 8 and abs(report.lesions[0].crc_mean) < 0.1
    (blob,) = report.invented
    assert blob.kind == "hot" and blob.voxels == 16 and blob.centre == [17.5, 15.5]


def test_a_wide_posterior_covering_the_blob_invents_nothing():
    truth, lesion, background = phantom()
    rng = np.random.default_rng(1)
    samples = truth + 1.0 * rng.standard_normal((16, *truth.shape))  # std 1: the 1.0 blob is within 3 std
    samples[:, 16:20, 14:18] += 1.0
    assert lesion_report(samples, truth, lesion[None], background).invented == []
    assert lesion_report(samples[:1], truth, lesion[None], background).invented is None  # one sample: no std


def test_uncertainty_metrics_collects_every_figure(pet_model):
    truth, samples = gaussian_posterior(shape=pet_model.image_shape, n=16)
    summary = posterior_summary(samples)
    lesion = np.zeros(pet_model.image_shape, dtype=bool)
    lesion[6:9, 6:9] = True
    figures = uncertainty_metrics(truth, summary.mean, summary.std, samples, pet_model,
                                  lesion_masks=lesion[None], background_mask=~lesion)
    assert 0.5 < figures["coverage_1std"] < figures["coverage_2std"] <= 1.0
    assert 0 < figures["null_space_fraction"] < 1 and figures["lesions_invented"] is not None
    deterministic = uncertainty_metrics(truth, summary.mean)
    assert deterministic["coverage_2std"] is None and deterministic["null_space_fraction"] is None
    assert object_mask(np.array([0.0, 0.01, 1.0])).tolist() == [False, False, True]


def test_bad_inputs_name_the_parameter(pet_model, mri_operator):
    truth, samples = gaussian_posterior(n=4, shape=(5, 5))
    summary = posterior_summary(samples)
    with pytest.raises(InputError, match="mean has shape"):
        coverage(truth, summary.mean[:4], summary.std)
    with pytest.raises(InputError, match="mask is empty"):
        coverage(truth, summary.mean, summary.std, mask=np.zeros((5, 5)))
    with pytest.raises(InputError, match="k must be"):
        coverage(truth, summary.mean, summary.std, ks=(0,))
    with pytest.raises(InputError, match="reference contains 1 NaN"):
        coverage(np.where(np.eye(5) * np.arange(5) == 1, np.nan, truth), summary.mean, summary.std)
    with pytest.raises(InputError, match="samples has shape"):
        posterior_summary(np.zeros((0, 5, 5)))
    with pytest.raises(InputError, match="samples has shape"):
        quantile_coverage(truth, samples[:1])
    with pytest.raises(InputError, match="target must lie"):
        fit_std_calibration([{"reference": truth, "mean": summary.mean, "std": summary.std}], target=95)
    with pytest.raises(InputError, match=r"cases\[0\] lacks std"):
        fit_std_calibration([{"reference": truth, "mean": summary.mean}])
    with pytest.raises(InputError, match="cases is empty"):
        fit_std_calibration([])
    with pytest.raises(InputError, match="level must lie"):
        gaussian_k(1.0)
    with pytest.raises(InputError, match="error has shape"):
        null_space_decomposition(torch.zeros(3, 3), pet_model)
    with pytest.raises(InputError, match="expected an acquisition model"):
        null_space_decomposition(torch.zeros(3, 3), object())
    with pytest.raises(InputError, match="iterations must be"):
        null_space_decomposition(torch.zeros(32, 32), mri_operator, iterations=0)
    with pytest.raises(InputError, match=r"lesion_masks\[0\] is empty"):
        lesion_report(samples, truth, np.zeros((1, 5, 5)), np.ones((5, 5)))
    with pytest.raises(InputError, match="background_mask has shape"):
        lesion_report(samples, truth, np.ones((1, 5, 5)), np.ones((4, 4)))
    with pytest.raises(InputError, match="z_threshold must be"):
        lesion_report(samples, truth, np.ones((1, 5, 5)), np.ones((5, 5)), z_threshold=-1)


def test_calibration_applies_only_in_its_scope(pet_model):
    from diffrecon.io.demo_cases import simulated_pet_case
    from diffrecon.uncertainty import StdCalibration

    calibration = StdCalibration(2.5, 0.95, 2.0, "demo2d 1%", details={"scanner": "demo2d",
                                                                        "trues_per_sinogram": 1e4, "min_samples": 8})
    case = simulated_pet_case(10000, "demo2d", "1%", lesions=0, split="validation")
    assert calibration.applies_to(case.physics, case.data, 16)
    assert not calibration.applies_to(case.physics, case.data, 4)  # too few samples for this factor
    assert not calibration.applies_to(case.physics, case.data * 10, 16)  # ten times the counts
    assert not calibration.applies_to(pet_model, torch.ones(pet_model.data_shape), 16)  # another scanner
    torch.testing.assert_close(calibration.apply(torch.ones(2)), torch.full((2,), 2.5))
    assert calibration.describe() == "x2.50 cal demo2d 1%"


def test_mri_calibration_holds_near_its_acceleration(mri_operator, pet_model):
    from diffrecon.uncertainty import StdCalibration

    calibration = StdCalibration(1.8, 0.95, 2.0, "R4 random lines", details={"acceleration": 4.0})
    eight = MRIOperator(sampling_mask("random", (32, 32), 8.0, seed=1).mask)
    assert calibration.applies_to(mri_operator, torch.zeros(32, 32, dtype=torch.complex64), 16)
    assert not calibration.applies_to(eight, torch.zeros(32, 32, dtype=torch.complex64), 16)
    assert not calibration.applies_to(pet_model, torch.ones(pet_model.data_shape), 16)  # no mask: not MRI


@pytest.mark.parametrize("name", ["pet-dds", "pet-lisch"])
def test_pet_method_applies_the_factor_of_the_count_level_it_was_fitted_at(name):
    """The stored demo2d factors (1% and 10%): each call gets the one whose scope holds, and 3% (between the two
    ranges) gets the raw sample std."""
    from diffrecon.io.demo_cases import simulated_pet_case
    from diffrecon.methods import build_method, get_method
    from diffrecon.pipeline import method_inputs

    applied = {}
    for level in ("1%", "10%", "3%"):
        case = simulated_pet_case(10000, "demo2d", level, lesions=0, split="validation")
        method = build_method(name, **method_inputs(name, case))
        method.progress = False
        result = method(case.data, case.physics, num_samples=16, generator=torch.Generator().manual_seed(0))
        samples = result.samples
        raw_std = (samples - samples.mean(0)).pow(2).sum(0).div(len(samples) - 1).sqrt()
        applied[level] = result.report.get("std_calibration", {}).get("scope")
        factor = result.report["std_calibration"]["factor"] if applied[level] else 1.0
        torch.testing.assert_close(result.std, factor * raw_std, rtol=1e-4, atol=1e-6)
    assert applied == {"1%": "demo2d 1%", "10%": "demo2d 10%", "3%": None}
    calibrations = get_method(name).std_calibrations
    assert [c.scope for c in calibrations] == ["demo2d 1%", "demo2d 10%"]
    # fitted with the unconditional prior: not for an MR-guided run (its settings hold the MR and the guidance)
    case = simulated_pet_case(10000, "demo2d", "1%", lesions=0, split="validation")
    unguided = build_method(name, **method_inputs(name, case)).settings()
    assert calibrations[0].applies_to(case.physics, case.data, 16, unguided)
    assert not calibrations[0].applies_to(case.physics, case.data, 16, {**unguided, "mr": True, "guidance": 1.0})


def test_dds_factors_hold_at_their_acceleration_with_the_default_settings():
    """The stored DDS factors apply to a phantom scan at the acceleration they were fitted at, with DDS's default
    settings and 16 samples, and not at another acceleration, with other settings or too few samples."""
    from diffrecon.io.demo_cases import simulated_mri_case
    from diffrecon.methods import build_method
    from diffrecon.methods.dds_mri import STD_CALIBRATIONS
    from diffrecon.pipeline import method_inputs

    for calibration in STD_CALIBRATIONS:
        r = calibration.details["acceleration"]
        case = simulated_mri_case(10000, acceleration=r, split="validation")
        method = build_method("dds", **method_inputs("dds", case))
        assert calibration.applies_to(case.physics, case.data, 16, method.settings())
        assert not calibration.applies_to(case.physics, case.data, 8, method.settings())
        assert not calibration.applies_to(case.physics, case.data, 16, {**method.settings(), "steps": 20})
        other = simulated_mri_case(10000, acceleration=r / 2, split="validation")
        assert not calibration.applies_to(other.physics, other.data, 16, method.settings())
        # the same sampling in every slice of a 3D k-space: the acceleration matches, but it was fitted on slices
        volume = MRIOperator(torch.stack([case.physics.mask] * 4, dim=-1))
        assert not calibration.applies_to(volume, case.data, 16, method.settings())
