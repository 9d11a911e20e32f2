"""A reconstructed volume (x, y, z) with its RAS affine as a DICOM PET or MR image series, one file per slice.

The series is marked as derived research output (ImageType DERIVED, "not for diagnostic use" in
SeriesDescription and ImageComments). Given the source series (a :class:`DicomVolume`), it joins the
source study: patient, study and frame-of-reference attributes are copied and the source series is referenced.
UIDs are derived from a hash of the voxels, geometry, description and source, so writing the same result twice
gives the same instances: a PACS export rerun sends only what is missing. See docs/dicom.md for the attributes.
"""
from __future__ import annotations

import copy
import hashlib
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, PositronEmissionTomographyImageStorage
from pydicom.valuerep import DS

from diffrecon.checks import InputError, check_choice, check_finite, check_shape
from diffrecon.io.dicom_deid import Deidentifier
from diffrecon.io.dicom_read import LPS_TO_RAS, DicomVolume

SOP_CLASSES = {"PT": PositronEmissionTomographyImageStorage, "MR": MRImageStorage}
PET_UNITS = ("CNTS", "NONE", "CM2", "PCNT", "CPS", "BQML", "MGMINML", "UMOLMINML", "MLMING", "MLG", "1CM",
             "UMOLML", "PROPCNTS", "PROPCPS", "MLMINML", "MLML", "GML")
RESEARCH_NOTE = "RESEARCH USE ONLY - NOT FOR DIAGNOSTIC USE"
PATIENT_STUDY = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime",
                 "PatientSex", "OtherPatientIDsSequence", "PatientComments", "EthnicGroup", "PatientAge",
                 "PatientSize", "PatientWeight", "PatientIdentityRemoved", "DeidentificationMethod",
                 "DeidentificationMethodCodeSequence", "StudyInstanceUID", "StudyDate", "StudyTime",
                 "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
                 "FrameOfReferenceUID", "PositionReferenceIndicator")
MODALITY_COPY = {  # acquisition attributes the reconstruction shares with its source series
    "PT": ("SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "ActualFrameDuration",
           "DecayCorrection", "CorrectedImage", "RadiopharmaceuticalInformationSequence", "CountsSource",
           "CollimatorType", "PatientOrientationCodeSequence", "PatientGantryRelationshipCodeSequence"),
    "MR": ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "RepetitionTime",
           "EchoTime", "EchoTrainLength", "InversionTime", "FlipAngle", "MagneticFieldStrength",
           "ImagedNucleus", "SequenceName", "PatientPosition"),
}
MODALITY_DEFAULTS = {  # type 1 and 2 attributes of the PET Series/Image and MR Image modules without a source
    "PT": {"DecayCorrection": "NONE", "CorrectedImage": "", "CountsSource": "EMISSION",
           "RadiopharmaceuticalInformationSequence": Sequence(), "PatientOrientationCodeSequence": Sequence(),
           "PatientGantryRelationshipCodeSequence": Sequence(), "AcquisitionDate": "", "AcquisitionTime": "",
           "ActualFrameDuration": "", "CollimatorType": ""},
    "MR": {"ScanningSequence": "RM", "SequenceVariant": "NONE", "ScanOptions": "", "MRAcquisitionType": "",
           "RepetitionTime": "", "EchoTime": "", "EchoTrainLength": "", "PatientPosition": ""},
}
_NAMESPACE = uuid.UUID("0b9d2f4e-5a61-4e1b-8a7c-3d2e6f9a1c47")


@dataclass
class WrittenSeries:
    """Files and identifiers of a series written by :func:`write_dicom_series` (files in slice order)."""

    folder: Path
    files: list[Path]
    study_uid: str
    series_uid: str
    sop_class_uid: str
    sop_uids: list[str]
    frame_of_reference_uid: str


def _uid(seed: str, *parts: object) -> str:
    return f"2.25.{uuid.uuid5(_NAMESPACE, '|'.join([seed, *map(str, parts)])).int}"


def _ds(value: float) -> DS:
    return DS(float(value), auto_format=True)


def _instance_refs(sop_class: str, sop_uids: list[str]) -> Sequence:
    refs = []
    for sop_uid in sop_uids:
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = sop_class, sop_uid
        refs.append(ref)
    return Sequence(refs)


def _series_ref(series_uid: str, sop_class: str, sop_uids: list[str]) -> Dataset:
    ref = Dataset()
    ref.SeriesInstanceUID = series_uid
    ref.ReferencedInstanceSequence = _instance_refs(sop_class, sop_uids)
    return ref


