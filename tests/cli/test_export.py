"""``diffrecon dicom2nifti`` and ``diffrecon export`` (mirp FDG series -> DICOM -> real Orthanc), option checks."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pydicom
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.cli import main
from diffrecon.cli.export import add_export_arguments, export_from_args
from diffrecon.io.dicom_read import load_dicom_series
from diffrecon.io.nifti import load_nifti, save_nifti
from tests.io.orthanc import CLIENT_AET, DICOM_PORT, PASSWORD, SERVER_AET, USER, orthanc  # noqa: F401


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_export_arguments(parser.add_argument_group("export"))
    return parser.parse_args(list(argv))


def test_dicom2nifti_mirp_suv(shared_data, tmp_path, capsys):
    folder = shared_data / "mirp_sts001"
    assert main(["dicom2nifti", str(folder), "--list"]) == 0
    assert capsys.readouterr().out.count("\n") == 3  # raw PET, cropped PET, MR
    assert main(["dicom2nifti", str(folder), "--out", str(tmp_path / "x.nii.gz")]) == 2
    assert "3 series match" in capsys.readouterr().err
    out = tmp_path / "fdg.nii.gz"
    assert main(["dicom2nifti", str(folder / "FDG_PET_raw"), "--suv", "--out", str(out)]) == 0
    array, affine = load_nifti(out)
    assert array.shape == (128, 128, 267) and 60 < array.max() < 70
    np.testing.assert_allclose(np.diag(affine), [-4.6875, -4.6875, 3.27, 1], atol=1e-4)
    sidecar = json.loads((tmp_path / "fdg.json").read_text())
    assert sidecar["units"] == "SUVbw" and sidecar["modality"] == "PT"


def test_export_to_folder_joins_source_study(shared_data, tmp_path, monkeypatch):
    source = shared_data / "mirp_sts001" / "PET_cropped"
    volume = load_dicom_series(source)
    save_nifti(tmp_path / "mean.nii.gz", volume.array, volume.affine)
    save_nifti(tmp_path / "std.nii.gz", volume.array / 10, volume.affine)
    monkeypatch.setenv("DIFFRECON_DEID_KEY", "test-key")
    out = tmp_path / "dicom"
    assert main(["export", "--result", str(tmp_path / "mean.nii.gz"), "--std", str(tmp_path / "std.nii.gz"),
                 "--modality", "PT", "--method-description", "PET-DDS 50 steps", "--export-units", "GML",
                 "--export-source-dicom", str(source), "--export-dicom-dir", str(out), "--export-deidentify"]) == 0
    mean, std = load_dicom_series(out / "mean"), load_dicom_series(out / "std")
    np.testing.assert_allclose(mean.affine, volume.affine, atol=1e-4)
    assert np.abs(mean.array - volume.array).max() <= 26 / 32767  # per-slice int16 rescale of values < 26
    first, sd = mean.datasets[0], std.datasets[0]
    assert first.PatientIdentityRemoved == "YES" and first.PatientID != "STS_001" and first.Units == "GML"
    assert sd.StudyInstanceUID == first.StudyInstanceUID != volume.datasets[0].StudyInstanceUID
    assert sd.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert json.loads((out / "export_report.json").read_text())["ok"] is True


def test_export_from_args_for_other_commands(tmp_path):
    volume, affine = torch.rand(4, 3, 2), torch.eye(4, dtype=torch.float64)
    assert export_from_args(_args(), volume, affine, modality="MR", method_description="TV") is None
    report = export_from_args(_args("--export-dicom-dir", str(tmp_path / "d")), volume, affine, modality="MR",
                              method_description="TV", std_volume=volume / 2)
    assert report.ok and [len(s.files) for s in report.series] == [2, 2]
    assert pydicom.dcmread(report.series[0].files[0]).Modality == "MR"


@pytest.mark.parametrize("argv,message", [
    (["--pacs-host", "pacs"], "--pacs-called-aet is required"),
    (["--pacs-host", "pacs", "--pacs-called-aet", "X", "--pacs-port", "0"], "--pacs-port must be"),
    (["--stow-url", "pacs:8042"], "--stow-url 'pacs:8042'; expected an http"),
    (["--stow-url", "http://pacs", "--stow-user", "me"], "DIFFRECON_STOW_PASSWORD is not set"),
    (["--export-dicom-dir", "d", "--export-deidentify"], "DIFFRECON_DEID_KEY"),
    (["--export-dicom-dir", "d", "--export-units", "KG"], "--export-units"),
    (["--export-source-dicom", "src"], "needs --export-dicom-dir"),
    (["--export-dicom-dir", "d", "--export-source-dicom", "absent"], "--export-source-dicom: folder"),
])
def test_bad_export_options(argv, message, monkeypatch, tmp_path):
    monkeypatch.delenv("DIFFRECON_STOW_PASSWORD", raising=False)
    monkeypatch.delenv("DIFFRECON_DEID_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=message):
        export_from_args(_args(*argv), np.ones((2, 2, 2)), np.eye(4), modality="PT", method_description="OSEM")
    assert not (tmp_path / "d").exists()  # refused before writing anything


@pytest.mark.integration
def test_export_mirp_series_to_orthanc_by_c_store_and_stow(shared_data, tmp_path, orthanc, monkeypatch,  # noqa: F811
                                                           capsys):
    source = shared_data / "mirp_sts001" / "FDG_PET_raw"
    volume = load_dicom_series(source)
    save_nifti(tmp_path / "osem.nii.gz", volume.array, volume.affine)
    monkeypatch.setenv("DIFFRECON_STOW_PASSWORD", PASSWORD)
    argv = ["export", "--result", str(tmp_path / "osem.nii.gz"), "--modality", "PT", "--method-description",
            "OSEM 4x8", "--export-units", "BQML", "--export-source-dicom", str(source),
            "--export-dicom-dir", str(tmp_path / "dicom"), "--pacs-host", "127.0.0.1", "--pacs-port",
            str(DICOM_PORT), "--pacs-called-aet", SERVER_AET, "--pacs-calling-aet", CLIENT_AET,
            "--stow-url", orthanc.dicomweb_url, "--stow-user", USER]
    with orthanc.client():
        assert main(argv) == 0
        output = capsys.readouterr().out
        assert "all 267 instances present (267 sent now" in output  # C-STORE sent them
        assert "all 267 instances present (0 sent now, 267 already there)" in output  # STOW found them there
        written = load_dicom_series(tmp_path / "dicom" / "mean")
        ids = orthanc.instances_of_series(written.series_uid)
        assert len(ids) == 267
        tags = orthanc.rest(f"/instances/{ids[0]}/simplified-tags")
        assert tags["StudyInstanceUID"] == volume.datasets[0].StudyInstanceUID and tags["PatientID"] == "STS_001"
        dimse_only = argv[:argv.index("--stow-url")]
        assert main(dimse_only) == 0  # rerun: nothing left to send
        assert "(0 sent now, 267 already there)" in capsys.readouterr().out
        wrong = [value if value != SERVER_AET else "WRONGAET" for value in dimse_only]
        assert main(wrong) == 2
        assert "rejected the association" in capsys.readouterr().err
    np.testing.assert_allclose(written.array, volume.array, atol=float(volume.array.max()) / 32767)
