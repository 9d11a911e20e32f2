"""The cases of a cohort: found in a folder, listed in a manifest (CSV), or the built-in demo cases, and loaded
by the same calls as ``diffrecon recon`` (:func:`diffrecon.io.cases.load_pet_case`,
:func:`diffrecon.io.cases.load_mri_case`, :func:`diffrecon.io.demo_cases.simulated_pet_case`).

A :class:`CaseSpec` is small and picklable: the driver lists the cases (cheap, no file is read beyond names), the
workers load them. A manifest has a ``case`` column (unique names) and one column per loader keyword; empty cells
are left out; relative paths are relative to the manifest's folder.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffrecon.checks import InputError

# loader keyword -> type of the manifest cell ("path": a file or folder, resolved against the manifest's folder)
PET_COLUMNS = {"sinogram": "path", "multiplicative": "path", "additive": "path", "mu_map": "path", "grid": "grid",
               "psf_fwhm": float, "reference": "path", "mr": "path"}
MRI_COLUMNS = {"kspace": "path", "image": "path", "layout": str, "readout_oversampling": int, "slice_index": int,
               "coils": int, "snr_db": float, "mask": "mask", "acceleration": float, "center_fraction": float,
               "seed": int}
OTHER_COLUMNS = {"case": str, "export_source_dicom": "path"}
SINOGRAM_SUFFIXES = (".npz", ".nii.gz", ".nii", ".hs")
KSPACE_SUFFIXES = (".h5", ".dat", ".npy", ".npz")
DEMO = re.compile(r"demo(?::(\d+))?")
DEMO_SETTINGS = {"preset": "demo2d", "count_level": "10%", "lesions": 2}  # seconds per case on a CPU


@dataclass(frozen=True)
class CaseSpec:
    """One study of a cohort, by name: what its loader is given.

    Attributes:
        name: unique within the cohort; the output folder ``<out>/<name>/``.
        modality: "PT" or "MR" (the methods of that modality reconstruct it).
        options: the loader's keyword arguments (PET: :func:`load_pet_case`'s sinogram, factors, mu_map, grid,
            psf_fwhm and images reference/mr; MRI: :func:`load_mri_case`'s), or the demo case's settings.
        demo: True for a built-in phantom case (:func:`simulated_pet_case` with ``options``).
        export_source: DICOM series folder the exported result joins (its study), if any.
        masks: phantom masks for the lesion CRC (``lesion_masks``, ``white_matter``, ``labels`` NIfTI files of a
            ``diffrecon simulate`` folder), if any.
    """

    name: str
    modality: str
    options: dict[str, Any] = field(default_factory=dict)
    demo: bool = False
    export_source: str | None = None
    masks: dict[str, str] = field(default_factory=dict)


def find_cases(cases: str | Path, name: str = "cases") -> list[CaseSpec]:
    """The cases of ``cases``: ``demo`` or ``demo:N`` (N test-split phantom subjects on the one-slice demo2d
    scanner, default 4), a manifest ``.csv``, or a folder (see :func:`folder_cases`).

    Raises:
        InputError: a missing path, an unreadable manifest, a folder that holds no case, duplicate names (named).
    """
    text = str(cases)
    demo = DEMO.fullmatch(text)
    if demo:
        return demo_cases(int(demo[1] or 4), name)
    path = Path(text)
    if path.is_file() and path.suffix.lower() == ".csv":
        found = read_manifest(path, name)
    elif path.is_dir():
        found = folder_cases(path, name)
    elif path.exists():
        raise InputError(f"{name} {text!r} is a file but not a .csv manifest; expected a folder of cases, a "
                         "manifest .csv or 'demo[:N]'")
    else:
        raise InputError(f"{name} {text!r} does not exist; expected a folder of cases, a manifest .csv or "
                         "'demo[:N]'")
    if not found:
        raise InputError(f"{name} {text!r} holds no case; expected diffrecon simulate folders, folders with a "
                         f"sinogram{'/'.join(SINOGRAM_SUFFIXES)} or kspace{'/'.join(KSPACE_SUFFIXES)} file, or "
                         "manifest rows")
    names = [spec.name for spec in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"{name} {text!r}: case names must be unique; repeated: {', '.join(duplicates)}")
    return found


def demo_cases(n: int, name: str = "cases") -> list[CaseSpec]:
    """``n`` built-in phantom cases: test-split subjects on the demo2d scanner at 10% counts, two hot lesions."""
    from diffrecon.data.splits import subject_seeds

    if n < 1:
        raise InputError(f"{name} 'demo:{n}' must name at least 1 case")
    return [CaseSpec(f"demo_{seed}", "PT", {"seed": seed, "noise_seed": seed, **DEMO_SETTINGS}, demo=True)
            for seed in subject_seeds("test", n)]


def _first(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    return next((folder / f"{stem}{suffix}" for suffix in suffixes if (folder / f"{stem}{suffix}").exists()), None)


def folder_cases(folder: Path, name: str = "cases") -> list[CaseSpec]:
    """Each sub-folder of ``folder`` (sorted; hidden ones skipped) is a case named after it:

    - a ``diffrecon simulate`` folder (``simulation.json``): its files, PSF and grid; the lesion masks give CRC;
    - ``sinogram.{npz,nii.gz,nii,hs}`` with optional ``multiplicative.*``, ``additive.*``, ``mu_map.nii(.gz)`` or a
      ``mu_map/`` DICOM series (μ-map or CT), ``reference.nii.gz``, ``mr.nii.gz``;
    - ``kspace.{h5,dat,npy,npz}`` (fastMRI, ISMRMRD, Siemens twix, NumPy);

    plus, in any of them, a ``source/`` DICOM folder (the exported result joins its study) and a ``case.json``
    whose keys are manifest columns (e.g. ``{"acceleration": 4, "psf_fwhm": 4.5}``). Sub-folders that are none of
    these are refused, named, so that a typo does not silently shrink the cohort.
    """
    specs, unknown = [], []
    folder = folder.resolve()  # workers may run elsewhere (another folder, another node of a shared file system)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        row: dict[str, Any] = {"case": sub.name}
        if (sub / "simulation.json").is_file():
            row["sinogram"] = str(sub)
        elif (sinogram := _first(sub, "sinogram", SINOGRAM_SUFFIXES)) is not None:
            row["sinogram"] = str(sinogram)
            for key in ("multiplicative", "additive"):
                if (factor := _first(sub, key, SINOGRAM_SUFFIXES)) is not None:
                    row[key] = str(factor)
            for key in ("mu_map", "reference", "mr"):
                if (image := _first(sub, key, (".nii.gz", ".nii", ""))) is not None:
                    row[key] = str(image)
        elif (kspace := _first(sub, "kspace", KSPACE_SUFFIXES)) is not None:
            row["kspace"] = str(kspace)
        else:
            unknown.append(sub.name)
            continue
        if (sub / "source").is_dir():
            row["export_source_dicom"] = str(sub / "source")
        if (sub / "case.json").is_file():
            try:
                extra = json.loads((sub / "case.json").read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise InputError(f"{name}: {str(sub / 'case.json')!r} is not JSON: {error}") from error
            if not isinstance(extra, dict):
                raise InputError(f"{name}: {str(sub / 'case.json')!r} must hold an object of manifest columns")
            row.update({key: "" if value is None else str(value) for key, value in extra.items()})
        specs.append(case_from_row(row, sub, f"{name} {str(sub)!r}"))
    if unknown:
        raise InputError(f"{name} {str(folder)!r}: sub-folder(s) {', '.join(map(repr, unknown))} hold no case "
                         f"(simulation.json, sinogram{'/'.join(SINOGRAM_SUFFIXES)} or "
                         f"kspace{'/'.join(KSPACE_SUFFIXES)}); move them out or list the cases in a manifest .csv")
    return specs


def read_manifest(path: Path, name: str = "cases") -> list[CaseSpec]:
    """The cases of a manifest CSV: a ``case`` column and the loader columns (:data:`PET_COLUMNS`,
    :data:`MRI_COLUMNS`, ``export_source_dicom``); one row per case."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{name}: cannot read the manifest {str(path)!r}: {error}") from error
    known = {**PET_COLUMNS, **MRI_COLUMNS, **OTHER_COLUMNS}
    unknown = [column for column in columns if column not in known]
    if unknown or "case" not in columns:
        raise InputError(f"{name} {str(path)!r}: columns {unknown or columns}; expected a 'case' column and "
                         f"some of {', '.join(k for k in known if k != 'case')}")
    return [case_from_row(row, path.parent, f"{name} {str(path)!r} row {i + 2}") for i, row in enumerate(rows)]


