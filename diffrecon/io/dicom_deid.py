"""De-identification of written DICOM series: a documented subset of the Basic Application Confidentiality
Profile (PS3.15 E.1) with the Retain Patient Characteristics option and, for dates, either the Retain Longitudinal
Temporal Information Full Dates option (``dates="full"``, the default) or its Modified Dates option
(``dates="shift"``): every date and time moved back by one keyed offset per patient (an HMAC of the PatientID with
the key, 1 to 11 years plus a time of day), so intervals within and across a patient's studies are kept, which is
what body-weight SUV and decay correction need, while no source date or time remains.

Weight, sex, size and age are kept because body-weight SUV needs them.
UIDs are remapped with a keyed hash (UUID v5 under 2.25), so the same key maps a UID to the same new UID in
every series and every rerun: mean and standard-deviation series keep their links, and re-exports match.
SeriesDescription, ImageComments and DerivationDescription are written by diffrecon (method and research-use
note, no patient data) and are kept; the source's StudyDescription is removed.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from datetime import date, datetime, time, timedelta

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from diffrecon.checks import InputError, check_choice

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
# DCM codes naming the profile and options applied (CID 7050), by date option.
BASIC = ("113100", "Basic Application Confidentiality Profile")
CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")
DATE_CODES = {"full": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
              "shift": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")}
METHOD_CODES = (BASIC, DATE_CODES["full"], CHARACTERISTICS)  # the default (full dates)
DATE_OPTIONS = tuple(DATE_CODES)
SHIFT_RANGE_DAYS = (365, 11 * 365)  # how far back a patient's dates move (keyed, so repeatable)
_NAMESPACE = uuid.UUID("6f1c3a52-1f0e-4c59-9c1e-2f5d3b7a9e10")


class Deidentifier:
    """Applies the profile subset above; one instance (one key) keeps UID remapping consistent across series.

    Args:
        key: a secret string; the same key gives the same pseudonyms, UIDs and date shifts (keep it out of the data).
        patient_id: pseudonym to use instead of the derived one (e.g. a study subject code).
        dates: "full" keeps dates and times; "shift" moves them all back by :meth:`date_shift` of the patient.
    """

    def __init__(self, key: str, patient_id: str | None = None, dates: str = "full"):
        if not key:
            raise InputError("deidentify key is empty; expected a secret string (it makes pseudonyms repeatable)")
        check_choice("dates", dates, DATE_OPTIONS)
        self.key = key
        self.patient_id = patient_id
        self.dates = dates
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

    def date_shift(self, patient_id: str) -> timedelta:
        """The (negative) offset added to every date and time of ``patient_id``: whole seconds from an HMAC-SHA256
        of the PatientID under the key, 1 to 11 years back; the same for every study of the patient, so intervals
        between them are kept, and not computable without the key."""
        digest = hmac.new(self.key.encode(), f"date-shift|{patient_id}".encode(), hashlib.sha256).digest()
        low, high = (days * 86400 for days in SHIFT_RANGE_DAYS)
        return -timedelta(seconds=low + int.from_bytes(digest[:8], "big") % (high - low))

    def _remap(self, ds: Dataset) -> None:
        for element in list(ds):
            if element.VR == "SQ":
                for item in element.value:
                    self._remap(item)
            elif element.keyword in REMAP_UIDS and element.value:
                element.value = self.uid(element.value)

    def apply(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place (and its file meta) and mark it as de-identified; returns it."""
        original_id = str(ds.get("PatientID", ""))
        pseudonym = self.pseudonym(original_id)
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
        if self.dates == "shift":
            shift_dates(ds, self.date_shift(original_id))
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = (f"PS3.15 basic profile subset; retain patient chars, "  # LO <= 64
                                     f"{'full' if self.dates == 'full' else 'shifted'} dates")
        codes = []
        for value, meaning in (BASIC, DATE_CODES[self.dates], CHARACTERISTICS):
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
            codes.append(code)
        ds.DeidentificationMethodCodeSequence = Sequence(codes)
        return ds


