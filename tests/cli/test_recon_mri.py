"""``diffrecon recon`` with the MRI methods: real 2-coil twix k-space, a simulated acquisition, clear errors."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.io.nifti import save_nifti


@pytest.fixture(scope="module")
def twix_file(shared_data):
    return str(shared_data / "twix_gre_siemens" / "gre_kspace_cha_lin_col.npy")


@pytest.mark.parametrize("method", ["zero-filled", "cg-sense", "tv"])
def test_each_method_runs_on_the_real_twix_data(tmp_path, twix_file, method):
    out = tmp_path / method
    code = main(["recon", "--method", method, "--kspace", twix_file, "--kspace-layout", "cyx",
                 "--readout-oversampling", "2", "--acceleration", "4", "--out", str(out)])
    assert code == 0
    report = json.loads((out / f"{method}.json").read_text())
    assert report["n_coils"] == 2 and report["shape"] == [160, 160] and report["acceleration"] == 4.0
    assert nib.load(out / f"{method}.nii.gz").shape == (160, 160, 1)
    assert (out / f"{method}.png").stat().st_size > 10_000 and (out / "reference.nii.gz").is_file()
    metrics = report["metrics"]
    assert metrics[method]["nrmse"] <= metrics["zero-filled"]["nrmse"]
    if method != "zero-filled":
        assert len(report["objective"]) == report["settings"]["iterations"]


@pytest.mark.parametrize("method, steps", [("dds", "2"), ("score-mri", "1")])
def test_diffusion_methods_run_on_the_real_twix_data(tmp_path, twix_file, method, steps):
    out = tmp_path / method
    code = main(["recon", "--method", method, "--kspace", twix_file, "--kspace-layout", "cyx",
                 "--readout-oversampling", "2", "--acceleration", "4", "--steps", steps, "--warm-start", "0.3",
                 "--num-samples", "2", "--out", str(out)])
    assert code == 0
    report = json.loads((out / f"{method}.json").read_text())
    assert report["settings"]["steps"] == int(steps) and report["settings"]["warm_start"] == 0.3
    assert report["num_samples"] == 2 and len(report["data_residual"]) == 2
    assert nib.load(out / f"{method}_samples.nii.gz").shape == (160, 160, 1, 2)
    assert nib.load(out / f"{method}_std.nii.gz").shape == (160, 160, 1)


def test_simulated_acquisition_from_an_image(tmp_path):
    image = np.zeros((48, 48), dtype=np.float32)
    image[9:39, 12:36] = 1.0
    image[18:26, 18:26] = 2.0
    save_nifti(tmp_path / "image.nii.gz", image[..., None], np.diag([2.0, 2.0, 3.0, 1.0]))
    code = main(["recon", "--method", "tv", "--image", str(tmp_path / "image.nii.gz"), "--coils", "4",
                 "--mask", "poisson", "--acceleration", "3", "--center-fraction", "0.4", "--out", str(tmp_path / "o")])
    assert code == 0
    report = json.loads((tmp_path / "o" / "tv.json").read_text())
    # ESPIRiT needs a calibration block well above its 6-sample kernel: 0.4 x 48 = 19 samples here.
    assert report["metrics"]["tv"]["nrmse"] < 0.5 * report["metrics"]["zero-filled"]["nrmse"]
    assert np.allclose(nib.load(tmp_path / "o" / "tv.nii.gz").header.get_zooms(), (2, 2, 3))


@pytest.mark.parametrize("method", ["dds", "score-mri"])
def test_a_pet_prior_is_refused_by_its_modality(tmp_path, capsys, monkeypatch, method):
    image = np.zeros((48, 48, 1), dtype=np.float32)
    image[9:39, 12:36] = 1.0
    save_nifti(tmp_path / "image.nii.gz", image, np.eye(4))

    def no_work(*args, **kwargs):
        raise AssertionError("the k-space was simulated before the prior was refused")

    monkeypatch.setattr("diffrecon.io.cases._simulated_kspace", no_work)
    code = main(["recon", "--method", method, "--prior", "pet_fdg_prior", "--image", str(tmp_path / "image.nii.gz"),
                 "--coils", "4", "--acceleration", "2", "--center-fraction", "0.4", "--out", str(tmp_path / "o")])
    assert code == 2 and not (tmp_path / "o").exists()
    assert (f"error: --prior 'pet_fdg_prior' is a PET prior (modality PT); method {method} needs an MR prior (MR)"
            in capsys.readouterr().err)


@pytest.mark.parametrize("extra, message", [
    (["--acceleration", "0.5"], "--acceleration must be a number >= 1"),
    (["--acceleration", "4", "--mask", "spiral"], "unknown mask kind 'spiral'"),
    (["--acceleration", "200"], "impossible for 160 phase-encode lines"),
])
def test_bad_mask_options_are_named(tmp_path, twix_file, capsys, extra, message):
    code = main(["recon", "--method", "zero-filled", "--kspace", twix_file, "--kspace-layout", "cyx",
                 "--readout-oversampling", "2", "--out", str(tmp_path), *extra])
    assert code == 2 and message in capsys.readouterr().err


def test_bad_kspace_inputs_are_named(tmp_path, capsys):
    np.save(tmp_path / "real.npy", np.ones((2, 8, 8), dtype=np.float32))
    args = ["recon", "--method", "cg-sense", "--out", str(tmp_path / "o")]
    assert main([*args, "--kspace", str(tmp_path / "real.npy")]) == 2
    assert "expected complex k-space" in capsys.readouterr().err
    assert main([*args, "--kspace", str(tmp_path / "missing.h5")]) == 2
    assert "does not exist" in capsys.readouterr().err
    undersampled = np.ones((2, 8, 8), dtype=np.complex64)
    undersampled[:, :, 1::2] = 0
    np.save(tmp_path / "under.npy", undersampled)
    assert main([*args, "--kspace", str(tmp_path / "under.npy"), "--acceleration", "2"]) == 2
    assert "already undersampled" in capsys.readouterr().err
    assert main(args) == 2
    assert "exactly one of --kspace or --image" in capsys.readouterr().err
