"""Export a result as a library call: volume (+ SD map) -> DICOM series (joining a source study) -> PACS.

:func:`export_result` is what ``diffrecon export``, ``diffrecon recon``, the bundles and a user's script call.
It needs no command line: the source series, the PACS targets (:class:`~diffrecon.io.pacs.DimseTarget`,
:class:`~diffrecon.io.pacs.StowTarget`) and the de-identifier are objects. Its parameters are checked before
anything is written. Run :func:`check_targets` before a long computation so that an unreachable PACS or a
wrong AE title is found first; :func:`export_result` itself does not ask again: whatever goes wrong during
the transfer is in the returned :class:`ExportReport`, also written as ``export_report.json`` beside the
series, which stay on disk.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffrecon.checks import (InputError, check_at_least, check_choice, check_finite, check_integer,
                              check_output_dir, check_shape)
from diffrecon.io.dicom_deid import Deidentifier
from diffrecon.io.dicom_read import DicomVolume, list_series, load_dicom_series, select_series
from diffrecon.io.dicom_write import PET_UNITS, WrittenSeries, write_dicom_series
from diffrecon.io.pacs import DimseTarget, StowTarget, TransferReport, check_target, send_to_pacs

MODALITIES = ("PT", "MR")
REPORT_NAME = "export_report.json"


@dataclass
class ExportReport:
    """The series written and, per PACS, what arrived; ``ok`` only when every transfer was verified complete.

    ``error`` is set (in the JSON file) when an unexpected failure stopped the export; the failure is raised.
    """

    series: list[WrittenSeries] = field(default_factory=list)
    transfers: list[TransferReport] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and all(t.ok for t in self.transfers)

    def summary(self) -> str:
        lines = [f"wrote {len(s.files)} instances of series {s.series_uid} to {s.folder}" for s in self.series]
        return "\n".join(lines + [t.summary() for t in self.transfers] + ([self.error] if self.error else []))

    def to_dict(self) -> dict:
        """The report as JSON-serialisable counts and messages (per-instance failures by SOPInstanceUID)."""
        return {"ok": self.ok, "error": self.error,
                "series": [{"folder": str(s.folder), "series_uid": s.series_uid, "study_uid": s.study_uid,
                            "instances": len(s.files)} for s in self.series],
                "transfers": [{"target": t.target, "ok": t.ok, "verified": t.verified, "expected": len(t.expected),
                               "sent": len(t.sent), "already_present": len(t.already_present),
                               "unconfirmed": len(t.unconfirmed), "failed": t.failed, "missing": t.missing,
                               "verify_error": t.verify_error, "refusal": t.refusal} for t in self.transfers]}


def load_source(folder: str | Path, modality: str, series_uid: str | None = None,
                name: str = "source", choose: str = "choose one by series_uid") -> DicomVolume:
    """Load the source series from ``folder``: the one with ``series_uid``, the only one, or the one of ``modality``;
    ``choose`` says how to pick one where several match (the command line names its option)."""
    series = list_series(folder, name)
    if series_uid is None and len(series) > 1:
        series_uid = select_series(series, modality=modality, name=name, choose=choose).series_uid
    return load_dicom_series(folder, series_uid=series_uid, name=name)


def check_targets(targets: Sequence[DimseTarget | StowTarget]) -> None:
    """Check that every PACS target answers (C-ECHO, or a QIDO-RS search): before a long computation.

    Raises:
        InputError: a target has the wrong type, is unreachable or refuses us; the message names the option.
    """
    for target in targets:
        check_target(target)


def _array(value, dtype: type) -> np.ndarray:
    """``value`` (numpy array or tensor on any device) as a numpy array of ``dtype``."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def std_note(report: Mapping[str, Any]) -> str:
    """The std series' note for a result's ``report``: its "std_calibration" factor and scope ("x2.65 cal demo2d
    1%"), or "" when the std was not recalibrated."""
    from diffrecon.uncertainty.calibration import StdCalibration

    calibration = report.get("std_calibration")
    return StdCalibration(**calibration).describe() if calibration else ""


