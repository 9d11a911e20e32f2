"""DICOM image series (PET, MR, ...) to (x, y, z) volumes with a RAS affine, and body-weight SUV for PET.

A folder may hold several series; :func:`list_series` names them and :func:`load_dicom_series` picks one by
SeriesInstanceUID or modality. Slices are sorted along the slice normal (as ITK and dcm2niix do), each slice is
scaled by its own RescaleSlope/Intercept, and the patient LPS geometry is turned into a NIfTI/MONAI RAS affine.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from diffrecon.checks import InputError, naming_file

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SUV_FIELDS = ("Units (BQML)", "DecayCorrection (START or ADMIN)", "PatientWeight (kg)",
              "RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose (Bq)",
              "RadiopharmaceuticalInformationSequence[0].RadionuclideHalfLife (s)",
              "RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime or "
              "RadiopharmaceuticalStartTime (injection)", "SeriesDate and SeriesTime (decay reference for START)")
CHOOSE_BY_OPTION = "choose one by series UID (--series-uid) or modality (--modality)"  # diffrecon dicom2nifti's options


@dataclass
class SeriesInfo:
    """One series found in a folder: its UID, modality, description, files and frame-of-reference UID (None where
    its first file has none)."""

    series_uid: str
    modality: str
    description: str
    files: list[Path] = field(default_factory=list)
    frame_of_reference: str | None = None


@dataclass
class DicomVolume:
    """A loaded series: voxels (x, y, z), 4x4 RAS affine, units, and the headers sorted like the slices."""

    array: np.ndarray
    affine: np.ndarray
    modality: str
    units: str
    datasets: list[Dataset]
    files: list[Path]

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)


def _read_header(path: Path) -> Dataset | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not a DICOM file (README, DICOMDIR-less junk): skipped
        return None
    return ds if "SeriesInstanceUID" in ds and "SOPInstanceUID" in ds else None


def list_series(folder: str | Path, name: str = "dicom folder") -> list[SeriesInfo]:
    """Find every image series under ``folder`` (recursively); files that are not DICOM are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{name}: folder {str(folder)!r} does not exist")
    series: dict[str, SeriesInfo] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        ds = _read_header(path)
        if ds is None:
            continue
        uid = str(ds.SeriesInstanceUID)
        frame = ds.get("FrameOfReferenceUID")
        info = series.setdefault(uid, SeriesInfo(uid, str(ds.get("Modality", "")), str(ds.get("SeriesDescription", "")),
                                                 frame_of_reference=str(frame) if frame else None))
        info.files.append(path)
    if not series:
        raise InputError(f"{name}: no DICOM image series found in {str(folder)!r}")
    return list(series.values())


def choose_by_conversion(folder: str | Path) -> str:
    """How to pick one series of ``folder`` where an image is read without a series option (``recon --reference``,
    the bundles' images): convert that series to NIfTI first."""
    return (f"convert the one you want with `diffrecon dicom2nifti {shlex.quote(str(folder))} --series-uid UID --out "
            "FILE.nii.gz` and give that file")


def select_series(series: list[SeriesInfo], series_uid: str | None = None, modality: str | None = None,
                  name: str = "dicom folder", choose: str = CHOOSE_BY_OPTION) -> SeriesInfo:
    """Pick one series by UID and/or modality; a clear error lists the candidates when the choice is ambiguous and
    says how to ``choose`` (by default the options of ``diffrecon dicom2nifti``)."""
    matches = [s for s in series if (series_uid is None or s.series_uid == series_uid)
               and (modality is None or s.modality.upper() == modality.upper())]
    if len(matches) == 1:
        return matches[0]
    listing = "; ".join(f"{s.series_uid} ({s.modality}, {len(s.files)} files, {s.description!r})" for s in series)
    if not matches:
        raise InputError(f"{name}: no series with series_uid={series_uid!r} modality={modality!r}; found {listing}")
    raise InputError(f"{name}: {len(matches)} series match; {choose}: {listing}")


def _floats(ds: Dataset, keyword: str, n: int, path: Path) -> np.ndarray:
    value = None
    try:
        value = ds.get(keyword)
        numbers = np.asarray([float(v) for v in value], dtype=np.float64) if value is not None else None
    except Exception:  # pydicom raises many types for corrupt elements, float() for text
        numbers = None
    if numbers is None or len(numbers) != n or not np.isfinite(numbers).all():
        raise InputError(f"dicom file {str(path)!r}: {keyword} missing or not {n} finite numbers (found {value!r}); "
                         "cannot place the slice")
    return numbers


