"""The Score-MRI, DDS, DPS and naive MRI bundles through ``python -m monai.bundle run`` with tiny settings: the built-in phantom
case and the real 2-coil twix scan; mean, std and samples written; the std series linked in the DICOM export;
refusals in one line."""
from __future__ import annotations

import json

import nibabel as nib
import pytest

from diffrecon.bundle import inference_configs
from diffrecon.io.dicom_read import list_series
from tests.bundles.conftest import BUNDLES, assert_refused
from tests.bundles.test_bundle_files import REQUIRED
from tests.bundles.test_pet_diffusion_bundles import run_bundle

NAMES = {"dds_mri": "dds", "score_mri": "score-mri", "dps_mri": "dps", "naive_mri": "naive", "mri_scd": "scd-dds"}
TINY = {name: ["--steps", "2", "--num_samples", "2", "--warm_start", "0.3"] for name in NAMES}


@pytest.mark.parametrize("bundle", sorted(NAMES))
def test_metadata_and_docs(bundle):
    meta = json.loads((BUNDLES / bundle / "configs/metadata.json").read_text())
    assert [key for key in REQUIRED if key not in meta] == [] and meta["version"] in meta["changelog"]
    kspace = meta["network_data_format"]["inputs"]["kspace"]
    assert kspace["format"] == "kspace" and kspace["modality"] == "MR"
    assert (BUNDLES / bundle / "LICENSE").is_file() and (BUNDLES / bundle / "docs" / "README.md").is_file()


@pytest.mark.parametrize("bundle", sorted(NAMES))
def test_builtin_case_writes_mean_std_samples_and_zero_filled(bundle, tmp_path):
    done = run_bundle(bundle, "--output_dir", str(tmp_path), *TINY[bundle], "--export_dicom_dir",
                      str(tmp_path / "dicom"))
    assert done.returncode == 0, done.stderr[-3000:]
    name = NAMES[bundle]
    report = json.loads((tmp_path / f"{name}.json").read_text())
    assert report["num_samples"] == 2 and report["phantom_seed"] == 20000 and report["n_coils"] == 8
    assert report["network_evaluations"] == (4 if bundle == "score_mri" else 2)
    assert len(report["data_residual"]) == 2 and report["seconds_network"] > 0
    assert set(report["metrics"]) == {"zero-filled", name}
    assert nib.load(tmp_path / f"{name}_samples.nii.gz").shape == (128, 128, 1, 2)
    for image in (name, f"{name}_std", "zero-filled", "reference"):
        assert nib.load(tmp_path / f"{image}.nii.gz").shape == (128, 128, 1), image
    assert (tmp_path / f"{name}.png").is_file()
    assert len(list_series(tmp_path / "dicom")) == 2  # the mean and its linked standard-deviation series


def test_real_twix_scan_undersampled(shared_data, tmp_path):
    kspace = shared_data / "twix_gre_siemens" / "gre_kspace_cha_lin_col.npy"
    done = run_bundle("dds_mri", "--output_dir", str(tmp_path), "--kspace", str(kspace), "--layout", "cyx",
                      "--readout_oversampling", "2", "--acceleration", "4", *TINY["dds_mri"])
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "dds.json").read_text())
    assert report["n_coils"] == 2 and report["shape"] == [160, 160]
    metrics = report["metrics"]
    assert metrics["dds"]["nrmse"] < metrics["zero-filled"]["nrmse"]  # two warm-started steps beat zero-filling


@pytest.mark.parametrize("settings,message", [
    (["--variant", "ssos", "--demo", "{'coils': 1}"], "variant 'ssos' needs multi-coil k-space"),
    (["--variant", "any"], "unknown variant 'any'"),
    (["--stpes", "5"], "unknown setting 'stpes' (did you mean 'steps'?)"),
    (["--steps", "0"], "steps must be an integer >= 1, got 0"),
])
def test_bad_settings_are_refused_before_any_work(settings, message, tmp_path):
    assert_refused([str(p) for p in inference_configs(BUNDLES / "score_mri")], BUNDLES / "score_mri", tmp_path / "out",
                   message, *settings)


def test_a_pet_prior_is_refused_by_its_modality(tmp_path):
    assert_refused([str(p) for p in inference_configs(BUNDLES / "dds_mri")], BUNDLES / "dds_mri", tmp_path / "out",
                   "prior_bundle 'pet_fdg_prior' is a PET prior (modality PT); method dds needs an MR prior (MR)",
                   "--prior_bundle", "pet_fdg_prior")
