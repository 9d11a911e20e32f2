"""``diffrecon dicom2nifti``, ``diffrecon export`` and ``export_result`` (mirp FDG series -> DICOM -> real
Orthanc): option checks, the PACS asked before any work, the report kept when a transfer fails."""
from __future__ import annotations

import argparse
import json
import re
import socket

import numpy as np
import pydicom
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.cli import main
from diffrecon.cli.export import add_export_arguments, check_export_args, export_from_args
from diffrecon.io.dicom_deid import Deidentifier
from diffrecon.io.dicom_read import load_dicom_series
from diffrecon.io.export import export_result
from diffrecon.io.nifti import load_nifti, save_nifti
from diffrecon.io.pacs import DimseTarget, StowTarget
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


def test_export_result_library_call(tmp_path):
    """Tensors in, a folder with the mean and SD series and export_report.json out; no argparse involved."""
    volume = torch.rand(4, 3, 2, dtype=torch.float64)
    report = export_result(volume, torch.eye(4), volume / 3, modality="PT", method_description="PET-DDS",
                           units="BQML", dicom_dir=tmp_path / "out", deidentifier=Deidentifier("key", "SUBJ01"))
    assert report.ok and [s.folder.name for s in report.series] == ["mean", "std"]
    mean, std = (load_dicom_series(tmp_path / "out" / name) for name in ("mean", "std"))
    np.testing.assert_allclose(mean.array, volume.numpy(), atol=1 / 32767)
    assert mean.datasets[0].Units == "BQML" and mean.datasets[0].PatientID == "SUBJ01"
    assert std.datasets[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == mean.datasets[0].SOPInstanceUID
    saved = json.loads((tmp_path / "out" / "export_report.json").read_text())
    assert saved["ok"] is True and [s["instances"] for s in saved["series"]] == [2, 2]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_failed_transfers_keep_the_series_and_the_report(tmp_path, monkeypatch):
    """A PACS that went away after the check, then an interruption: the JSON report says what is known."""
    volume, gone = np.ones((4, 3, 2)), StowTarget(f"http://127.0.0.1:{_closed_port()}/dicom-web", timeout=2.0)
    report = export_result(volume, np.eye(4), modality="PT", method_description="OSEM", targets=[gone],
                           dicom_dir=tmp_path / "a", retries=0)
    saved = json.loads((tmp_path / "a" / "export_report.json").read_text())["transfers"][0]
    assert not report.ok and saved["verified"] is False and saved["sent"] == 0 and len(saved["missing"]) == 2
    assert all(reason.startswith("not sent: cannot reach") for reason in saved["failed"].values())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("diffrecon.io.export.send_to_pacs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_result(volume, np.eye(4), modality="PT", method_description="OSEM", targets=[gone],
                      dicom_dir=tmp_path / "b")
    saved = json.loads((tmp_path / "b" / "export_report.json").read_text())
    assert saved["ok"] is False and saved["error"] == "export stopped by KeyboardInterrupt: "
    assert len(list((tmp_path / "b" / "mean").glob("*.dcm"))) == 2


@pytest.mark.parametrize("change,message", [
    ({"modality": "CT"}, "unknown modality 'CT'"),
    ({"units": "KG"}, "unknown units 'KG'"),
    ({"volume": np.ones((4, 3))}, r"volume has shape \(4, 3\); expected \(x, y, z\)"),
    ({"volume": np.full((4, 3, 2), np.nan)}, "volume contains 24 NaN"),
    ({"affine": np.eye(3)}, "affine has shape"),
    ({"std": np.ones((4, 3, 3))}, r"std has shape \(4, 3, 3\); expected the volume's shape \(4, 3, 2\)"),
    ({"dicom_dir": None}, "nothing to export: give dicom_dir and/or targets"),
    ({"targets": ["pacs:104"]}, r"targets\[0\] is str; expected DimseTarget or StowTarget"),
    ({"deidentifier": "key"}, "deidentifier is str; expected a Deidentifier"),
    ({"retries": -1}, "retries must be an integer >= 0"),
    ({"backoff": float("nan")}, "backoff must be a finite number >= 0"),
    ({"source": "absent"}, "source: folder 'absent' does not exist"),
])
def test_export_result_refuses_bad_parameters_before_writing(change, message, tmp_path):
    settings = {"volume": np.ones((4, 3, 2)), "affine": np.eye(4), "std": None, "modality": "PT",
                "method_description": "OSEM", "dicom_dir": tmp_path / "out", **change}
    with pytest.raises(InputError, match=message):
        export_result(settings.pop("volume"), settings.pop("affine"), **settings)
    assert not (tmp_path / "out").exists()


def test_checked_options_are_used_as_checked(tmp_path):
    """export_from_args takes what check_export_args returned and does not read (or check) the options again."""
    args = _args("--export-dicom-dir", str(tmp_path / "d"), "--export-units", "BQML")
    options = check_export_args(args, "PT")
    assert options.units == "BQML" and options.dicom_dir == tmp_path / "d" and options.targets == []
    args.export_units, args.export_dicom_dir = "not checked again", None
    report = export_from_args(args, np.ones((2, 2, 2)), np.eye(4), modality="PT", method_description="OSEM",
                              options=options)
    assert report.ok and pydicom.dcmread(report.series[0].files[0]).Units == "BQML"
    assert check_export_args(_args(), "PT") is None


@pytest.mark.parametrize("argv,message", [
    (["--pacs-host", "pacs"], "--pacs-called-aet is required"),
    (["--pacs-host", "pacs", "--pacs-called-aet", "X", "--pacs-port", "0"], "--pacs-port must be"),
    (["--stow-url", "pacs:8042"], "--stow-url 'pacs:8042'; expected an http"),
    (["--stow-url", "http://pacs", "--stow-user", "me"], "DIFFRECON_STOW_PASSWORD is not set"),
    (["--export-dicom-dir", "d", "--export-deidentify"], "DIFFRECON_DEID_KEY"),
    (["--export-dicom-dir", "d", "--export-units", "KG"], "--export-units"),
    (["--export-source-dicom", "src"], "needs --export-dicom-dir"),
    (["--export-dicom-dir", "d", "--export-source-dicom", "absent"], "--export-source-dicom: folder"),
    (["--export-dicom-dir", "a_file/d"], "--export-dicom-dir 'a_file/d': 'a_file' is a file"),
    (["--export-dicom-dir", "d", "--pacs-retries", "-1"], "--pacs-retries and --pacs-backoff must be >= 0"),
])
def test_bad_export_options(argv, message, monkeypatch, tmp_path):
    monkeypatch.delenv("DIFFRECON_STOW_PASSWORD", raising=False)
    monkeypatch.delenv("DIFFRECON_DEID_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").write_text("")
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


def _export_argv(tmp_path, *options: str) -> list[str]:
    save_nifti(tmp_path / "osem.nii.gz", np.random.default_rng(0).random((6, 5, 3)).astype(np.float32), np.eye(4))
    return ["export", "--result", str(tmp_path / "osem.nii.gz"), "--modality", "PT", "--method-description", "OSEM",
            "--export-dicom-dir", str(tmp_path / "dicom"), *options]


@pytest.mark.integration
@pytest.mark.parametrize("options,message", [
    (["--pacs-called-aet", "WRONGAET"], r"rejected the association: check the called AE title 'WRONGAET' "
                                        r"\(--pacs-called-aet\)"),
    (["--pacs-called-aet", SERVER_AET, "--pacs-port", str(DICOM_PORT + 1)],
     r"cannot open an association .*check the host and port \(--pacs-host, --pacs-port\)"),
    (["--stow-url", "http://127.0.0.1:8042/no-dicom-web", "--stow-user", USER],
     r"\(--stow-url\) answered a QIDO-RS search with HTTP 404"),
    (["--stow-url", "http://127.0.0.1:8042/dicom-web"], r"refused the credentials \(HTTP 401\): check --stow-user"),
])
def test_pacs_refused_before_anything_is_written(orthanc, tmp_path, capsys, monkeypatch,  # noqa: F811
                                                 options, message):
    monkeypatch.setenv("DIFFRECON_STOW_PASSWORD", PASSWORD)
    host = [] if "--stow-url" in options else ["--pacs-host", "127.0.0.1", "--pacs-port", str(DICOM_PORT)]
    with orthanc.client():
        assert main(_export_argv(tmp_path, *host, *options)) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "dicom").exists()