def _number(ds: Dataset, keyword: str, default: float, path: Path, kind: type = float) -> float:
    """A numeric header value (``default`` when absent or empty); InputError naming the file when unreadable."""
    value = None
    try:
        value = ds.get(keyword)
        number = default if value is None or value == "" else kind(value)
    except Exception:  # pydicom raises many types for corrupt elements, int()/float() for text
        number = None
    if number is None or not np.isfinite(number):
        raise InputError(f"dicom file {str(path)!r}: {keyword} is {value!r}; expected a finite number")
    return number


def series_geometry(datasets: list[Dataset], files: list[Path]) -> tuple[list[int], np.ndarray]:
    """Sort slices along their normal and return (order, 4x4 RAS affine) for arrays indexed (column, row, slice)."""
    orientation = _floats(datasets[0], "ImageOrientationPatient", 6, files[0])
    row_cos, col_cos = orientation[:3], orientation[3:]
    normal = np.cross(row_cos, col_cos)
    positions = []
    for ds, path in zip(datasets, files):
        if not np.allclose(_floats(ds, "ImageOrientationPatient", 6, path), orientation, atol=1e-4):
            raise InputError(f"dicom series: {str(path)!r} has a different ImageOrientationPatient than the "
                             "first slice; expected one orientation per series")
        positions.append(_floats(ds, "ImagePositionPatient", 3, path))
    order = sorted(range(len(datasets)), key=lambda i: float(positions[i] @ normal))
    row_spacing, col_spacing = _floats(datasets[0], "PixelSpacing", 2, files[0])
    lps = np.eye(4)
    lps[:3, 0] = row_cos * col_spacing  # x: along a row (increasing column index)
    lps[:3, 1] = col_cos * row_spacing  # y: down a column (increasing row index)
    lps[:3, 3] = positions[order[0]]
    if len(order) > 1:
        first, last = positions[order[0]], positions[order[-1]]
        step = (last - first) / (len(order) - 1)
        gaps = np.diff([float(positions[i] @ normal) for i in order])
        if np.any(gaps < 1e-3):
            raise InputError("dicom series: two slices share one position (several series, time frames or echoes "
                             "in one folder?); select a single-volume series")
        if gaps.max() - gaps.min() > 0.05 * gaps.mean() + 0.02:
            raise InputError(f"dicom series: uneven slice spacing ({gaps.min():.4g}..{gaps.max():.4g} mm); "
                             "expected equally spaced slices")
        lps[:3, 2] = step
    else:
        thickness = float(datasets[0].get("SpacingBetweenSlices") or datasets[0].get("SliceThickness") or 1.0)
        lps[:3, 2] = normal * thickness
    return order, LPS_TO_RAS @ lps


def _time(value: object, what: str) -> datetime:
    text = str(value).strip()
    for fmt in ("%Y%m%d%H%M%S.%f", "%Y%m%d%H%M%S", "%Y%m%d%H%M"):
        try:
            return datetime.strptime(text.split("+")[0].split("-")[0], fmt)
        except ValueError:
            continue
    raise InputError(f"SUV: cannot read {what} {text!r} as a DICOM date-time")


def suv_factor(ds: Dataset) -> float:
    """Body-weight SUV factor (g/Bq): SUV = (Bq/mL) * weight_g / decayed dose, unit density 1 g/mL.

    The dose is decayed from injection to the image's decay-correction reference: the series start
    (DecayCorrection START, the usual case) or none (ADMIN, already corrected to injection).
    """
    needed = "; SUV needs " + ", ".join(SUV_FIELDS)
    units = str(ds.get("Units", "")).upper()
    if units != "BQML":
        raise InputError(f"SUV: Units is {units!r}; expected 'BQML' (activity concentration){needed}")
    decay = str(ds.get("DecayCorrection", "")).upper()
    if decay not in ("START", "ADMIN"):
        raise InputError(f"SUV: DecayCorrection is {decay!r}; expected 'START' or 'ADMIN'{needed}")
    weight = ds.get("PatientWeight")
    if not weight or float(weight) <= 0:
        raise InputError(f"SUV: PatientWeight missing or zero{needed}")
    info = ds.get("RadiopharmaceuticalInformationSequence")
    if not info:
        raise InputError(f"SUV: RadiopharmaceuticalInformationSequence missing{needed}")
    info = info[0]
    dose, half_life = info.get("RadionuclideTotalDose"), info.get("RadionuclideHalfLife")
    if not dose or float(dose) <= 0 or not half_life or float(half_life) <= 0:
        raise InputError(f"SUV: RadionuclideTotalDose or RadionuclideHalfLife missing or zero{needed}")
    decayed = float(dose)
    if decay == "START":
        if info.get("RadiopharmaceuticalStartDateTime"):
            injection = _time(info.RadiopharmaceuticalStartDateTime, "RadiopharmaceuticalStartDateTime")
        elif info.get("RadiopharmaceuticalStartTime") and ds.get("SeriesDate"):
            injection = _time(f"{ds.SeriesDate}{info.RadiopharmaceuticalStartTime}", "RadiopharmaceuticalStartTime")
        else:
            raise InputError(f"SUV: injection time (RadiopharmaceuticalStartDateTime/StartTime) missing{needed}")
        if not ds.get("SeriesDate") or not ds.get("SeriesTime"):
            raise InputError(f"SUV: SeriesDate/SeriesTime missing{needed}")
        start = _time(f"{ds.SeriesDate}{ds.SeriesTime}", "SeriesDate/SeriesTime")
        elapsed = (start - injection).total_seconds()
        if elapsed < 0:
            raise InputError(f"SUV: series starts {-elapsed:.0f} s before the injection; check SeriesTime and "
                             "RadiopharmaceuticalStartTime")
        decayed *= 2.0 ** (-elapsed / float(half_life))
    factor = float(weight) * 1000.0 / decayed if decayed > 0 else np.inf
    if not np.isfinite(factor):
        raise InputError(f"SUV: weight {weight!r} g and dose {dose!r} Bq decayed to {decayed:.4g} Bq over the time "
                         f"since injection give no finite SUV factor; expected plausible values{needed}")
    return factor