_TIME = re.compile(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?")


def _parse_time(text: str) -> tuple[time, int]:
    """A TM value (HH[MM[SS[.F{1,6}]]], colons tolerated) and the digits of its fraction."""
    match = _TIME.fullmatch(text.strip().replace(":", ""))
    if match is None:
        raise ValueError(text)
    hours, minutes, seconds, fraction = match.groups()
    micro = int((fraction or "").ljust(6, "0"))
    return time(int(hours), int(minutes or 0), int(seconds or 0), micro), len(fraction or "")


def _format_time(moment: datetime, digits: int) -> str:
    text = moment.strftime("%H%M%S")
    return f"{text}.{moment.microsecond:06d}"[:7 + digits] if digits else text


def _parse_date(text: str) -> date:
    return datetime.strptime(text.strip().replace(".", ""), "%Y%m%d").date()


def _shift_datetime(text: str, delta: timedelta) -> str:
    """A DT value (YYYYMMDD[HHMMSS[.F]][&ZZXX]) moved by ``delta``, its precision and offset kept."""
    body, zone = re.fullmatch(r"([^+-]*)([+-]\d{4})?", text.strip()).groups()
    day, clock = _parse_date(body[:8]), body[8:]
    at, digits = _parse_time(clock) if clock else (time(), 0)
    moved = datetime.combine(day, at) + delta
    return moved.strftime("%Y%m%d") + (_format_time(moved, digits) if clock else "") + (zone or "")


def shift_dates(ds: Dataset, delta: timedelta, day: date | None = None) -> None:
    """Move every date (DA), date-time (DT) and time (TM) of ``ds`` and its sequences by ``delta``, in place.

    A date and its time (``XDate`` and ``XTime``) move together; a time alone is taken on the day the SUV
    computation reads it on (the enclosing dataset's SeriesDate, ``day``) and, for RadiopharmaceuticalStartTime,
    the injection is also written as RadiopharmaceuticalStartDateTime, so the injection-to-scan interval survives
    a shift across midnight. A value that cannot be parsed is emptied rather than left as it was.
    """
    series_date = ds.get("SeriesDate")
    try:
        day = _parse_date(str(series_date)) if series_date else day
    except ValueError:
        pass
    paired = set()
    for element in list(ds):
        if element.VR == "DA" and element.value:
            partner = element.keyword[:-4] + "Time" if element.keyword.endswith("Date") else ""
            clock = ds.get(partner) if partner and not isinstance(element.value, MultiValue) else None
            try:
                if isinstance(element.value, MultiValue):
                    element.value = [(datetime.combine(_parse_date(v), time()) + delta).strftime("%Y%m%d")
                                     for v in element.value]
                    continue
                at, digits = _parse_time(str(clock)) if clock else (time(), 0)
                moved = datetime.combine(_parse_date(str(element.value)), at) + delta
                element.value = moved.strftime("%Y%m%d")
                if clock:
                    ds[partner].value = _format_time(moved, digits)
                    paired.add(partner)
            except ValueError:
                element.value = ""
    for element in list(ds):
        if element.VR == "SQ":
            for item in element.value:
                shift_dates(item, delta, day)
        elif not element.value or element.keyword in paired:
            continue
        elif element.VR == "DT":
            try:
                element.value = [_shift_datetime(str(v), delta) for v in element.value] \
                    if isinstance(element.value, MultiValue) else _shift_datetime(str(element.value), delta)
            except (ValueError, AttributeError):
                element.value = ""
        elif element.VR == "TM" and not isinstance(element.value, MultiValue):
            try:
                at, digits = _parse_time(str(element.value))
            except ValueError:
                element.value = ""
                continue
            moved = datetime.combine(day or date(2000, 1, 1), at) + delta
            element.value = _format_time(moved, digits)
            if element.keyword == "RadiopharmaceuticalStartTime" and day is not None \
                    and "RadiopharmaceuticalStartDateTime" not in ds:
                ds.RadiopharmaceuticalStartDateTime = moved.strftime("%Y%m%d") + _format_time(moved, digits)
        elif element.VR == "TM":
            element.value = ""  # several times without a date: rare; dropped rather than kept
