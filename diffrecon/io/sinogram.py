"""Self-describing PET sinogram files: NumPy ``.npz``, NIfTI (+ JSON sidecar) and STIR Interfile (``.hs``).

Every format stores the array in our layout (..., n_sinograms, n_views, n_bins) (see
``diffrecon.physics.geometry``) together with the ``ScannerGeometry`` it belongs to, so that
``load_sinogram`` returns both and the data can be projected without extra arguments.
"""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import torch

from diffrecon.checks import InputError, check_file, check_finite, check_shape
from diffrecon.io.interfile import read_interfile_sinogram, write_bytes_atomic, write_interfile_sinogram
from diffrecon.io.nifti import load_nifti, save_nifti
from diffrecon.physics.geometry import ScannerGeometry

FORMATS = {".npz": "numpy", ".nii": "nifti", ".nii.gz": "nifti", ".hs": "interfile"}
_GEOMETRY_FIELDS = tuple(f.name for f in dataclasses.fields(ScannerGeometry))


def sinogram_format(path: str | Path) -> str:
    """'numpy', 'nifti' or 'interfile' from the file name; clear error for anything else."""
    name = Path(path).name.lower()
    for suffix, kind in FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise InputError(f"path {str(path)!r}: unknown sinogram file type; expected a name ending in "
                     f"{', '.join(FORMATS)}")


def geometry_to_dict(scanner: ScannerGeometry) -> dict:
    """All ``ScannerGeometry`` fields (name included) as a JSON-ready dict."""
    return dataclasses.asdict(scanner)


def geometry_from_dict(fields: dict, source: str) -> ScannerGeometry:
    """Rebuild a ``ScannerGeometry``; ``source`` (the file) is named in every error."""
    if not isinstance(fields, dict):
        raise InputError(f"{source}: scanner geometry must be a JSON object, got {type(fields).__name__}")
    unknown = sorted(set(fields) - set(_GEOMETRY_FIELDS))
    missing = sorted(f.name for f in dataclasses.fields(ScannerGeometry)
                     if f.name not in fields and f.default is dataclasses.MISSING)
    if unknown or missing:
        raise InputError(f"{source}: scanner geometry has unknown field(s) {unknown} / lacks required field(s) "
                         f"{missing}; expected the fields {list(_GEOMETRY_FIELDS)}")
    for f in dataclasses.fields(ScannerGeometry):
        if f.name in fields and not _of_type(fields[f.name], f.type):
            raise InputError(f"{source}: scanner geometry field {f.name!r} is {fields[f.name]!r}; expected "
                             f"{'a string' if f.type == 'str' else 'an integer' if f.type == 'int' else 'a number'}")
    try:
        return ScannerGeometry(**fields)
    except (InputError, TypeError, ValueError) as error:
        raise InputError(f"{source}: invalid scanner geometry: {error}") from error


def _of_type(value: object, annotation: str) -> bool:
    """Whether a JSON value fits a ScannerGeometry field's annotation ('int', 'float' or 'str'); booleans are not
    numbers here."""
    if annotation == "str":
        return isinstance(value, str)
    kinds = (int,) if annotation == "int" else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool)


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar beside a NIfTI sinogram: ``sino.nii.gz`` -> ``sino.json``."""
    path = Path(path)
    stem = path.name[:-len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem
    return path.with_name(stem + ".json")


def save_sinogram(path: str | Path, sinogram: torch.Tensor | np.ndarray, scanner: ScannerGeometry,
                  **interfile_options: str) -> Path:
    """Write ``sinogram`` (..., n_sinograms, n_views, n_bins) with its ``scanner`` geometry, as float32.

    The format follows the suffix: ``.npz`` (array + geometry JSON), ``.nii``/``.nii.gz`` (array with axes
    reversed, so viewers page through sinograms, + ``<stem>.json`` geometry sidecar) or ``.hs`` (STIR Interfile
    + ``.s`` raw data; no batch dimensions; ``storage_order`` may be passed). Every file is written under a
    temporary name and renamed at the end.

    Raises:
        InputError: unknown suffix, shape not ending in ``scanner.data_shape``, NaN/Inf values.
    """
    kind = sinogram_format(path)
    if interfile_options and kind != "interfile":
        raise InputError(f"options {sorted(interfile_options)} apply only to Interfile ('.hs') files")
    if kind == "interfile":
        return write_interfile_sinogram(path, sinogram, scanner, **interfile_options)
    array = sinogram.detach().cpu().numpy() if isinstance(sinogram, torch.Tensor) else np.asarray(sinogram)
    check_shape("sinogram", array, scanner.data_shape, "scanner.data_shape (n_sinograms, n_views, n_bins)")
    check_finite("sinogram", array)
    array = array.astype(np.float32, copy=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    geometry = json.dumps(geometry_to_dict(scanner), indent=1)
    if kind == "numpy":
        buffer = io.BytesIO()
        np.savez(buffer, sinogram=array, geometry=np.array(geometry))
        write_bytes_atomic(path, buffer.getvalue())
        return path
    affine = np.diag([scanner.bin_size_mm, 1.0, 1.0, 1.0])
    affine[0, 3] = scanner.bin_centres_mm[0]
    write_bytes_atomic(sidecar_path(path), geometry.encode())
    return save_nifti(path, array.T, affine)


def load_sinogram(path: str | Path) -> tuple[np.ndarray, ScannerGeometry]:
    """Read a sinogram file written by ``save_sinogram`` (or any STIR Interfile ``.hs``).

    Returns:
        (float32 array of shape (..., n_sinograms, n_views, n_bins), its ``ScannerGeometry``).

    Raises:
        InputError: naming the file for a missing, truncated or unreadable file, a missing geometry, or data
            whose shape does not match the geometry.
    """
    kind = sinogram_format(path)
    if kind == "interfile":
        return read_interfile_sinogram(path)
    path = check_file("sinogram", path)
    if kind == "numpy":
        array, geometry = _load_npz(path)
    else:
        sidecar = check_file(f"geometry sidecar of {str(path)!r}", sidecar_path(path))
        try:
            text = sidecar.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise InputError(f"geometry sidecar {str(sidecar)!r} is not readable JSON text: {error}") from error
        geometry = _parse_json(text, str(sidecar))
        array = load_nifti(path, "sinogram")[0].T
    if array.dtype.kind not in "iuf":
        raise InputError(f"sinogram in {str(path)!r} holds {array.dtype} values; expected real numbers (counts)")
    scanner = geometry_from_dict(geometry, str(path))
    if array.ndim < 3 or scanner.n_rings > array.shape[-3]:  # before the geometry's per-ring tables are built
        raise InputError(f"sinogram in {str(path)!r} has shape {array.shape}; expected (..., n_sinograms, n_views, "
                         f"n_bins) with at least one sinogram per ring ({scanner.n_rings} rings)")
    check_shape(f"sinogram in {str(path)!r}", array, scanner.data_shape, "the stored geometry's data_shape")
    return np.ascontiguousarray(array, dtype=np.float32), scanner


def _load_npz(path: Path) -> tuple[np.ndarray, dict]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in ("sinogram", "geometry"):
                if key not in archive:
                    raise InputError(f"sinogram file {str(path)!r} lacks the array {key!r}")
            return archive["sinogram"], _parse_json(str(archive["geometry"]), str(path))
    except InputError:
        raise
    except Exception as error:  # zipfile/numpy raise many types for broken files
        raise InputError(f"sinogram: cannot read NumPy file {str(path)!r}: {error}") from error


def _parse_json(text: str, source: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{source}: scanner geometry is not valid JSON: {error}") from error
