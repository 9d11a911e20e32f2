"""scripts/gpu_check.py, what we run on any GPU machine we are lent, runs every diffusion bundle with tiny settings on
the CPU, so it cannot rot between GPU sessions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


def test_gpu_check_runs_every_diffusion_bundle_on_the_cpu(tmp_path):
    out = tmp_path / "check.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--devices", "cpu", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(out.read_text())
    runs = {row["bundle"]: row for row in record["runs"]}
    assert set(runs) == {"pet_dds", "pet_lisch", "pet_dps", "pet_naive", "pet_scd", "pet_deft", "dds_mri",
                         "score_mri", "dps_mri", "naive_mri", "mri_scd"}
    for name, row in runs.items():
        assert row["device"] == "cpu" and row["network_evaluations"] == (4 if name == "score_mri" else 2), row
        assert row["wall_s"] > 0 and row["seconds_network"] >= 0 and row["peak_memory_mb"] > 0
        comparison = "osem" if name.startswith("pet") else "zero-filled"
        assert comparison in row["metrics"] and len(row["metrics"]) == 2, row["metrics"]
        assert all(figures["nrmse"] > 0 for figures in row["metrics"].values())
    assert record["info"]["tiny"] and record["cpu_over_cuda_wall"] == {}
