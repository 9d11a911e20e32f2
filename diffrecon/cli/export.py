"""``diffrecon export``: a result volume (+ optional SD map) -> DICOM series (joining a source study) -> PACS.

Argument parsing only: the export is :func:`diffrecon.io.export.export_result`. Other commands reuse the
options: :func:`add_export_arguments` adds them (all optional, prefixed) to a parser group,
:func:`check_export_args` turns them once into the library's settings (checked, the source series loaded, each
PACS asked whether it answers) before any long computation, and :func:`export_from_args` writes and sends a
volume with those settings (doing nothing without export options). Secrets come from the environment, never
from the command line: DIFFRECON_STOW_PASSWORD, DIFFRECON_STOW_TOKEN and DIFFRECON_DEID_KEY.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffrecon.checks import InputError, check_choice, check_output_dir

if TYPE_CHECKING:  # the io modules load pydicom (0.4 s): imported where used, so that --help stays quick
    from diffrecon.io.dicom_deid import Deidentifier
    from diffrecon.io.dicom_read import DicomVolume
    from diffrecon.io.export import ExportReport
    from diffrecon.io.pacs import DimseTarget, StowTarget


@dataclass
class ExportOptions:
    """The keyword arguments of :func:`export_result` taken from the command line by :func:`check_export_args`."""

    source: DicomVolume | None
    targets: list[DimseTarget | StowTarget]
    dicom_dir: Path | None
    units: str
    deidentifier: Deidentifier | None
    retries: int
    backoff: float


def add_export_arguments(group: argparse._ArgumentGroup) -> None:
    """Add the DICOM export and PACS options (all optional) to ``group``."""
    group.add_argument("--export-dicom-dir", help="write the result as DICOM series here (default: <out>/dicom, "
                                                  "or a temporary folder, when a PACS is given)")
    group.add_argument("--export-source-dicom", help="source DICOM series folder: the result joins its study "
                                                     "(the result's affine must be in its patient coordinates)")
    group.add_argument("--export-source-series-uid", help="SeriesInstanceUID of the source when the folder holds "
                                                          "several series")
    group.add_argument("--export-units", default="PROPCNTS",
                       help="PET Units of the result (BQML when calibrated; default PROPCNTS)")
    group.add_argument("--export-deidentify", nargs="?", const="full", default=None, choices=("full", "shift"),
                       help="de-identify the written series (basic profile subset, docs/dicom.md); the key that "
                            "makes pseudonyms and UIDs repeatable comes from $DIFFRECON_DEID_KEY. Dates: full "
                            "(kept, the default) or shift (every date and time moved back by a keyed per-patient "
                            "offset that keeps intervals, so SUV still works: PS3.15 modified dates)")
    group.add_argument("--export-patient-pseudonym", help="PatientID/PatientName to use when de-identifying")
    group.add_argument("--pacs-host", help="PACS host for C-STORE")
    group.add_argument("--pacs-port", type=int, default=104, help="PACS DICOM port (default 104)")
    group.add_argument("--pacs-called-aet", help="the PACS's AE title (required with --pacs-host)")
    group.add_argument("--pacs-calling-aet", default="DIFFRECON", help="our AE title (default DIFFRECON)")
    group.add_argument("--pacs-tls-ca", help="CA certificate file: use TLS for C-STORE")
    group.add_argument("--pacs-tls-cert", help="client certificate file for TLS (with --pacs-tls-key)")
    group.add_argument("--pacs-tls-key", help="client private key file for TLS")
    group.add_argument("--stow-url", help="DICOMweb service root for STOW-RS, e.g. https://pacs/dicom-web "
                                          "(basic auth: --stow-user + $DIFFRECON_STOW_PASSWORD; bearer: "
                                          "$DIFFRECON_STOW_TOKEN)")
    group.add_argument("--stow-user", help="user name for HTTP basic authentication")
    group.add_argument("--stow-tls-ca", help="CA certificate file for an https DICOMweb server")
    group.add_argument("--pacs-retries", type=int, default=3, help="retries after a lost connection (default 3)")
    group.add_argument("--pacs-backoff", type=float, default=1.0,
                       help="seconds before the first retry, doubled each time (default 1)")


def export_requested(args: argparse.Namespace) -> bool:
    """True when any export option was given."""
    return any(getattr(args, name, None) for name in ("export_dicom_dir", "pacs_host", "stow_url"))


def _targets(args: argparse.Namespace) -> list[DimseTarget | StowTarget]:
    """The PACS targets the options name (their form checked; whether they answer is checked later)."""
    from diffrecon.io.pacs import DimseTarget, StowTarget

    targets: list[DimseTarget | StowTarget] = []
    if args.pacs_host:
        if not args.pacs_called_aet:
            raise InputError("--pacs-called-aet is required with --pacs-host; expected the PACS's AE title")
        if not 0 < args.pacs_port < 65536:
            raise InputError(f"--pacs-port must be 1..65535, got {args.pacs_port}")
        if bool(args.pacs_tls_cert) != bool(args.pacs_tls_key):
            raise InputError("--pacs-tls-cert and --pacs-tls-key go together; expected both or neither")
        if args.pacs_tls_cert and not args.pacs_tls_ca:
            raise InputError("--pacs-tls-cert needs --pacs-tls-ca (the CA that signed the PACS's certificate)")
        for option in ("pacs_tls_ca", "pacs_tls_cert", "pacs_tls_key"):
            if getattr(args, option) and not Path(getattr(args, option)).is_file():
                raise InputError(f"--{option.replace('_', '-')}: file {getattr(args, option)!r} does not exist")
        targets.append(DimseTarget(args.pacs_host, args.pacs_port, args.pacs_called_aet, args.pacs_calling_aet,
                                   args.pacs_tls_ca, args.pacs_tls_cert, args.pacs_tls_key))
    if args.stow_url:
        if not args.stow_url.startswith(("http://", "https://")):
            raise InputError(f"--stow-url {args.stow_url!r}; expected an http:// or https:// DICOMweb root")
        password, token = os.environ.get("DIFFRECON_STOW_PASSWORD"), os.environ.get("DIFFRECON_STOW_TOKEN")
        if args.stow_user and password is None:
            raise InputError("--stow-user given but $DIFFRECON_STOW_PASSWORD is not set; expected the password there")
        targets.append(StowTarget(args.stow_url, args.stow_user, password, token, args.stow_tls_ca))
    return targets


def check_export_args(args: argparse.Namespace, modality: str) -> ExportOptions | None:
    """Check the export options before a long computation and turn them into :func:`export_result`'s settings.

    Cheap checks first, then the source series is loaded and each PACS is asked whether it answers (C-ECHO
    with the AE titles and TLS given, or a QIDO-RS search with the credentials).

    Returns:
        None when no export option was given, else the settings to pass to :func:`export_from_args`.

    Raises:
        InputError: naming the option to fix, before anything is written.
    """
    from diffrecon.io.dicom_deid import Deidentifier
    from diffrecon.io.dicom_write import PET_UNITS
    from diffrecon.io.export import MODALITIES, check_targets, load_source

    if not export_requested(args):
        for option in ("export_source_dicom", "export_deidentify"):
            if getattr(args, option, None):
                raise InputError(f"--{option.replace('_', '-')} needs --export-dicom-dir, --pacs-host or --stow-url")
        return None
    check_choice("modality", modality, MODALITIES)
    if modality == "PT":
        check_choice("--export-units", args.export_units, PET_UNITS)
    if args.pacs_retries < 0 or args.pacs_backoff < 0:
        raise InputError("--pacs-retries and --pacs-backoff must be >= 0")
    deidentifier = None
    if args.export_deidentify:
        if not os.environ.get("DIFFRECON_DEID_KEY"):
            raise InputError("--export-deidentify needs $DIFFRECON_DEID_KEY (a secret that makes pseudonyms and "
                             "UIDs repeatable across exports)")
        deidentifier = Deidentifier(os.environ["DIFFRECON_DEID_KEY"], args.export_patient_pseudonym,
                                    dates=args.export_deidentify)
    dicom_dir = None
    if args.export_dicom_dir:
        dicom_dir = check_output_dir("--export-dicom-dir", args.export_dicom_dir)
    elif getattr(args, "out", None):
        dicom_dir = check_output_dir("--out", Path(args.out) / "dicom")
    targets = _targets(args)
    source = None
    if args.export_source_dicom:
        source = load_source(args.export_source_dicom, modality, args.export_source_series_uid,
                             "--export-source-dicom", choose="choose one with --export-source-series-uid UID")
    check_targets(targets)
    return ExportOptions(source, targets, dicom_dir, args.export_units, deidentifier, args.pacs_retries,
                         args.pacs_backoff)


def export_from_args(args: argparse.Namespace, volume, affine, *, modality: str, method_description: str,
                     std_volume=None, options: ExportOptions | None = None, std_note: str = "") -> ExportReport | None:
    """Write ``volume`` (and ``std_volume``, linked to it) as DICOM and send both to the PACS targets given.

    Args:
        args: parsed options from :func:`add_export_arguments` (and ``out``, if the command has one).
        volume: (x, y, z) result, numpy array or tensor (any device).
        affine: its 4x4 RAS affine.
        modality: "PT" or "MR".
        method_description: method and settings, shown in SeriesDescription.
        std_volume: optional voxel-wise standard deviation on the same grid, written as a second series.
        options: what :func:`check_export_args` returned for ``args`` (checked then); None: check now.
        std_note: after "SD" in the std series' description: its calibration factor and scope, if any.

    Returns:
        None when no export option was given, else the report (check ``report.ok``); it is also written as
        export_report.json beside the series.
    """
    from diffrecon.io.export import export_result

    options = options or check_export_args(args, modality)
    if options is None:
        return None
    return export_result(volume, affine, std_volume, modality=modality, method_description=method_description,
                         std_note=std_note, **vars(options))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="result (NIfTI or DICOM) -> DICOM series -> PACS",
        description="Write a reconstruction as a DICOM PET or MR series (research use, not for diagnosis), "
                    "optionally joining the study of the source DICOM series and with a linked standard-deviation "
                    "series, and send it to a PACS by C-STORE and/or STOW-RS, checking that every instance "
                    "arrived. Rerunning sends only what is missing. Exit status 1 when a transfer is incomplete.")
    parser.add_argument("--result", required=True, help="result volume: NIfTI file or DICOM series folder")
    parser.add_argument("--std", help="voxel-wise standard deviation on the same grid (NIfTI or DICOM)")
    parser.add_argument("--modality", required=True, help="series type to write: PT or MR")
    parser.add_argument("--method-description", required=True,
                        help="method and settings for SeriesDescription, e.g. 'MAP-RDP beta=0.3'")
    parser.add_argument("--std-note", default="", help="after 'SD' in the std series' description: the std's "
                                                       "calibration factor and scope, e.g. 'x2.65 cal demo2d 1%%' (default "
                                                       "none)")
    add_export_arguments(parser.add_argument_group("DICOM export and PACS"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from diffrecon.checks import check_finite, naming_file
    from diffrecon.io.volumes import load_volume

    if not export_requested(args):
        raise InputError("nothing to do: give --export-dicom-dir, --pacs-host and/or --stow-url")
    volume, affine = load_volume(args.result, "--result")
    with naming_file(args.result):  # the images are checked before the options ask the PACS or anything is written
        check_finite("--result", volume)
    std = None
    if args.std:
        std, std_affine = load_volume(args.std, "--std")
        with naming_file(args.std):
            check_finite("--std", std)
        if not np.allclose(std_affine, affine, atol=1e-4):
            raise InputError("--std is on a different grid (affine) than --result; expected the same grid")
    options = check_export_args(args, args.modality)
    report = export_from_args(args, volume, affine, modality=args.modality,
                              method_description=args.method_description, std_volume=std, options=options,
                              std_note=args.std_note)
    print_export_report(report, "export", "rerun to send what is missing")


def print_export_report(report: ExportReport, command: str, remedy: str) -> None:
    """Print what was written and sent; exit with status 1 (after saying ``remedy``) when a transfer is incomplete.

    The series and export_report.json stay in the DICOM folder either way.
    """
    print(report.summary())
    if not report.ok:
        if any(t.refusal for t in report.transfers):
            remedy = f"the PACS refused us: fix the option it names (see above), then {remedy}"
        print(f"diffrecon {command}: error: the PACS transfer is incomplete (see above); {remedy}", file=sys.stderr)
        raise SystemExit(1)
