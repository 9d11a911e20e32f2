"""DICOM series writer: round trips, joining the source study, the linked SD series, validation, de-identification."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from pydicom import config

from diffrecon.checks import InputError
from diffrecon.io.dicom_deid import Deidentifier
from diffrecon.io.dicom_read import load_dicom_series, suv_factor
from diffrecon.io.dicom_write import write_dicom_series


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _volume(shape=(7, 6, 5)) -> np.ndarray:
    return np.random.default_rng(0).gamma(2.0, 3.0, size=shape).astype(np.float32)


@pytest.fixture(scope="module")
def fdg(shared_data):
    return load_dicom_series(shared_data / "mirp_sts001" / "FDG_PET_raw")


@pytest.mark.parametrize("modality", ["PT", "MR"])
def test_round_trip_oblique_grid(tmp_path, modality):
    volume = _volume()
    affine = np.eye(4)
    affine[:3, :3] = _rotation(0.3) @ np.diag([1.5, 2.0, 2.5])
    affine[:3, 3] = [-10.0, 20.0, 5.0]
    written = write_dicom_series(volume, affine, tmp_path / "out", modality=modality, method_description="OSEM")
    assert len(written.files) == 5 and all(f.is_file() for f in written.files)
    back = load_dicom_series(tmp_path / "out")
    assert back.modality == modality
    np.testing.assert_allclose(back.affine, affine, atol=1e-4)
    slopes = np.array([float(ds.RescaleSlope) for ds in back.datasets])
    assert np.all(np.abs(back.array - volume) <= slopes / 2 + 1e-6)  # within half a rescale step per slice
    assert not list(tmp_path.glob(".*partial*"))


def test_left_handed_grid_keeps_world_positions(tmp_path):
    volume, affine = _volume(), np.diag([2.0, 2.0, -3.0, 1.0])  # slices run against the slice normal
    write_dicom_series(volume, affine, tmp_path / "out", modality="PT", method_description="OSEM")
    back = load_dicom_series(tmp_path / "out")  # slices come back sorted along the normal
    np.testing.assert_allclose(back.affine @ [1, 2, 0, 1], affine @ [1, 2, 4, 1], atol=1e-4)
    np.testing.assert_allclose(back.array[..., ::-1], volume, atol=float(volume.max()) / 32767)


def test_joins_source_study_and_keeps_suv(fdg, tmp_path):
    result = fdg.array[:, :, 100:104]
    affine = fdg.affine.copy()
    affine[:3, 3] = fdg.affine[:3, :3] @ [0, 0, 100] + fdg.affine[:3, 3]
    mean = write_dicom_series(result, affine, tmp_path / "mean", modality="PT", method_description="MAP-RDP b=0.3",
                              units="BQML", source=fdg)
    std = write_dicom_series(0.1 * result, affine, tmp_path / "std", modality="PT",
                             method_description="MAP-RDP b=0.3", units="BQML", source=fdg, describes=mean,
                             series_number=901)
    source = fdg.datasets[100]
    ds = pydicom.dcmread(mean.files[0])
    assert ds.StudyInstanceUID == source.StudyInstanceUID == mean.study_uid == std.study_uid
    assert ds.PatientID == "STS_001" and ds.FrameOfReferenceUID == source.FrameOfReferenceUID
    assert ds.SeriesInstanceUID not in (source.SeriesInstanceUID, std.series_uid)
    assert list(ds.ImageType) == ["DERIVED", "PRIMARY"] and ds.Units == "BQML"
    assert "MAP-RDP" in ds.SeriesDescription and "NOT DIAGNOSTIC" in ds.SeriesDescription
    assert "NOT FOR DIAGNOSTIC USE" in ds.ImageComments
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID  # same slice position
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    sd = pydicom.dcmread(std.files[2])
    assert sd.ReferencedImageSequence[0].ReferencedSOPInstanceUID == mean.sop_uids[2]
    assert sd.ReferencedSeriesSequence[0].SeriesInstanceUID == mean.series_uid and " SD " in sd.SeriesDescription
    # dose, weight and times come along, so the written series gives the same SUV as the scanner's
    np.testing.assert_allclose(load_dicom_series(tmp_path / "mean", suv=True).array,
                               load_dicom_series(tmp_path / "mean").array * suv_factor(source), rtol=1e-6)


def test_same_result_gives_same_uids(tmp_path):
    volume, affine = _volume(), np.eye(4)
    first = write_dicom_series(volume, affine, tmp_path / "a", modality="PT", method_description="OSEM")
    again = write_dicom_series(volume, affine, tmp_path / "a", modality="PT", method_description="OSEM")
    other = write_dicom_series(volume + 1, affine, tmp_path / "b", modality="PT", method_description="OSEM")
    assert again.sop_uids == first.sop_uids and again.series_uid == first.series_uid
    assert not set(other.sop_uids) & set(first.sop_uids)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # the rewrite replaced the folder


def test_files_pass_pydicom_dcmdump_and_dciodvfy(fdg, tmp_path):
    for tool in ("dcmdump", "dciodvfy"):
        assert shutil.which(tool), f"{tool} not found: run scripts/install_system_deps.sh (dcmtk, dicom3tools)"
    written = write_dicom_series(fdg.array[:, :, :2], fdg.affine, tmp_path / "pet", modality="PT",
                                 method_description="OSEM", units="BQML", source=fdg)
    mr = write_dicom_series(_volume(), np.eye(4), tmp_path / "mr", modality="MR", method_description="CG-SENSE")
    old = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    try:
        for path in written.files + mr.files:
            ds = pydicom.dcmread(path)
            for element in ds.iterall():  # decoding every value validates it against its VR
                _ = element.value
    finally:
        config.settings.reading_validation_mode = old
    for path in (written.files[0], mr.files[0]):
        dump = subprocess.run(["dcmdump", "-E", str(path)], capture_output=True, text=True)
        assert dump.returncode == 0 and "PixelData" in dump.stdout, dump.stderr
        check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in check.stderr.splitlines() if line.startswith("Error")]
        assert errors == [], errors


def test_bad_input(tmp_path):
    volume = _volume()
    with pytest.raises(InputError, match="modality"):
        write_dicom_series(volume, np.eye(4), tmp_path / "x", modality="CT", method_description="OSEM")
    with pytest.raises(InputError, match="units"):
        write_dicom_series(volume, np.eye(4), tmp_path / "x", modality="PT", method_description="OSEM", units="KG")
    bad = volume.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="volume contains 1 NaN"):
        write_dicom_series(bad, np.eye(4), tmp_path / "x", modality="PT", method_description="OSEM")
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    with pytest.raises(InputError, match="shear"):
        write_dicom_series(volume, sheared, tmp_path / "x", modality="PT", method_description="OSEM")
    with pytest.raises(InputError, match=r"expected \(x, y, z\)"):
        write_dicom_series(volume[0], np.eye(4), tmp_path / "x", modality="PT", method_description="OSEM")
    assert not (tmp_path / "x").exists()


def test_deidentified_series_are_consistent(fdg, tmp_path):
    result, affine = fdg.array[:, :, :3], fdg.affine
    key = Deidentifier("secret")
    mean = write_dicom_series(result, affine, tmp_path / "m", modality="PT", method_description="OSEM",
                              units="BQML", source=fdg, deidentifier=key)
    std = write_dicom_series(result / 10, affine, tmp_path / "s", modality="PT", method_description="OSEM",
                             units="BQML", source=fdg, describes=mean, deidentifier=key)
    source = fdg.datasets[0]
    ds, sd = pydicom.dcmread(mean.files[0]), pydicom.dcmread(std.files[0])
    assert ds.PatientID == sd.PatientID == ds.PatientName != "STS_001" and ds.PatientIdentityRemoved == "YES"
    assert ds.PatientBirthDate == "" and "StudyDescription" not in ds and float(ds.PatientWeight) == 71.0
    assert ds.StudyInstanceUID == sd.StudyInstanceUID == key.uid(source.StudyInstanceUID) == mean.study_uid
    assert ds.FrameOfReferenceUID == sd.FrameOfReferenceUID == key.uid(source.FrameOfReferenceUID)
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == key.uid(source.SOPInstanceUID)
    assert sd.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID == mean.sop_uids[0]
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    raw = b"".join(p.read_bytes() for p in mean.files + std.files)
    for original in (source.StudyInstanceUID, source.SeriesInstanceUID, source.FrameOfReferenceUID, "STS_001"):
        assert original.encode() not in raw
    rerun = write_dicom_series(result, affine, tmp_path / "m2", modality="PT", method_description="OSEM",
                               units="BQML", source=fdg, deidentifier=Deidentifier("secret"))
    assert rerun.sop_uids == mean.sop_uids
    other = write_dicom_series(result, affine, tmp_path / "m3", modality="PT", method_description="OSEM",
                               units="BQML", source=fdg, deidentifier=Deidentifier("another"))
    assert other.study_uid != mean.study_uid
    with pytest.raises(InputError, match="deidentify key"):
        Deidentifier("")