def slice_geometry(affine: np.ndarray) -> tuple[list[float], list[float], float, np.ndarray, np.ndarray]:
    """(ImageOrientationPatient, PixelSpacing, slice spacing, LPS origin, LPS slice step) of a RAS affine.

    Raises:
        InputError: the affine is singular or sheared (DICOM image planes need perpendicular axes).
    """
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    if np.any(spacing < 1e-6):
        raise InputError(f"affine has a zero-length voxel axis (spacing {spacing.tolist()}); expected a 4x4 "
                         "RAS affine with non-zero voxel sizes")
    axes = lps[:3, :3] / spacing
    if np.abs(axes.T @ axes - np.eye(3)).max() > 1e-4:
        raise InputError("affine has non-perpendicular voxel axes (shear); a DICOM series needs an orthogonal "
                         "grid: resample the volume first")
    orientation = [*axes[:, 0], *axes[:, 1]]
    return orientation, [float(spacing[1]), float(spacing[0])], float(spacing[2]), lps[:3, 3], lps[:3, 2]


def _encode(plane: np.ndarray) -> tuple[np.ndarray, DS]:
    """int16 pixels and the RescaleSlope (intercept 0, as PET requires) that best fit one slice."""
    peak = float(np.abs(plane).max())
    slope = _ds(peak / 32767.0 if peak > 0 else 1.0)
    return np.clip(np.rint(plane / float(slope)), -32768, 32767).astype(np.int16), slope


def _series_description(method_description: str, suffix: str) -> str:
    text = f"{method_description}{suffix} [RESEARCH, NOT DIAGNOSTIC]"
    return text if len(text) <= 64 else f"{method_description[:64 - len(text)]}{text[len(method_description):]}"