@pytest.mark.integration
def test_refused_transfer_keeps_the_series_and_the_report(orthanc, tmp_path, capsys):  # noqa: F811
    """Orthanc answers the C-ECHO of an AE title it does not know but refuses it everything else."""
    argv = _export_argv(tmp_path, "--pacs-host", "127.0.0.1", "--pacs-port", str(DICOM_PORT), "--pacs-called-aet",
                        SERVER_AET, "--pacs-calling-aet", "STRANGER", "--pacs-retries", "0")
    with orthanc.client(), pytest.raises(SystemExit) as exit_status:
        main(argv)
    assert exit_status.value.code == 1
    err = capsys.readouterr().err
    assert "the PACS refused us: fix the option it names" in err
    assert len(list((tmp_path / "dicom" / "mean").glob("*.dcm"))) == 3
    saved = json.loads((tmp_path / "dicom" / "export_report.json").read_text())
    transfer = saved["transfers"][0]
    assert saved["ok"] is False and transfer["sent"] == 0 and len(transfer["missing"]) == 3
    assert "calling AE title 'STRANGER' (--pacs-calling-aet)" in transfer["refusal"]


@pytest.mark.integration
def test_export_result_to_both_targets(orthanc, tmp_path):  # noqa: F811
    """The library call with a PACS and a DICOMweb server, without a folder (the series go via a temporary one)."""
    volume = np.random.default_rng(1).random((6, 5, 3))
    with orthanc.client():
        report = export_result(volume, np.eye(4), modality="MR", method_description="TV",
                               targets=[DimseTarget("127.0.0.1", DICOM_PORT, SERVER_AET, CLIENT_AET),
                                        StowTarget(orthanc.dicomweb_url, USER, PASSWORD)])
        assert report.ok, report.summary()
        assert [(len(t.sent), len(t.already_present)) for t in report.transfers] == [(3, 0), (0, 3)]
        assert len(orthanc.instances_of_series(report.series[0].series_uid)) == 3
    assert not report.series[0].folder.exists()
