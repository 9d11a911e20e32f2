"""The command line, the bundles and the library share one vocabulary (option ``--name-with-hyphens`` sets setting
``name_with_underscores``), and refusals use the user's words: the option typed, the image given, the option that
picks a series."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from diffrecon.cli import build_parser, main
from diffrecon.io.nifti import save_nifti

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def _recon_parser() -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["recon"]


@pytest.mark.parametrize("config", ["mri_inference.json", "pet_inference.json"])
def test_recon_options_are_the_bundle_settings_with_hyphens(config):
    """Each case setting of the common bundle config that recon also takes is its option without the hyphens."""
    settings = json.loads((BUNDLES / "common" / config).read_text())
    options = {action.dest: action.option_strings for action in _recon_parser()._actions}
    case = [key for key in ("kspace", "layout", "readout_oversampling", "slice_index", "mask", "acceleration",
                            "center_fraction", "sinogram", "multiplicative", "additive", "mu_map", "grid", "psf_fwhm",
                            "reference", "mr") if key in settings]
    assert case
    for key in case:
        assert f"--{key.replace('_', '-')}" in options.get(key, []), key


def test_the_old_option_names_still_work():
    args = _recon_parser().parse_args(["--method", "zero-filled", "--out", "o", "--kspace-layout", "cyx",
                                       "--slice", "2"])
    assert (args.layout, args.slice_index) == ("cyx", 2)


@pytest.mark.parametrize("option", ["--slice-index", "--slice"])
def test_a_slice_outside_the_kspace_is_named_by_the_option(tmp_path, capsys, option):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "k.npy", (rng.normal(size=(3, 2, 16, 16)) + 1j).astype(np.complex64))
    code = main(["recon", "--method", "zero-filled", "--kspace", str(tmp_path / "k.npy"), "--layout", "bcxy",
                 option, "5", "--out", str(tmp_path / "o")])
    assert code == 2
    assert f"error: --slice-index 5 is outside the 3 slices of '{tmp_path / 'k.npy'}'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("option", ["--layout", "--kspace-layout"])
def test_a_layout_that_does_not_fit_the_kspace_is_named_by_the_option(tmp_path, capsys, option):
    np.save(tmp_path / "k.npy", np.ones((16, 16), np.complex64))
    code = main(["recon", "--method", "zero-filled", "--kspace", str(tmp_path / "k.npy"), option, "cxy",
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and f"error: --layout 'cxy' does not describe the shape (16, 16) of kspace file " \
                          f"'{tmp_path / 'k.npy'}'" in err
    assert "kspace layout" not in err and not (tmp_path / "o").exists()


def test_an_image_too_small_to_score_is_called_an_image(tmp_path, capsys):
    save_nifti(tmp_path / "thin.nii.gz", np.random.default_rng(0).random((6, 64, 1)).astype(np.float32), np.eye(4))
    code = main(["recon", "--method", "dds", "--image", str(tmp_path / "thin.nii.gz"), "--acceleration", "2",
                 "--steps", "1", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "error: --image has shape (6, 64); expected at least 11 voxels per in-plane side" in err
    assert "kspace" not in err and " x has " not in err and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def two_series(tmp_path_factory) -> Path:
    """A folder holding two PT series (the mean and SD series an export writes)."""
    from diffrecon.io.export import export_result

    root = tmp_path_factory.mktemp("two_series")
    volume = np.random.default_rng(0).random((4, 3, 2))
    export_result(volume, np.eye(4), volume / 3, modality="PT", method_description="OSEM", dicom_dir=root / "made")
    both = root / "both"
    both.mkdir()
    for series in ("mean", "std"):
        for file in (root / "made" / series).glob("*.dcm"):
            (both / f"{series}_{file.name}").write_bytes(file.read_bytes())
    save_nifti(root / "result.nii.gz", volume.astype(np.float32), np.eye(4))
    with_nan = volume.astype(np.float32)
    with_nan[1, 1, 1] = np.nan
    save_nifti(root / "nan.nii.gz", with_nan, np.eye(4))
    return root


def test_export_advice_for_two_source_series_names_the_export_option(two_series, tmp_path, capsys):
    code = main(["export", "--result", str(two_series / "result.nii.gz"), "--modality", "PT", "--method-description",
                 "OSEM", "--export-dicom-dir", str(tmp_path / "d"), "--export-source-dicom", str(two_series / "both")])
    err = capsys.readouterr().err
    assert code == 2 and "--export-source-dicom: 2 series match; choose one with --export-source-series-uid UID" in err
    assert "--series-uid" not in err.replace("--export-source-series-uid", "")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("option", ["--result", "--std"])
def test_export_refuses_a_nan_image_before_writing(two_series, tmp_path, capsys, option):
    images = {"--result": two_series / "result.nii.gz", "--std": two_series / "result.nii.gz",
              option: two_series / "nan.nii.gz"}
    code = main(["export", "--result", str(images["--result"]), "--std", str(images["--std"]), "--modality", "PT",
                 "--method-description", "OSEM", "--export-dicom-dir", str(tmp_path / "d")])
    assert code == 2
    assert (f"error: {option} contains 1 NaN/Inf value(s); expected finite numbers (in '{two_series / 'nan.nii.gz'}')"
            in capsys.readouterr().err)
    assert not (tmp_path / "d").exists()


def test_a_centre_too_narrow_for_the_coil_maps_names_the_centre_fraction(tmp_path, capsys):
    """A small --image at the default --center-fraction leaves 2 calibration lines: the refusal names the option
    that widens them (the library's error said "mask" and "centre fraction")."""
    save_nifti(tmp_path / "small.nii.gz", np.random.default_rng(0).random((33, 31, 1)).astype(np.float32), np.eye(4))
    argv = ["recon", "--method", "zero-filled", "--image", str(tmp_path / "small.nii.gz"), "--acceleration", "4"]
    code = main([*argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "error: --center-fraction 0.08 gives a fully sampled centre of 2 samples on the 33x31 " \
                         "grid; ESPIRiT coil maps need at least 4: raise --center-fraction" in err
    assert not (tmp_path / "o").exists()
    assert main([*argv, "--center-fraction", "0.2", "--out", str(tmp_path / "wider")]) == 0
