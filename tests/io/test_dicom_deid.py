"""De-identification with shifted dates (PS3.15 Retain Longitudinal Temporal Information, Modified Dates): no
source date or time remains, intervals are kept (SUV of the shifted series equals SUV of the original), and the
shift is keyed per patient."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from diffrecon.checks import InputError
from diffrecon.io.dicom_deid import Deidentifier, shift_dates
from diffrecon.io.dicom_read import load_dicom_series, suv_factor
from diffrecon.io.dicom_write import write_dicom_series


@pytest.fixture(scope="module")
def fdg(shared_data):
    return load_dicom_series(shared_data / "mirp_sts001" / "FDG_PET_raw")


def _temporal(ds: Dataset) -> list[tuple[str, str, str]]:
    """Every non-empty DA, DT and TM value of ``ds`` and its sequences: (keyword, VR, value)."""
    found = []
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                found += _temporal(item)
        elif element.VR in ("DA", "DT", "TM") and element.value:
            found.append((element.keyword, element.VR, str(element.value)))
    return found


def test_shifted_series_keeps_suv_and_no_source_date_or_time(fdg, tmp_path):
    result, affine = fdg.array[:, :, :3], fdg.affine
    plain = write_dicom_series(result, affine, tmp_path / "plain", modality="PT", method_description="OSEM",
                               units="BQML", source=fdg)
    shifted = write_dicom_series(result, affine, tmp_path / "shifted", modality="PT", method_description="OSEM",
                                 units="BQML", source=fdg, deidentifier=Deidentifier("secret", dates="shift"))
    source = fdg.datasets[0]
    source_values = {value for _, _, value in _temporal(source)}
    source_dates = {value[:8] for _, vr, value in _temporal(source) if vr in ("DA", "DT")}
    source_clocks = {value[:6] for _, vr, value in _temporal(source) if vr == "TM"}
    assert source_dates == {"20000907"} and "103500" in source_clocks  # the injection time is among them
    for path in shifted.files:
        ds = pydicom.dcmread(path)
        values = _temporal(ds)
        assert {keyword for keyword, _, _ in values} >= {"StudyDate", "StudyTime", "SeriesDate", "SeriesTime",
                                                         "AcquisitionDate", "RadiopharmaceuticalStartTime",
                                                         "RadiopharmaceuticalStartDateTime"}
        for keyword, vr, value in values:
            assert value not in source_values, keyword
            assert vr == "TM" or value[:8] not in source_dates, (keyword, value)
            clock = {"TM": value[:6], "DT": value[8:14]}.get(vr)
            assert clock not in source_clocks, (keyword, value)
        del ds.PixelData
        header = str(ds)
        assert not any(date in header for date in source_dates)
        assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
        assert "113107" in [code.CodeValue for code in ds.DeidentificationMethodCodeSequence]
    original, moved = pydicom.dcmread(plain.files[0]), pydicom.dcmread(shifted.files[0])
    assert suv_factor(moved) == pytest.approx(suv_factor(original), rel=1e-9)
    np.testing.assert_allclose(load_dicom_series(tmp_path / "shifted", suv=True).array,
                               load_dicom_series(tmp_path / "plain", suv=True).array, rtol=1e-6)


def test_shift_is_keyed_per_patient_and_keeps_intervals():
    key = Deidentifier("secret", dates="shift")
    shift = key.date_shift("STS_001")
    assert shift == Deidentifier("secret", dates="shift").date_shift("STS_001")  # repeatable across exports
    assert timedelta(days=-11 * 365) <= shift <= timedelta(days=-365)
    assert shift != key.date_shift("STS_002") and shift != Deidentifier("other", dates="shift").date_shift("STS_001")
    # two studies of one patient, a year apart, and an injection just before midnight: intervals survive
    studies = []
    for study_date, injection, series_time in (("20000907", "235000", "000500"), ("20010910", "101500", "111500")):
        ds = Dataset()
        ds.PatientID, ds.StudyDate, ds.StudyTime = "STS_001", study_date, series_time
        ds.SeriesDate, ds.SeriesTime = study_date, series_time
        info = Dataset()
        info.RadiopharmaceuticalStartTime = injection
        ds.RadiopharmaceuticalInformationSequence = [info]
        key.apply(ds)
        studies.append(ds)
    from datetime import datetime

    starts = [datetime.strptime(ds.StudyDate + ds.StudyTime, "%Y%m%d%H%M%S") for ds in studies]
    assert starts[1] - starts[0] == datetime(2001, 9, 10, 11, 15) - datetime(2000, 9, 7, 0, 5)
    injected = [datetime.strptime(ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime,
                                  "%Y%m%d%H%M%S") for ds in studies]
    assert starts[1] - injected[1] == timedelta(hours=1)
    assert studies[0].StudyDate != "20000907" and studies[0].PatientID == studies[1].PatientID


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_unparsable_times_are_emptied_not_kept():
    ds = Dataset()
    ds.StudyDate, ds.StudyTime, ds.ContentTime = "2000-09-07", "11:17:11", "noon"
    shift_dates(ds, -timedelta(days=400))
    assert ds.StudyDate == "" and ds.ContentTime == ""


def test_date_option_is_checked():
    with pytest.raises(InputError, match="dates 'random'"):
        Deidentifier("secret", dates="random")


def test_export_command_shifts_dates_on_request(fdg, shared_data, tmp_path, monkeypatch):
    from diffrecon.cli import main
    from diffrecon.io.nifti import save_nifti

    source = shared_data / "mirp_sts001" / "FDG_PET_raw"
    save_nifti(tmp_path / "mean.nii.gz", fdg.array[:, :, :2], fdg.affine)
    monkeypatch.setenv("DIFFRECON_DEID_KEY", "test-key")
    common = ["export", "--result", str(tmp_path / "mean.nii.gz"), "--modality", "PT", "--method-description", "OSEM",
              "--export-units", "BQML", "--export-source-dicom", str(source)]
    assert main([*common, "--export-dicom-dir", str(tmp_path / "full"), "--export-deidentify"]) == 0
    assert main([*common, "--export-dicom-dir", str(tmp_path / "shift"), "--export-deidentify", "shift"]) == 0
    full, shifted = (pydicom.dcmread(sorted((tmp_path / name / "mean").iterdir())[0]) for name in ("full", "shift"))
    assert full.StudyDate == "20000907" and shifted.StudyDate != "20000907"
    assert suv_factor(shifted) == pytest.approx(suv_factor(full), rel=1e-9)
