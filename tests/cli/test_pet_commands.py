"""The PET command line end to end: simulate -> recon, and the demo, with real files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffrecon.checks import InputError
from diffrecon.cli import main
from diffrecon.io import figures, results
from diffrecon.io.nifti import load_nifti
from diffrecon.io.sinogram import load_sinogram
from diffrecon.physics.geometry import get_preset
from tests.conftest import simulate_case


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    return simulate_case(tmp_path_factory.mktemp("sim"), count_level="full", lesions=0)


def test_simulate_writes_images_and_sinograms(simulated):
    info = json.loads((simulated / "simulation.json").read_text())
    sinogram, scanner = load_sinogram(simulated / "sinogram.npz")
    assert scanner == get_preset("demo2d").scanner
    assert sinogram.shape == scanner.data_shape
    assert abs(sinogram.sum() - info["true_counts"] - info["background_counts"]) < 0.01 * sinogram.sum()
    fdg, affine = load_nifti(simulated / "fdg.nii.gz")
    np.testing.assert_allclose(affine, get_preset("demo2d").grid.affine)


@pytest.mark.parametrize("argv,message", [
    (["simulate", "--out", "x", "--seed", "3"], "seed 3 is a train subject"),
    (["simulate", "--out", "x", "--seed", "20000", "--preset", "petmr"], "unknown preset 'petmr'"),
    (["demo", "--out", "x", "--count-level", "2000%"], "--count-level must be 'full', a percentage"),
    (["demo", "--out", "x", "--device", "tpu9"], "--device 'tpu9' is not a torch device"),
    pytest.param(["demo", "--out", "/sys/diffrecon_out"], "--out '/sys/diffrecon_out' cannot be created",
                 marks=pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="no /sys file system here")),
])
def test_bad_command_lines_fail_clearly(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written before the error


def _recon(simulated, out, method, *extra):
    return main(["recon", "--method", method, "--out", str(out), "--sinogram", str(simulated / "sinogram.npz"),
                 "--multiplicative", str(simulated / "multiplicative.npz"), "--additive",
                 str(simulated / "additive.npz"), "--psf-fwhm", "4.5", "--reference", str(simulated / "fdg.nii.gz"),
                 *extra])


@pytest.mark.parametrize("method,extra", [("mlem", ["--iterations", "8"]), ("osem", []),
                                          ("map-rdp", ["--beta", "0.3"]), ("bowsher", ["--mr", "t1.nii.gz"])])
def test_recon_methods_from_files(simulated, tmp_path, method, extra):
    extra = [str(simulated / e) if e.endswith(".nii.gz") else e for e in extra]
    assert _recon(simulated, tmp_path, method, *extra) == 0
    image, affine = load_nifti(tmp_path / f"{method}.nii.gz")
    np.testing.assert_allclose(affine, get_preset("demo2d").grid.affine)
    assert image.min() >= 0
    report = json.loads((tmp_path / f"{method}.json").read_text())
    assert report["metrics"][method]["nrmse"] < 0.6 and (tmp_path / f"{method}.png").stat().st_size > 0
    if method == "mlem":
        assert len(report["log_likelihood"]) == 8
        assert np.all(np.diff(report["log_likelihood"]) >= 0)


def recorded_panels(monkeypatch, module) -> list[dict]:
    """The options of every panel ``module`` draws (drawn as usual)."""
    panels, save = [], module.save_panel
    monkeypatch.setattr(module, "save_panel", lambda path, columns, **options: (panels.append(options),
                                                                                save(path, columns, **options))[1])
    return panels


def test_recon_panel_in_the_chosen_colormap_with_units(simulated, tmp_path, monkeypatch):
    panels = recorded_panels(monkeypatch, results)
    assert _recon(simulated, tmp_path, "osem", "--iterations", "1", "--colormap", "hot") == 0
    assert [(p["cmap"], p["quantity"]) for p in panels] == [("hot", "activity (a.u.)")]


def test_demo_panel_colormap_and_metrics_table(tmp_path, monkeypatch, capsys):
    """``--colormap`` reaches the panel; the table printed is the one written to metrics.md."""
    panels = recorded_panels(monkeypatch, figures)
    assert main(["demo", "--out", str(tmp_path), "--preset", "demo2d", "--count-level", "full",
                 "--colormap", "hot"]) == 0
    assert [(p["cmap"], p["quantity"]) for p in panels] == [("hot", "activity (a.u.)")]
    table = (tmp_path / "metrics.md").read_text()
    assert table.startswith("| method | PSNR (dB) | SSIM | NRMSE (brain) | CRC (hot lesions) |")
    assert table.count("\n") == 5  # header, rule, three methods
    assert table in capsys.readouterr().out


def test_demo_refuses_another_colormap_before_any_work(tmp_path):
    from diffrecon.pipeline import run_demo

    with pytest.raises(InputError, match="colormap 'jet'; expected one of gray_r, hot"):
        run_demo(tmp_path / "out", preset="demo2d", colormap="jet")
    assert not (tmp_path / "out").exists()


def test_recon_refuses_inconsistent_inputs(simulated, tmp_path, capsys):
    bad_grid = tmp_path / "mu.nii.gz"
    from diffrecon.io.nifti import save_nifti

    save_nifti(bad_grid, np.zeros((10, 10, 1)), np.eye(4))
    cases = [
        (["--mu-map", str(bad_grid)], "--mu-map (shape (10, 10, 1), voxels (1.0, 1.0, 1.0) mm) covers 0% of the "
                                     "reconstruction grid"),
        (["--psf-fwhm", "-1"], "--psf-fwhm must be a finite number >= 0"),
    ]
    for extra, message in cases:
        assert _recon(simulated, tmp_path / "out", "osem", *extra) == 2
        assert message in capsys.readouterr().err
    assert main(["recon", "--method", "bowsher", "--out", str(tmp_path / "out"), "--sinogram",
                 str(simulated / "sinogram.npz")]) == 2
    assert "--mr" in capsys.readouterr().err
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((simulated / "sinogram.npz").read_bytes()[:1000])
    assert main(["recon", "--method", "osem", "--out", str(tmp_path / "out"), "--sinogram", str(truncated)]) == 2
    assert "truncated.npz" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_recon_reads_stir_interfile_written_by_simulate(tmp_path):
    assert main(["simulate", "--out", str(tmp_path), "--seed", "20001", "--preset", "demo2d", "--format", "hs"]) == 0
    assert (tmp_path / "sinogram.hs").exists() and (tmp_path / "sinogram.s").exists()
    with pytest.warns(UserWarning, match="even number of tangential bins"):
        code = main(["recon", "--method", "osem", "--out", str(tmp_path / "recon"), "--sinogram",
                     str(tmp_path / "sinogram.hs"), "--multiplicative", str(tmp_path / "multiplicative.hs"),
                     "--additive", str(tmp_path / "additive.hs"), "--psf-fwhm", "4.5"])
    assert code == 0
    image, _ = load_nifti(tmp_path / "recon" / "osem.nii.gz")
    truth, _ = load_nifti(tmp_path / "fdg.nii.gz")
    from diffrecon.metrics import nrmse

    assert nrmse(image, truth) < 0.5
