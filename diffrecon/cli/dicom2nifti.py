"""``diffrecon dicom2nifti``: one DICOM series (PET with optional body-weight SUV, MR, ...) -> NIfTI + JSON."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dicom2nifti", help="DICOM series folder -> NIfTI (RAS affine, optional PET SUV)",
        description="Convert one DICOM image series to NIfTI with a RAS affine (slices sorted along the slice "
                    "normal, per-slice rescale applied). With --suv, a PET series in Bq/mL becomes body-weight "
                    "SUV (needs Units BQML, DecayCorrection START or ADMIN, PatientWeight, dose, half-life, "
                    "injection and series times). A JSON sidecar records the series and units.")
    parser.add_argument("folder", help="folder holding the DICOM files (searched recursively)")
    parser.add_argument("--out", help="output NIfTI file (.nii or .nii.gz)")
    parser.add_argument("--series-uid", help="SeriesInstanceUID to convert when the folder holds several series")
    parser.add_argument("--modality", help="or: the modality (PT, MR, ...) of the one series to convert")
    parser.add_argument("--suv", action="store_true", help="convert PET activity (Bq/mL) to body-weight SUV")
    parser.add_argument("--list", action="store_true", help="list the series in the folder and stop")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from pathlib import Path

    from diffrecon.checks import InputError, check_output_dir
    from diffrecon.io.dicom_read import list_series, load_dicom_series
    from diffrecon.io.nifti import save_nifti

    if args.list:
        for series in list_series(args.folder, "folder"):
            print(f"{series.series_uid}  {series.modality:3s} {len(series.files):5d} files  {series.description}")
        return
    if not args.out or not args.out.endswith((".nii", ".nii.gz")):
        raise InputError(f"--out {args.out!r}; expected an output file name ending in .nii or .nii.gz")
    check_output_dir("--out (its folder)", Path(args.out).parent)
    volume = load_dicom_series(args.folder, series_uid=args.series_uid, modality=args.modality, suv=args.suv,
                               name="folder")
    path = save_nifti(args.out, volume.array, volume.affine)
    first = volume.datasets[0]
    sidecar = {"source": str(args.folder), "series_uid": volume.series_uid, "modality": volume.modality,
               "series_description": str(first.get("SeriesDescription", "")), "units": volume.units,
               "shape": list(volume.array.shape), "affine_ras": volume.affine.round(6).tolist(),
               "min": float(volume.array.min()), "max": float(volume.array.max())}
    json_path = path.with_name(path.name.removesuffix(".gz").removesuffix(".nii") + ".json")
    tmp = json_path.with_name(json_path.name + ".partial")
    tmp.write_text(json.dumps(sidecar, indent=2))
    tmp.replace(json_path)
    print(f"{volume.modality} series {volume.series_uid}: {volume.array.shape} voxels, units {volume.units}, "
          f"range {sidecar['min']:.4g}..{sidecar['max']:.4g} -> {path}")
