"""``bundles/common/cohort.json`` through ``python -m monai.bundle run``: the cohort of ``diffrecon cohort`` on a
local Ray (here one built-in demo case), and its refusals before any work."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from tests.bundles.conftest import COMMON, assert_refused

CONFIG = COMMON / "cohort.json"


def test_the_bundle_runs_a_demo_cohort_on_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG), "--bundle_root",
                           str(COMMON), "--output_dir", str(out), "--cases", "demo:1", "--methods", "['osem']",
                           "--method_options", "{'osem': {'iterations': 2}}", "--workers", "1", "--progress",
                           "False"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "1 done, 0 already complete, 0 failed of 1 (case, method) pairs" in done.stdout
    with open(out / "summary.csv", newline="") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["case"], row["method"], row["status"]) == ("demo_20000", "osem", "done")
    assert float(row["nrmse"]) < 0.5 and float(row["crc_hot_lesions"]) > 0  # the phantom's lesion masks score it
    assert (out / "demo_20000" / "osem" / "osem.nii.gz").is_file()


@pytest.mark.parametrize("settings,message", [
    (["--method_options", "{'mlem': {'iterations': 2}}"], "method_options names 'mlem', which are not among methods"),
    (["--methods", "['osem']", "--method_options", "{'osem': {'beta': 1}}"], "method 'osem' takes no option 'beta'"),
    (["--workers", "0"], "workers must be an integer >= 1"),
    (["--cases", "nowhere"], "cases 'nowhere' does not exist"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, settings, message):
    assert_refused([str(CONFIG)], COMMON, tmp_path / "out", message, *settings)