def load_dicom_series(folder: str | Path, *, series_uid: str | None = None, modality: str | None = None,
                      suv: bool = False, name: str = "dicom folder", choose: str = CHOOSE_BY_OPTION) -> DicomVolume:
    """Load one series of single-frame images as a float32 (x, y, z) volume with its RAS affine.

    Args:
        folder: folder holding the series (searched recursively).
        series_uid: SeriesInstanceUID to load when the folder holds several series.
        modality: alternatively, the modality ("PT", "MR", ...) of the one series to load.
        suv: convert a PET series in Bq/mL to body-weight SUV (see :func:`suv_factor`).
        name: parameter name used in error messages.
        choose: how the user picks one of several series, in the error (see :func:`select_series`).

    Raises:
        InputError: no or ambiguous series, inconsistent geometry, unreadable pixels, or missing SUV fields.
    """
    with naming_file(folder):  # the choice among several series: say in which folder
        info = select_series(list_series(folder, name), series_uid, modality, name, choose)
    datasets = []
    for path in info.files:
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as error:
            raise InputError(f"{name}: cannot read DICOM file {str(path)!r}: {error}") from error
    if any(_number(ds, "NumberOfFrames", 1, path, int) > 1 for ds, path in zip(datasets, info.files)):
        raise InputError(f"{name}: series {info.series_uid} in {str(folder)!r} holds multi-frame images; expected "
                         "one slice per file")
    try:
        order, affine = series_geometry(datasets, info.files)
    except InputError as error:
        raise InputError(f"{name} {str(folder)!r}: {error}") from error
    datasets = [datasets[i] for i in order]
    files = [info.files[i] for i in order]
    shapes = {(_number(ds, "Rows", 0, path, int), _number(ds, "Columns", 0, path, int)) for ds, path in
              zip(datasets, files)}
    if len(shapes) != 1:
        raise InputError(f"{name}: slices of series {info.series_uid} in {str(folder)!r} have different sizes "
                         f"{sorted(shapes)}")
    expected = next(iter(shapes))
    slices = []
    for ds, path in zip(datasets, files):
        try:
            pixels = ds.pixel_array.astype(np.float64)
        except Exception as error:  # truncated file, unsupported compression
            raise InputError(f"{name}: cannot decode pixel data of {str(path)!r}: {error}") from error
        if pixels.shape != expected:
            raise InputError(f"{name}: pixel data of {str(path)!r} have shape {pixels.shape}; expected one "
                             f"{expected} (Rows, Columns) plane")
        slices.append(pixels * (_number(ds, "RescaleSlope", 1, path) or 1) + _number(ds, "RescaleIntercept", 0, path))
    array = np.stack(slices, axis=-1).transpose(1, 0, 2)  # (rows, cols, z) -> (x=column, y=row, z)
    units = str(datasets[0].get("Units", ""))
    if suv:
        if info.modality.upper() != "PT":
            raise InputError(f"{name}: SUV asked for a {info.modality!r} series (in {str(folder)!r}); SUV needs a "
                             "PET (PT) series")
        try:
            array = array * suv_factor(datasets[0])
        except (TypeError, ValueError) as error:  # InputError included: name the file its fields came from
            raise InputError(f"{name}: {str(files[0])!r}: {error}") from error
        units = "SUVbw"
    if not np.isfinite(array).all():
        raise InputError(f"{name}: series {info.series_uid} in {str(folder)!r} holds NaN/Inf voxels after "
                         "RescaleSlope/RescaleIntercept (and SUV); expected finite values")
    return DicomVolume(array.astype(np.float32), affine, info.modality, units, datasets, files)