def _cell(key: str, text: str, kind: Any, base: Path, where: str) -> Any:
    """A manifest cell as the loader's keyword value: paths resolved against ``base``, numbers parsed."""
    if kind in ("path", "grid", "mask"):
        if kind != "path" and not text.endswith((".nii", ".nii.gz", ".npy")):
            return text  # a preset name (grid) or a mask kind (mask)
        path = Path(text).expanduser()
        path = (path if path.is_absolute() else base / path).resolve()
        if not path.exists():
            raise InputError(f"{where}: {key} {text!r} does not exist (looked for {str(path)!r})")
        return str(path)
    try:
        return kind(text)
    except ValueError as error:
        raise InputError(f"{where}: {key} is {text!r}; expected {'an integer' if kind is int else 'a number'}") \
            from error


def case_from_row(row: dict[str, Any], base: Path, where: str) -> CaseSpec:
    """A :class:`CaseSpec` from a manifest row (or a case folder's files): modality from its data column."""
    cells = {key: str(value).strip() for key, value in row.items() if key and value is not None
             and str(value).strip()}
    case = cells.pop("case", "")
    if not case or "/" in case or case.startswith("."):
        raise InputError(f"{where}: case is {case!r}; expected a name usable as a folder name")
    pet, mri = [k for k in cells if k in PET_COLUMNS], [k for k in cells if k in MRI_COLUMNS]
    if ("sinogram" in cells) == ("kspace" in cells or "image" in cells):
        raise InputError(f"{where}: case {case!r} needs exactly one of sinogram (PET), kspace or image (MRI)")
    modality, columns = ("PT", PET_COLUMNS) if "sinogram" in cells else ("MR", MRI_COLUMNS)
    wrong = mri if modality == "PT" else [k for k in pet if k != "reference"]
    if wrong or (modality == "MR" and "reference" in cells):
        raise InputError(f"{where}: case {case!r} is {'PET' if modality == 'PT' else 'MRI'}; columns "
                         f"{', '.join(wrong or ['reference'])} are for the other modality")
    options = {key: _cell(key, text, columns[key], base, where) for key, text in cells.items() if key in columns}
    source = _cell("export_source_dicom", cells["export_source_dicom"], "path", base, where) \
        if "export_source_dicom" in cells else None
    masks = {}
    folder = Path(options.get("sinogram", ""))
    if modality == "PT" and folder.is_dir():
        masks = {key: str(folder / f"{key}.nii.gz") for key in ("lesion_masks", "white_matter", "labels")
                 if (folder / f"{key}.nii.gz").is_file()}
    return CaseSpec(case, modality, options, export_source=source, masks=masks if len(masks) == 3 else {})


def load_case(spec: CaseSpec, device: Any = "cpu"):
    """Load ``spec`` as ``diffrecon recon`` and the bundles do (:func:`diffrecon.pipeline.pet_case`,
    :func:`diffrecon.io.cases.load_mri_case`); returns a :class:`diffrecon.io.cases.Case`."""
    from diffrecon.io.cases import load_mri_case
    from diffrecon.pipeline import pet_case

    if spec.demo:
        return pet_case(demo={**spec.options, "lesion_kinds": "hot"}, device=device)
    options = dict(spec.options)
    if spec.modality == "MR":
        return load_mri_case(options.pop("kspace", None), device=device, **options)
    return pet_case(options.pop("sinogram"), device=device, **options)
