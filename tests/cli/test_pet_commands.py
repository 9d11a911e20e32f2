"""The PET command line end to end: simulate -> recon, and the demo, with real files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.io.nifti import load_nifti
from diffrecon.io.sinogram import load_sinogram
from diffrecon.physics.geometry import get_preset


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "--out", str(out), "--seed", "20001", "--preset", "demo2d", "--count-level", "full",
                 "--lesions", "0"]) == 0
    return out


def test_simulate_writes_images_and_sinograms(simulated):
    info = json.loads((simulated / "simulation.json").read_text())
    sinogram, scanner = load_sinogram(simulated / "sinogram.npz")
    assert scanner == get_preset("demo2d").scanner
    assert sinogram.shape == scanner.data_shape
    assert abs(sinogram.sum() - info["true_counts"] - info["background_counts"]) < 0.01 * sinogram.sum()
    fdg, affine = load_nifti(simulated / "fdg.nii.gz")
    np.testing.assert_allclose(affine, get_preset("demo2d").grid.affine)


def test_demo_writes_volumes_panel_and_metrics(tmp_path):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    for name in ("truth_fdg.nii.gz", "osem.nii.gz", "map_rdp.nii.gz", "panel.png", "metrics.md", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for row in metrics.values():
        assert row["psnr_db"] > 20 and 0.5 < row["ssim"] <= 1 and row["nrmse"] < 0.5
    # the penalty trades noise for resolution: less white-matter noise than OSEM
    assert metrics["MAP-RDP"]["white_matter_cov"] < metrics["OSEM"]["white_matter_cov"]


@pytest.mark.parametrize("argv,message", [
    (["simulate", "--out", "x", "--seed", "3"], "seed 3 is a train subject"),
    (["simulate", "--out", "x", "--seed", "20000", "--preset", "petmr"], "unknown preset 'petmr'"),
    (["demo", "--out", "x", "--count-level", "2%"], "unknown count_level '2%'"),
])
def test_bad_command_lines_fail_clearly(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written before the error