def _replace_folder(tmp: Path, out: Path) -> None:
    """Move the complete ``tmp`` folder to ``out``, replacing an older write there."""
    if out.exists():
        old = out.with_name(out.name + f".old-{uuid.uuid4().hex[:8]}")
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def write_dicom_series(volume: np.ndarray, affine: np.ndarray, out_dir: str | Path, *, modality: str,
                       method_description: str, units: str = "PROPCNTS", source: DicomVolume | None = None,
                       series_number: int = 900, describes: WrittenSeries | None = None,
                       deidentifier: Deidentifier | None = None, note: str = "") -> WrittenSeries:
    """Write ``volume`` as a PET ("PT") or MR ("MR") series of single-slice instances into ``out_dir``.

    Args:
        volume: (x, y, z) image (float); z is written along the affine's third axis.
        affine: 4x4 RAS affine of ``volume``, in the source's patient coordinates when ``source`` is given.
        out_dir: folder for the files (replaced as a whole; written under a temporary name first).
        modality: "PT" or "MR".
        method_description: the reconstruction method, named in SeriesDescription.
        units: PET Units (default PROPCNTS, proportional to counts, for uncalibrated images).
        source: the source series; the new series joins its study and references it.
        series_number: SeriesNumber of the new series.
        describes: the series this one describes (a standard-deviation map names its mean series): it is
            referenced slice by slice and the description says so.
        deidentifier: de-identify the written instances (consistent UIDs across series with one key).
        note: short text after the series' kind in SeriesDescription and in ImageComments, e.g. the calibration
            factor and scope of a standard-deviation map ("x2.65 cal demo2d 1%"); the method description is
            shortened to fit.

    Returns:
        The written files and UIDs (after de-identification, if any).
    """
    check_choice("modality", modality, SOP_CLASSES)
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise InputError(f"volume has shape {volume.shape}; expected (x, y, z)")
    check_finite("volume", volume)
    affine = np.asarray(affine, dtype=np.float64)
    check_shape("affine", affine, (4, 4))
    if modality == "PT":
        check_choice("units", units, PET_UNITS)
    if describes is not None and len(describes.sop_uids) != volume.shape[2]:
        raise InputError(f"volume has {volume.shape[2]} slices but the described series has "
                         f"{len(describes.sop_uids)}; expected one slice per described instance")
    orientation, pixel_spacing, thickness, origin, step = slice_geometry(affine)
    normal = np.cross(orientation[:3], orientation[3:])
    seed = hashlib.sha256(b"".join([np.ascontiguousarray(volume, dtype=np.float32).tobytes(), affine.tobytes(),
                                    f"{modality}|{method_description}|{units}|{series_number}|{note}".encode(),
                                    (source.series_uid if source else "").encode(),
                                    (describes.series_uid if describes else "").encode()])).hexdigest()
    sop_class = SOP_CLASSES[modality]
    now = datetime.now()
    base = Dataset()
    base.SpecificCharacterSet = "ISO_IR 192"
    reference = source.datasets[0] if source is not None else None
    for keyword in PATIENT_STUDY:
        if reference is not None and keyword in reference:
            base[keyword] = copy.deepcopy(reference[keyword])
    base.setdefault("PatientName", "")
    base.setdefault("PatientID", "")
    base.setdefault("PatientBirthDate", "")
    base.setdefault("PatientSex", "")
    if describes is not None:
        base.StudyInstanceUID, base.FrameOfReferenceUID = describes.study_uid, describes.frame_of_reference_uid
    if reference is None:
        base.setdefault("StudyInstanceUID", _uid(seed, "study"))
        base.StudyDate, base.StudyTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        base.ReferringPhysicianName, base.StudyID, base.AccessionNumber = "", "", ""
        base.setdefault("FrameOfReferenceUID", _uid(seed, "frame of reference"))
        base.PositionReferenceIndicator = ""
    for keyword in MODALITY_COPY[modality]:
        if reference is not None and keyword in reference and reference.Modality == modality:
            base[keyword] = copy.deepcopy(reference[keyword])
    for keyword, value in MODALITY_DEFAULTS[modality].items():
        if keyword not in base:
            setattr(base, keyword, value)
    if "InversionTime" in base and "IR" not in base.ScanningSequence:
        del base.InversionTime  # type 2C: only for inversion-recovery sequences
    base.Modality = modality
    base.SeriesInstanceUID = _uid(seed, "series")
    base.SeriesNumber = series_number
    base.setdefault("SeriesDate", now.strftime("%Y%m%d"))
    base.setdefault("SeriesTime", now.strftime("%H%M%S"))
    base.ContentDate, base.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    base.InstanceCreationDate, base.InstanceCreationTime = base.ContentDate, base.ContentTime
    base.Laterality = ""
    base.Manufacturer = "diffrecon"
    base.ManufacturerModelName = "diffrecon"
    base.SoftwareVersions = _version()
    what = "standard deviation of " + describes.series_uid if describes else method_description
    suffix = (" SD" if describes else "") + (f" {note}" if note else "")
    base.SeriesDescription = _series_description(method_description, suffix)
    base.ImageComments = f"{RESEARCH_NOTE}. Reconstructed with diffrecon: {what}" + (f" ({note})." if note else ".")
    base.DerivationDescription = f"{method_description} reconstruction by diffrecon ({RESEARCH_NOTE.lower()})"[:1024]
    base.ImageType = ["DERIVED", "PRIMARY"] if modality == "PT" else ["DERIVED", "PRIMARY", "OTHER"]
    base.BurnedInAnnotation = "NO"
    base.LossyImageCompression = "00"
    base.ImageOrientationPatient = [_ds(v) for v in orientation]
    base.PixelSpacing = [_ds(v) for v in pixel_spacing]
    base.SliceThickness = _ds(thickness)
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME2"
    base.Rows, base.Columns = int(volume.shape[1]), int(volume.shape[0])
    base.BitsAllocated, base.BitsStored, base.HighBit, base.PixelRepresentation = 16, 16, 15, 1
    base.RescaleIntercept = 0
    peak = float(np.abs(volume).max()) or 1.0
    base.WindowCenter, base.WindowWidth = _ds(peak / 2), _ds(peak)
    if modality == "PT":
        base.Units = units
        base.SeriesType = ["STATIC", "IMAGE"]
        base.NumberOfSlices = int(volume.shape[2])
        base.FrameReferenceTime = 0
        if base.DecayCorrection != "NONE":
            base.DecayFactor = 1  # the reconstruction is not rescaled for decay beyond its source's correction
    else:
        base.RescaleType = "US"  # unspecified units
        base.SpacingBetweenSlices = _ds(thickness)
    if source is not None:  # each slice references the source slice nearest to it
        source_positions = np.asarray([[float(v) for v in d.ImagePositionPatient] for d in source.datasets]) @ normal

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        files, sop_uids = [], []
        for k in range(volume.shape[2]):
            ds = copy.deepcopy(base)
            ds.SOPClassUID, ds.SOPInstanceUID = sop_class, _uid(seed, "instance", k)
            ds.InstanceNumber = k + 1
            position = origin + k * step
            ds.ImagePositionPatient = [_ds(v) for v in position]
            ds.SliceLocation = _ds(float(position @ normal))
            pixels, ds.RescaleSlope = _encode(volume[:, :, k].T)
            ds.PixelData = pixels.tobytes()
            if modality == "PT":
                ds.ImageIndex = k + 1
            references = []  # (series UID, SOP class, SOP instance) for ReferencedImageSequence
            if describes is not None:
                references.append((describes.series_uid, describes.sop_class_uid, describes.sop_uids[k]))
            if source is not None:
                nearest = source.datasets[int(np.argmin(np.abs(source_positions - position @ normal)))]
                references.append((source.series_uid, str(nearest.SOPClassUID), str(nearest.SOPInstanceUID)))
            if references:
                ds.ReferencedImageSequence = Sequence([_instance_refs(c, [u])[0] for _, c, u in references])
                ds.ReferencedSeriesSequence = Sequence([_series_ref(s, c, [u]) for s, c, u in references])
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            if deidentifier is not None:
                deidentifier.apply(ds)
            path = tmp / f"{k + 1:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(out_dir / path.name)
            sop_uids.append(str(ds.SOPInstanceUID))
        _replace_folder(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return WrittenSeries(out_dir, files, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), sop_class, sop_uids,
                         str(ds.FrameOfReferenceUID))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffrecon")
    except PackageNotFoundError:
        return "unknown"
