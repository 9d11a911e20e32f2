"""The PET-DDS, PET-LiSch, PET-DPS and PET naive bundles through ``python -m monai.bundle run`` with tiny settings: the built-in
phantom case (one slice here, so it runs in seconds) and a user's case folder; mean, std and samples written;
the std series linked in the DICOM export; refusals in one line."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import pytest

from diffrecon.bundle import inference_configs
from diffrecon.io.dicom_read import list_series
from tests.bundles.conftest import BUNDLES, assert_refused
from tests.bundles.test_bundle_files import REQUIRED

TINY = ["--steps", "2", "--num_samples", "2", "--chunk_size", "4"]
DEMO2D = "{'seed': 20000, 'preset': 'demo2d', 'count_level': '10%', 'lesions': 1}"
NAMES = {"pet_lisch": "pet-lisch", "pet_dds": "pet-dds", "pet_dps": "pet-dps", "pet_naive": "pet-naive",
         "pet_scd": "scd-pet-dds", "pet_deft": "pet-deft"}


def run_bundle(bundle: str, *settings: str) -> subprocess.CompletedProcess:
    configs = BUNDLES / bundle / "configs"
    files = str([str(path) for path in inference_configs(BUNDLES / bundle)])
    return subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", files,
                           "--meta_file", str(configs / "metadata.json"), "--bundle_root", str(BUNDLES / bundle),
                           *settings], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("bundle", sorted(NAMES))
def test_metadata_and_docs(bundle):
    meta = json.loads((BUNDLES / bundle / "configs/metadata.json").read_text())
    assert [key for key in REQUIRED if key not in meta] == [] and meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["inputs"]["sinogram"]["format"] == "raw"
    assert (BUNDLES / bundle / "LICENSE").is_file() and (BUNDLES / bundle / "docs" / "README.md").is_file()


@pytest.mark.parametrize("bundle", sorted(NAMES))
def test_builtin_case_writes_mean_std_samples_and_osem(bundle, tmp_path):
    done = run_bundle(bundle, "--output_dir", str(tmp_path), "--demo", DEMO2D, *TINY,
                      "--export_dicom_dir", str(tmp_path / "dicom"))
    assert done.returncode == 0, done.stderr[-3000:]
    name = NAMES[bundle]
    report = json.loads((tmp_path / f"{name}.json").read_text())
    assert report["network_evaluations"] == 2 and report["num_samples"] == 2 and report["phantom_seed"] == 20000
    assert set(report["metrics"]) == {"osem", name}
    assert nib.load(tmp_path / f"{name}_samples.nii.gz").shape == (64, 72, 1, 2)
    for image in (name, f"{name}_std", "osem", "reference"):
        assert nib.load(tmp_path / f"{image}.nii.gz").shape == (64, 72, 1), image
    series = list_series(tmp_path / "dicom")
    assert len(series) == 2  # the mean and its linked standard-deviation series


def test_a_calibrated_std_series_names_its_factor_and_scope(tmp_path):
    """PET-DDS at its defaults on demo2d 1% data with 16 samples is inside its calibration's scope (issue 34): the
    exported std series says by what factor its std was scaled and for which data."""
    demo = "{'seed': 20000, 'preset': 'demo2d', 'count_level': '1%', 'lesions': 1}"
    done = run_bundle("pet_dds", "--output_dir", str(tmp_path), "--demo", demo, "--num_samples", "16",
                      "--export_dicom_dir", str(tmp_path / "dicom"))
    assert done.returncode == 0, done.stderr[-3000:]
    descriptions = [s.description for s in list_series(tmp_path / "dicom")]
    assert any("cal demo2d 1%" in d for d in descriptions), descriptions


def test_user_case_folder(tmp_path, demo2d_case):
    case = demo2d_case
    done = run_bundle("pet_lisch", "--output_dir", str(tmp_path / "out"), "--sinogram", str(case), *TINY,
                      "--iterations", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "pet-lisch.json").read_text())
    assert report["settings"]["iterations"] == 3 and report["capped_steps"] == []
    assert min(report["final_log_likelihood"]) >= report["target_log_likelihood"]


@pytest.mark.parametrize("settings,message", [
    (["--steps", "0"], "steps must be an integer >= 1, got 0"),
    (["--iterations", "0"], "iterations must be 'auto' (chosen from the data) or an integer >= 1, got 0"),
    (["--step_size", "-1"], "step_size must be in (0, 2]"),
    (["--stpes", "5"], "unknown setting 'stpes' (did you mean 'steps'?)"),
    (["--num_samples", "0"], "num_samples must be an integer >= 1, got 0"),
    (["--prior_bundle", "mr_t1_prior"],  # not "unknown setting 'chunk_size'", which the MR prior lacks
     "prior_bundle 'mr_t1_prior' is an MR prior (modality MR); method pet-lisch needs a PET prior (PT)"),
])
def test_bad_settings_are_refused_before_any_work(settings, message, tmp_path):
    assert_refused([str(p) for p in inference_configs(BUNDLES / "pet_lisch")], BUNDLES / "pet_lisch",
                   tmp_path / "out", message, "--demo", DEMO2D, *settings)


def _files(folder):
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file() and "runs" not in path.parts}


def test_scd_killed_mid_adaptation_leaves_the_prior_bundle_as_shipped(tmp_path):
    """The adapters live in memory for one run: a run killed while it adapts leaves no file in any bundle."""
    bundles = {name: _files(BUNDLES / name) for name in ("pet_fdg_prior", "pet_scd")}
    configs = BUNDLES / "pet_scd" / "configs"
    files = str([str(path) for path in inference_configs(BUNDLES / "pet_scd")])
    process = subprocess.Popen([sys.executable, "-m", "monai.bundle", "run", "--config_file", files, "--meta_file",
                                str(configs / "metadata.json"), "--bundle_root", str(BUNDLES / "pet_scd"),
                                "--output_dir", str(tmp_path), "--demo", DEMO2D, "--steps", "50", "--skip", "1",
                                "--adapt_iterations", "1000", "--stop_at_aim", "false"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:  # the progress bar appears once sampling (and so adaptation) has begun
        if "SCD-PET-DDS" in line:
            break
    process.kill()
    process.wait(timeout=60)
    assert process.returncode != 0
    assert {name: _files(BUNDLES / name) for name in bundles} == bundles
    assert not (tmp_path / "scd-pet-dds.nii.gz").exists()
