"""DICOM series reader: geometry, slice order and SUV on the real mirp FDG series and the ACRIN FLT slices."""
from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from diffrecon.checks import InputError
from diffrecon.io.dicom_read import list_series, load_dicom_series, suv_factor


@pytest.fixture(scope="module")
def mirp(shared_data):
    return shared_data / "mirp_sts001"


@pytest.fixture(scope="module")
def fdg(mirp):
    return load_dicom_series(mirp / "FDG_PET_raw", suv=True)


def test_full_fdg_series_geometry_and_slice_order(fdg, mirp):
    assert fdg.array.shape == (128, 128, 267) and fdg.modality == "PT" and fdg.units == "SUVbw"
    # LPS voxel axes turned into RAS: x and y flip sign, slices ascend from the lowest z (feet) upwards
    expected = np.array([[-4.6875, 0, 0, 297.65625], [0, -4.6875, 0, 297.65625], [0, 0, 3.27, -881.3], [0, 0, 0, 1]])
    np.testing.assert_allclose(fdg.affine, expected, atol=2e-3)
    assert float(fdg.datasets[0].ImagePositionPatient[2]) == pytest.approx(-881.3)
    assert int(fdg.datasets[0].InstanceNumber) == 267 and int(fdg.datasets[-1].InstanceNumber) == 1
    # the voxel (i, j) of slice k is pixel (row j, column i) of that file, scaled by its own RescaleSlope
    ds = pydicom.dcmread(fdg.files[100])
    raw = ds.pixel_array[40, 70] * float(ds.RescaleSlope) * suv_factor(ds)
    assert fdg.array[70, 40, 100] == pytest.approx(raw, rel=1e-5)


def test_suv_matches_mirp_processed_suv_crop(fdg, mirp):
    crop = load_dicom_series(mirp / "PET_cropped")  # mirp's own SUV (Units GML), same frame of reference
    assert crop.units == "GML"
    offset = np.rint(np.linalg.solve(fdg.affine, crop.affine[:, 3])[:3]).astype(int)
    assert offset.tolist() == [59, 45, 0]
    ours = fdg.array[59:59 + 41, 45:45 + 43, :59]
    np.testing.assert_allclose(ours, crop.array, atol=1e-3)  # int16 quantisation of the crop
    assert 0.0 <= fdg.array.min() and 60 < fdg.array.max() < 70  # bladder peak SUV 66.5


def test_suv_factor_formula(shared_data):
    ds = pydicom.dcmread(shared_data / "pet_dicom_acrin_flt" / "1.dcm")
    # 15:23:16.921 - 14:17:00 = 3976.921 s after injection of 178.34 MBq, 69.7344 kg
    decayed = 178340011.59668 * 2 ** (-3976.921 / 6586.2)
    assert suv_factor(ds) == pytest.approx(69734.4 / decayed, rel=1e-9)


@pytest.mark.parametrize("missing,expected", [("PatientWeight", "PatientWeight"),
                                              ("Units", "Units"), ("DecayCorrection", "DecayCorrection"),
                                              ("RadiopharmaceuticalInformationSequence", "Radiopharmaceutical")])
def test_suv_refuses_missing_fields(shared_data, tmp_path, missing, expected):
    ds = pydicom.dcmread(shared_data / "pet_dicom_acrin_flt" / "1.dcm")
    delattr(ds, missing)
    ds.save_as(tmp_path / "slice.dcm")
    with pytest.raises(InputError, match=expected) as error:
        load_dicom_series(tmp_path, suv=True)
    assert "SUV needs" in str(error.value)
    assert load_dicom_series(tmp_path).array.shape == (168, 168, 1)  # without SUV it still loads


def test_single_slice_and_series_selection(shared_data, tmp_path):
    for name in ("1.dcm", "2.dcm"):  # two patients' series in one folder, plus a non-DICOM file
        shutil.copy(shared_data / "pet_dicom_acrin_flt" / name, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not DICOM")
    series = list_series(tmp_path)
    assert len(series) == 2
    with pytest.raises(InputError, match="2 series match"):
        load_dicom_series(tmp_path)
    with pytest.raises(InputError, match="no series with"):
        load_dicom_series(tmp_path, modality="MR")
    second = pydicom.dcmread(tmp_path / "2.dcm")
    volume = load_dicom_series(tmp_path, series_uid=second.SeriesInstanceUID, suv=True)
    assert volume.array.shape == (168, 168, 1)
    assert volume.affine[2, 2] == pytest.approx(3.0)  # one slice: its SliceThickness
    assert volume.array.max() == pytest.approx(second.pixel_array.max() * 46.2619 * suv_factor(second), rel=1e-5)


def test_bad_folders(tmp_path, shared_data):
    with pytest.raises(InputError, match="dicom folder: folder .* does not exist"):
        load_dicom_series(tmp_path / "absent")
    with pytest.raises(InputError, match="no DICOM image series"):
        load_dicom_series(tmp_path)
    data = (shared_data / "pet_dicom_acrin_flt" / "1.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 20000])  # truncated pixel data
    with pytest.raises(InputError, match="cannot (decode|read)"):
        load_dicom_series(tmp_path, name="source")


def test_duplicate_positions_refused(shared_data, tmp_path):
    ds = pydicom.dcmread(shared_data / "pet_dicom_acrin_flt" / "1.dcm")
    ds.save_as(tmp_path / "a.dcm")
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "b.dcm")
    with pytest.raises(InputError, match="share one position"):
        load_dicom_series(tmp_path)


def test_same_voxels_and_affine_as_monai_itk_reader(mirp):
    from monai.transforms import LoadImage

    folder = mirp / "MR_T1"
    ours = load_dicom_series(folder)
    itk = LoadImage(reader="ITKReader", image_only=True)(str(folder))
    np.testing.assert_allclose(np.asarray(itk.affine), ours.affine, atol=1e-4)
    np.testing.assert_allclose(np.asarray(itk), ours.array, atol=1e-3)
