"""The personalised-prior bundle through ``python -m monai.bundle run`` on its built-in demo (3D phantom target,
training-split phantoms as the other subjects) with tiny settings: the prior, its QC and the reconstruction are
written; killed during the fine-tuning, a rerun continues from the checkpoint without registering again; a
finished run reuses every stage; a bad method name is refused in one line before any work."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import nibabel as nib

from diffrecon.priors.weights import latest_checkpoint
from tests.bundles.conftest import BUNDLES
from tests.bundles.test_bundle_files import REQUIRED
from tests.bundles.test_pet_diffusion_bundles import run_bundle

BUNDLE = "pet_personalised"
TINY = ["--demo_subjects", "2", "--mixtures", "1", "--orientations", "['axial']", "--epochs", "2", "--workers", "1",
        "--threads", "1", "--num_samples", "1", "--chunk_size", "8",
        "--method_settings", "{'steps': 2, 'lam': 0.05, 'warm_start': 0.3}"]


def test_metadata_and_docs():
    meta = json.loads((BUNDLES / BUNDLE / "configs/metadata.json").read_text())
    assert [key for key in REQUIRED if key not in meta] == [] and meta["version"] in meta["changelog"]
    assert (BUNDLES / BUNDLE / "LICENSE").is_file() and (BUNDLES / BUNDLE / "docs" / "README.md").is_file()


def test_demo_resumes_after_a_kill_and_reuses_finished_stages(tmp_path):
    configs = BUNDLES / BUNDLE / "configs"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs / "inference.json"),
               "--meta_file", str(configs / "metadata.json"), "--bundle_root", str(BUNDLES / BUNDLE),
               "--output_dir", str(tmp_path), *TINY]
    checkpoint = tmp_path / "prior" / "runs" / "axial" / "checkpoints" / "checkpoint_epoch=1.pt"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    # MONAI writes checkpoints in place: wait until the first one is whole (a truncated one is skipped on resume,
    # tests/priors/test_weights.py), then kill the run during the fine-tuning's second epoch
    while latest_checkpoint(checkpoint.parent) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.is_file() and not (tmp_path / "prior" / "personalised.json").exists()
    registration = tmp_path / "prior" / "pseudo_pet" / "registrations" / "subject_00000" / "registration.json"
    stamp = os.stat(registration).st_mtime_ns

    done = run_bundle(BUNDLE, "--output_dir", str(tmp_path), *TINY)
    assert done.returncode == 0, errors(done.stderr)
    assert os.stat(registration).st_mtime_ns == stamp  # registrations were not redone
    log = tmp_path / "prior" / "runs" / "axial" / "train.log"
    commands = [line for line in log.read_text().splitlines() if line.startswith("$ ")]
    assert len(commands) == 2 and "--resume_ckpt=" in commands[1]
    record = json.loads((tmp_path / "prior" / "personalised.json").read_text())
    assert record["fine_tuned"] == ["axial"] and len(record["set"]["accepted"]) == 2
    assert all(q["after"]["correlation"] > q["before"]["correlation"] for q in record["quality"])
    assert (tmp_path / "prior" / "pseudo_pet" / "qc" / "subject_00000.png").is_file()
    report = json.loads((tmp_path / "pet-dds.json").read_text())
    assert report["network_evaluations"] == 2 and report["phantom_seed"] == 20000
    assert nib.load(tmp_path / "pet-dds.nii.gz").shape == (64, 72, 56)

    before = log.read_text()
    again = run_bundle(BUNDLE, "--output_dir", str(tmp_path), *TINY)
    assert again.returncode == 0, errors(again.stderr)
    assert log.read_text() == before  # nothing trained again


def errors(stderr: str) -> str:
    """The error lines of a failed run's output (the cause comes first in a chained traceback) and its end."""
    lines = stderr.splitlines()
    causes = [line for line in lines if "Error" in line or "error:" in line]
    return "\n".join(causes[:20]) + "\n...\n" + "\n".join(lines[-10:])


def test_an_unknown_method_is_refused_before_any_work(tmp_path):
    done = run_bundle(BUNDLE, "--output_dir", str(tmp_path / "out"), "--method_name", "osem")
    assert done.returncode == 2 and "unknown method_name 'osem'" in done.stderr
    assert not (tmp_path / "out").exists()
