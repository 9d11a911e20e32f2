"""A result written with its samples and a reference carries the uncertainty figures and panel; the std DICOM
series names its calibration."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffrecon.io.export import export_result, std_note
from diffrecon.io.results import save_reconstruction, uncertainty_panel_columns
from diffrecon.physics.mri_masks import sampling_mask
from diffrecon.physics.mri_operators import MRIOperator


def test_result_with_reference_and_samples_reports_coverage_and_writes_the_uncertainty_panel(tmp_path):
    rng = np.random.default_rng(0)
    truth = 1.0 + rng.random((16, 16))
    centre = truth + 0.1 * rng.standard_normal(truth.shape)  # a calibrated posterior: truth ~ N(centre, 0.1)
    samples = torch.as_tensor(centre + 0.1 * rng.standard_normal((32, 16, 16)), dtype=torch.float32)
    mean, std = samples.mean(0), samples.std(0)
    operator = MRIOperator(sampling_mask("random", (16, 16), 2.0, seed=0).mask)
    report = save_reconstruction(tmp_path, "method", mean, np.eye(4), {"description": "test"}, std=std,
                                 samples=samples, reference=truth, physics=operator)
    figures = json.loads((tmp_path / "method.json").read_text())["metrics"]["method"]
    assert figures == report["metrics"]["method"]
    assert 0.5 < figures["coverage_1std"] < 0.85 and 0.85 < figures["coverage_2std"] <= 1.0
    assert 0.0 < figures["null_space_fraction"] < 1.0 and figures["mean_abs_z"] > 0
    assert (tmp_path / "method_uncertainty.png").stat().st_size > 0
    columns = uncertainty_panel_columns(truth, mean, std, operator)
    assert list(columns) == ["reference", "mean", "std", "z-score", "null-space error", "measurement-space error"]
    np.testing.assert_allclose(columns["null-space error"] + columns["measurement-space error"],
                               (mean.numpy() - truth)[..., None], atol=1e-5)


def test_deterministic_result_has_no_coverage_or_uncertainty_panel(tmp_path):
    truth = np.ones((12, 12))
    save_reconstruction(tmp_path, "osem", truth * 1.1, np.eye(4), {}, reference=truth)
    figures = json.loads((tmp_path / "osem.json").read_text())["metrics"]["osem"]
    assert "coverage_2std" not in figures and not (tmp_path / "osem_uncertainty.png").exists()


@pytest.mark.parametrize("calibration, expected", [(None, ""), ({"factor": 2.648, "target": 0.95, "k": 2.0,
                                                                   "scope": "demo2d 1%"}, "x2.65 cal demo2d 1%")])
def test_std_series_description_names_the_calibration(tmp_path, calibration, expected):
    import pydicom

    volume = np.ones((8, 8, 2), dtype=np.float32)
    note = std_note({"std_calibration": calibration} if calibration else {})
    assert note == expected
    export = export_result(volume, np.eye(4), 0.1 * volume, modality="PT", method_description="PET-DDS steps=8",
                           dicom_dir=tmp_path, std_note=note)
    std_series = pydicom.dcmread(export.series[1].files[0])
    description = std_series.SeriesDescription  # the method's text is shortened to fit 64 characters
    assert description.startswith("PET-DDS") and len(description) <= 64
    assert description.endswith("SD" + (f" {note}" if note else "") + " [RESEARCH, NOT DIAGNOSTIC]")
    assert (note in std_series.ImageComments) if note else "cal" not in std_series.ImageComments


def test_a_result_whose_figures_fail_writes_no_file(tmp_path):
    """Every figure is computed before the first file is written: a reference too small for SSIM's window leaves
    the output folder empty instead of half-written."""
    from diffrecon.checks import InputError

    image = np.random.default_rng(0).random((6, 6)).astype(np.float32)
    with pytest.raises(InputError, match="ssim needs every image side >= the 11-voxel window"):
        save_reconstruction(tmp_path / "out", "tv", image, np.eye(4), {}, reference=image, std=image)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
