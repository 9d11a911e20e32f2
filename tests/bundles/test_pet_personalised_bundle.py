"""The personalised-prior bundle through ``python -m monai.bundle run`` on its built-in demo (3D phantom target,
training-split phantoms as the other subjects) with tiny settings: the prior, its QC and the reconstruction are
written; a rerun reuses the finished stages; a bad method name is refused in one line before any work."""
from __future__ import annotations

import json

import nibabel as nib

from tests.bundles.conftest import BUNDLES
from tests.bundles.test_bundle_files import REQUIRED
from tests.bundles.test_pet_diffusion_bundles import run_bundle

BUNDLE = "pet_personalised"
TINY = ["--demo_subjects", "2", "--mixtures", "1", "--orientations", "['axial']", "--epochs", "1", "--workers", "1",
        "--threads", "1", "--num_samples", "1", "--chunk_size", "8",
        "--method_settings", "{'steps': 2, 'lam': 0.05, 'warm_start': 0.3}"]


def test_metadata_and_docs():
    meta = json.loads((BUNDLES / BUNDLE / "configs/metadata.json").read_text())
    assert [key for key in REQUIRED if key not in meta] == [] and meta["version"] in meta["changelog"]
    assert (BUNDLES / BUNDLE / "LICENSE").is_file() and (BUNDLES / BUNDLE / "docs" / "README.md").is_file()


def test_demo_builds_the_prior_reconstructs_and_reuses_finished_stages(tmp_path):
    done = run_bundle(BUNDLE, "--output_dir", str(tmp_path), *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((tmp_path / "prior" / "personalised.json").read_text())
    assert record["fine_tuned"] == ["axial"] and len(record["set"]["accepted"]) == 2
    assert all(q["after"]["correlation"] > q["before"]["correlation"] for q in record["quality"])
    assert (tmp_path / "prior" / "pseudo_pet" / "qc" / "subject_00000.png").is_file()
    report = json.loads((tmp_path / "pet-dds.json").read_text())
    assert report["network_evaluations"] == 2 and report["phantom_seed"] == 20000
    assert nib.load(tmp_path / "pet-dds.nii.gz").shape == (64, 72, 56)
    log = tmp_path / "prior" / "runs" / "axial" / "train.log"
    before = log.read_text()
    again = run_bundle(BUNDLE, "--output_dir", str(tmp_path), *TINY)
    assert again.returncode == 0, again.stderr[-3000:]
    assert log.read_text() == before  # nothing trained again


def test_an_unknown_method_is_refused_before_any_work(tmp_path):
    done = run_bundle(BUNDLE, "--output_dir", str(tmp_path / "out"), "--method_name", "osem")
    assert done.returncode == 2 and "unknown method_name 'osem'" in done.stderr
    assert not (tmp_path / "out").exists()
