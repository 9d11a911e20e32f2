"""De-identification of written DICOM series: a documented subset of the Basic Application Confidentiality
Profile (PS3.15 E.1) with the Retain Patient Characteristics and Retain Longitudinal Full Dates options.

Weight, sex, size, age and all dates/times are kept because body-weight SUV and decay correction need them.
UIDs are remapped with a keyed hash (UUID v5 under 2.25), so the same key maps a UID to the same new UID in
every series and every rerun: mean and standard-deviation series keep their links, and re-exports match.
SeriesDescription, ImageComments and DerivationDescription are written by diffrecon (method and research-use
note, no patient data) and are kept; the source's StudyDescription is removed.
"""
from __future__ import annotations

import hashlib
import uuid

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from diffrecon.checks import InputError

# PS3.15 Table E.1-1 actions for the attributes this writer can carry (copied from a source study).
REPLACE = ("PatientName", "PatientID")  # D: a pseudonym derived from the key and the original PatientID
EMPTY = ("PatientBirthDate", "AccessionNumber", "ReferringPhysicianName", "StudyID")  # Z
REMOVE = ("PatientBirthTime", "IssuerOfPatientID", "OtherPatientIDsSequence", "OtherPatientNames",  # X
          "PatientAddress", "PatientTelephoneNumbers", "PatientComments", "EthnicGroup", "MilitaryRank",
          "MedicalRecordLocator", "AdditionalPatientHistory", "InstitutionName", "InstitutionAddress",
          "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber", "OperatorsName",
          "PerformingPhysicianName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
          "RequestingPhysician", "StudyDescription", "RequestAttributesSequence",
          "ReferencedPatientSequence", "ReferencedStudySequence")
# U: every instance-identifying UID; class UIDs (SOPClassUID, ReferencedSOPClassUID, ...) stay as they are.
REMAP_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
              "ReferencedSOPInstanceUID", "ReferencedFrameOfReferenceUID", "MediaStorageSOPInstanceUID")
# DCM codes naming the profile and options applied (CID 7050).
METHOD_CODES = (("113100", "Basic Application Confidentiality Profile"),
                ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
                ("113108", "Retain Patient Characteristics Option"))
_NAMESPACE = uuid.UUID("6f1c3a52-1f0e-4c59-9c1e-2f5d3b7a9e10")


class Deidentifier:
    """Applies the profile subset above; one instance (one key) keeps UID remapping consistent across series.

    Args:
        key: a secret string; the same key gives the same pseudonyms and UIDs (keep it out of the data).
        patient_id: pseudonym to use instead of the derived one (e.g. a study subject code).
    """

    def __init__(self, key: str, patient_id: str | None = None):
        if not key:
            raise InputError("deidentify key is empty; expected a secret string (it makes pseudonyms repeatable)")
        self.key = key
        self.patient_id = patient_id
        self._issued: set[str] = set()

    def uid(self, original: str) -> str:
        """The new UID for ``original`` (same key, same answer); a UID this instance issued is kept as it is."""
        if str(original) in self._issued:
            return str(original)
        new = f"2.25.{uuid.uuid5(_NAMESPACE, self.key + '|' + str(original)).int}"
        self._issued.add(new)
        return new

    def pseudonym(self, patient_id: str) -> str:
        """The pseudonymous PatientID for ``patient_id``."""
        if self.patient_id:
            return self.patient_id
        return "ANON-" + hashlib.sha256(f"{self.key}|{patient_id}".encode()).hexdigest()[:12].upper()

    def _remap(self, ds: Dataset) -> None:
        for element in list(ds):
            if element.VR == "SQ":
                for item in element.value:
                    self._remap(item)
            elif element.keyword in REMAP_UIDS and element.value:
                element.value = self.uid(element.value)

    def apply(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place (and its file meta) and mark it as de-identified; returns it."""
        pseudonym = self.pseudonym(str(ds.get("PatientID", "")))
        for keyword in REPLACE:
            setattr(ds, keyword, pseudonym)
        for keyword in EMPTY:
            if keyword in ds:
                setattr(ds, keyword, "")
        for keyword in REMOVE:
            if keyword in ds:
                delattr(ds, keyword)
        ds.remove_private_tags()
        self._remap(ds)
        if getattr(ds, "file_meta", None) is not None:
            self._remap(ds.file_meta)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "PS3.15 basic profile subset; retain patient chars, full dates"  # LO <= 64
        codes = []
        for value, meaning in METHOD_CODES:
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
            codes.append(code)
        ds.DeidentificationMethodCodeSequence = Sequence(codes)
        return ds
