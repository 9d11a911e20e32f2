"""``diffrecon recon`` with DICOM inputs (an MR series for Bowsher, a reference series) and DICOM/PACS export."""
from __future__ import annotations

import json

import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.io.dicom_read import load_dicom_series
from diffrecon.io.dicom_write import write_dicom_series
from diffrecon.io.nifti import load_nifti
from tests.io.orthanc import CLIENT_AET, DICOM_PORT, SERVER_AET, orthanc  # noqa: F401


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A simulated 2D scan and, as DICOM series in its patient coordinates, its FDG truth (PT) and T1 (MR) of one
    PET/MR session (the T1 joins the FDG series' study and frame of reference)."""
    out = tmp_path_factory.mktemp("scan")
    assert main(["simulate", "--out", str(out), "--seed", "20002", "--preset", "demo2d", "--count-level", "full",
                 "--lesions", "1"]) == 0
    source = None
    for name, modality in (("fdg", "PT"), ("t1", "MR")):
        image, affine = load_nifti(out / f"{name}.nii.gz")
        write_dicom_series(image, affine, out / f"{name}_dicom", modality=modality, method_description="scanner",
                           source=source)
        source = load_dicom_series(out / "fdg_dicom")
    return out


def _recon(scan, out, method, *extra) -> int:
    return main(["recon", "--method", method, "--out", str(out), "--sinogram", str(scan / "sinogram.npz"),
                 "--multiplicative", str(scan / "multiplicative.npz"), "--additive", str(scan / "additive.npz"),
                 "--iterations", "3", *extra])


def test_bowsher_with_an_mr_dicom_series_equals_the_nifti_mr(scan, tmp_path):
    assert _recon(scan, tmp_path / "nifti", "bowsher", "--mr", str(scan / "t1.nii.gz")) == 0
    assert _recon(scan, tmp_path / "dicom", "bowsher", "--mr", str(scan / "t1_dicom"),
                  "--reference", str(scan / "fdg_dicom")) == 0
    from_nifti, _ = load_nifti(tmp_path / "nifti" / "bowsher.nii.gz")
    from_dicom, _ = load_nifti(tmp_path / "dicom" / "bowsher.nii.gz")
    np.testing.assert_allclose(from_dicom, from_nifti, rtol=0, atol=1e-3 * from_nifti.max())
    assert json.loads((tmp_path / "dicom" / "bowsher.json").read_text())["metrics"]["bowsher"]["nrmse"] < 0.6


def test_a_folder_of_two_series_is_refused_with_advice_recon_can_follow(scan, tmp_path, capsys):
    out = tmp_path / "out"
    assert _recon(scan, out, "osem", "--reference", str(scan)) == 2  # fdg_dicom (PT) and t1_dicom (MR) below it
    error = capsys.readouterr().err
    assert f"--reference: 2 series match; convert the one you want with `diffrecon dicom2nifti {scan} --series-uid " \
           "UID --out FILE.nii.gz` and give that file: " in error
    assert not out.exists()
    uid = load_dicom_series(scan / "fdg_dicom").series_uid  # listed in the error; the advice, followed:
    assert main(["dicom2nifti", str(scan), "--series-uid", uid, "--out", str(tmp_path / "fdg.nii.gz")]) == 0
    assert _recon(scan, out, "osem", "--reference", str(tmp_path / "fdg.nii.gz")) == 0


def test_recon_exports_a_series_joining_the_source_study(scan, tmp_path, capsys):
    out = tmp_path / "osem"
    assert _recon(scan, out, "osem", "--export-source-dicom", str(scan / "fdg_dicom")) == 2
    assert "--export-source-dicom needs --export-dicom-dir" in capsys.readouterr().err
    assert not out.exists()  # refused before the reconstruction
    assert _recon(scan, out, "osem", "--export-source-dicom", str(scan / "fdg_dicom"),
                  "--export-dicom-dir", str(out / "dicom")) == 0
    image, affine = load_nifti(out / "osem.nii.gz")
    written, source = load_dicom_series(out / "dicom" / "mean"), load_dicom_series(scan / "fdg_dicom")
    np.testing.assert_allclose(written.affine, affine, atol=1e-4)
    np.testing.assert_allclose(written.array, image, atol=float(image.max()) / 32767)
    first = written.datasets[0]
    assert first.StudyInstanceUID == source.datasets[0].StudyInstanceUID
    assert first.SeriesInstanceUID != source.series_uid and "OSEM 3 iterations x 8 subsets" in first.SeriesDescription
    assert json.loads((out / "dicom" / "export_report.json").read_text())["ok"] is True


def test_mri_recon_exports_a_new_mr_study(shared_data, tmp_path, capsys):
    kspace = ["--kspace", str(shared_data / "twix_gre_siemens" / "gre_kspace_cha_lin_col.npy"), "--kspace-layout",
              "cyx", "--readout-oversampling", "2", "--acceleration", "4", "--mask", "random"]
    assert main(["recon", "--method", "zero-filled", "--out", str(tmp_path / "a"), *kspace,
                 "--export-dicom-dir", str(tmp_path / "d"), "--export-source-dicom", str(tmp_path)]) == 2
    assert "an MRI result cannot join a source study" in capsys.readouterr().err
    assert main(["recon", "--method", "zero-filled", "--out", str(tmp_path / "a"), *kspace,
                 "--export-dicom-dir", str(tmp_path / "d")]) == 0
    image, affine = load_nifti(tmp_path / "a" / "zero-filled.nii.gz")
    written = load_dicom_series(tmp_path / "d" / "mean")
    assert written.datasets[0].Modality == "MR" and written.array.shape == image.shape == (160, 160, 1)
    np.testing.assert_allclose(written.array, image, atol=float(image.max()) / 32767)


@pytest.mark.integration
def test_recon_sends_its_result_to_orthanc(scan, tmp_path, orthanc, capsys):  # noqa: F811
    argv = ["--export-source-dicom", str(scan / "fdg_dicom"), "--pacs-host", "127.0.0.1", "--pacs-port",
            str(DICOM_PORT), "--pacs-called-aet", SERVER_AET, "--pacs-calling-aet", CLIENT_AET]
    with orthanc.client():
        assert _recon(scan, tmp_path / "map", "map-rdp", "--beta", "0.3", *argv) == 0
        assert "all 1 instances present (1 sent now" in capsys.readouterr().out
        image, _ = load_nifti(tmp_path / "map" / "map-rdp.nii.gz")
        series = [s for s in orthanc.rest("/series?expand")
                  if "MAP-RDP" in s["MainDicomTags"].get("SeriesDescription", "")]
        assert len(series) == 1 and len(series[0]["Instances"]) == 1