def export_result(volume, affine, std=None, *, modality: str, method_description: str,
                  source: DicomVolume | str | Path | None = None,
                  targets: Sequence[DimseTarget | StowTarget] = (), dicom_dir: str | Path | None = None,
                  units: str = "PROPCNTS", deidentifier: Deidentifier | None = None, retries: int = 3,
                  backoff: float = 1.0, std_note: str = "") -> ExportReport:
    """Write ``volume`` (and ``std``, linked to it) as DICOM series and send both to each PACS target.

    Args:
        volume: (x, y, z) result, numpy array or tensor (any device).
        affine: its 4x4 RAS affine (in the source's patient coordinates when ``source`` is given).
        std: optional voxel-wise standard deviation on the same grid, written as a second series (number 901).
        modality: "PT" or "MR".
        method_description: method and settings, shown in SeriesDescription.
        source: the source series (loaded, or its folder): the result joins its study.
        targets: PACS to send to; run :func:`check_targets` on them before a long computation.
        dicom_dir: folder for the series (``mean/``, ``std/``) and ``export_report.json``; None: a temporary
            folder, deleted after sending.
        units: PET Units (BQML when calibrated; default PROPCNTS).
        deidentifier: de-identify the written instances.
        retries: retries after a lost connection, per step.
        backoff: seconds before the first retry, doubled each time.
        std_note: written after "SD" in the std series' description and comments: the calibration factor and
            scope when the std was recalibrated (:func:`std_note`, from the result's report).

    Returns:
        The report: check ``report.ok``. A refused or interrupted transfer is in it, not raised.

    Raises:
        InputError: a bad parameter (named), before anything is written.
    """
    check_choice("modality", modality, MODALITIES)
    if modality == "PT":
        check_choice("units", units, PET_UNITS)
    volume, affine = _array(volume, np.float32), _array(affine, np.float64)
    if volume.ndim != 3:
        raise InputError(f"volume has shape {volume.shape}; expected (x, y, z)")
    check_finite("volume", volume)
    check_shape("affine", affine, (4, 4))
    if std is not None:
        std = _array(std, np.float32)
        if std.shape != volume.shape:
            raise InputError(f"std has shape {std.shape}; expected the volume's shape {volume.shape}")
        check_finite("std", std)
    targets = list(targets)
    for i, target in enumerate(targets):
        if not isinstance(target, (DimseTarget, StowTarget)):
            raise InputError(f"targets[{i}] is {type(target).__name__}; expected DimseTarget or StowTarget")
    if dicom_dir is None and not targets:
        raise InputError("nothing to export: give dicom_dir and/or targets")
    if dicom_dir is not None:
        dicom_dir = check_output_dir("dicom_dir", dicom_dir)
    if deidentifier is not None and not isinstance(deidentifier, Deidentifier):
        raise InputError(f"deidentifier is {type(deidentifier).__name__}; expected a Deidentifier or None")
    check_integer("retries", retries, minimum=0)
    check_at_least("backoff", backoff)
    if source is not None and not isinstance(source, DicomVolume):
        source = load_source(source, modality)
    settings = {"modality": modality, "method_description": method_description, "units": units, "source": source,
                "deidentifier": deidentifier}
    report = ExportReport()
    with tempfile.TemporaryDirectory(prefix="diffrecon-dicom-") as scratch:
        folder = Path(scratch) if dicom_dir is None else dicom_dir
        try:
            report.series.append(write_dicom_series(volume, affine, folder / "mean", **settings))
            if std is not None:
                report.series.append(write_dicom_series(std, affine, folder / "std", series_number=901,
                                                        describes=report.series[0], note=std_note, **settings))
            files = [path for series in report.series for path in series.files]
            for target in targets:
                report.transfers.append(send_to_pacs(files, target, retries=retries, backoff=backoff))
        except BaseException as error:
            report.error = f"export stopped by {type(error).__name__}: {error}"
            raise
        finally:
            if dicom_dir is not None and report.series:
                (folder / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2))
    return report
