"""The classical PET reconstruction bundle through ``python -m monai.bundle run``: the built-in demo case with
no overrides, the user's case with overrides (the same image as the CLI), its DICOM export, refusals."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.io.dicom_read import load_dicom_series
from diffrecon.io.nifti import load_nifti, save_nifti
from tests.bundles.conftest import BUNDLES, assert_refused
from tests.bundles.test_bundle_files import REQUIRED

BUNDLE = BUNDLES / "pet_classical"


def run_bundle(*settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file",
                           str(BUNDLE / "configs" / "inference.json"), "--meta_file",
                           str(BUNDLE / "configs" / "metadata.json"), "--bundle_root", str(BUNDLE), *settings],
                          capture_output=True, text=True, timeout=600)


def test_metadata_has_required_fields():
    meta = json.loads((BUNDLE / "configs/metadata.json").read_text())
    assert [key for key in REQUIRED if key not in meta] == [] and meta["version"] in meta["changelog"]
    assert (BUNDLE / "LICENSE").is_file() and (BUNDLE / "docs" / "README.md").is_file()


def test_runs_the_builtin_demo_case_with_no_overrides(tmp_path):
    done = run_bundle("--output_dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "osem.json").read_text())
    assert report["description"] == "OSEM 4 iterations x 8 subsets" and report["phantom_seed"] == 20000
    assert report["metrics"]["osem"]["nrmse"] < 0.45 and (tmp_path / "osem.png").stat().st_size > 0


def test_the_bundle_the_cli_and_python_share_one_path(tmp_path, demo2d_case):
    case = demo2d_case
    assert main(["recon", "--method", "bowsher", "--beta", "0.1", "--iterations", "2", "--sinogram", str(case),
                 "--mr", str(case / "t1.nii.gz"), "--out", str(tmp_path / "cli")]) == 0
    done = run_bundle("--output_dir", str(tmp_path / "bundle"), "--sinogram", str(case), "--mr",
                      str(case / "t1.nii.gz"), "--method_name", "bowsher", "--method_options",
                      "{'beta': 0.1, 'iterations': 2}", "--export_dicom_dir", str(tmp_path / "bundle" / "dicom"))
    assert done.returncode == 0, done.stderr[-2000:]
    from_cli, affine = load_nifti(tmp_path / "cli" / "bowsher.nii.gz")
    from_bundle, bundle_affine = load_nifti(tmp_path / "bundle" / "bowsher.nii.gz")
    np.testing.assert_array_equal(from_bundle, from_cli)
    np.testing.assert_array_equal(bundle_affine, affine)
    series = load_dicom_series(tmp_path / "bundle" / "dicom" / "mean")
    np.testing.assert_allclose(series.array, from_bundle, atol=float(from_bundle.max()) / 32767)
    assert json.loads((tmp_path / "bundle" / "dicom" / "export_report.json").read_text())["ok"] is True


@pytest.mark.parametrize("settings,message", [
    (["--method_name", "osem", "--method_options", "{'beta': 0.1}"], "method 'osem' takes no option 'beta'"),
    (["--method_nme", "mlem"], "unknown setting 'method_nme' (did you mean 'method_name'?)"),
    (["--method_name", "fbp"], "unknown method 'fbp'"),
    (["--colormap", "jet"], "colormap 'jet'; expected one of gray_r, hot"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path, settings, message):
    assert_refused([str(BUNDLE / "configs" / "inference.json")], BUNDLE, tmp_path / "out", message, *settings)


def test_a_nan_in_the_reference_is_refused_before_any_work(tmp_path, demo2d_case):
    reference, affine = load_nifti(demo2d_case / "fdg.nii.gz")
    reference[3, 3, 0] = np.nan
    save_nifti(tmp_path / "nan.nii.gz", reference, affine)
    assert_refused([str(BUNDLE / "configs" / "inference.json")], BUNDLE, tmp_path / "out",
                   "reference contains 1 NaN/Inf value(s); expected finite numbers", "--sinogram", str(demo2d_case),
                   "--reference", str(tmp_path / "nan.nii.gz"))


@pytest.mark.parametrize("colormap,coloured", [("hot", True), ("gray_r", False)])
def test_the_colormap_setting_reaches_the_panel(tmp_path, colormap, coloured):
    """As ``diffrecon recon --colormap``: hot makes the reference and result columns coloured (red above blue),
    gray_r grey (the error column, right, is red-blue either way)."""
    from matplotlib.image import imread
    from monai.bundle.scripts import run

    run(config_file=str(BUNDLE / "configs" / "inference.json"), bundle_root=str(BUNDLE), output_dir=str(tmp_path),
        colormap=colormap, method_options={"iterations": 1})
    pixels = imread(tmp_path / "osem.png")[..., :3]
    pixels = pixels[:, :int(pixels.shape[1] * 0.6)]  # reference and osem with its colour bar
    assert (np.abs(pixels[..., 0] - pixels[..., 2]) > 0.3).mean() > 0.01 if coloured else \
        np.abs(pixels[..., 0] - pixels[..., 2]).max() < 0.05
