"""NIfTI volumes in and out (nibabel), with the RAS affine kept beside the array."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from diffrecon.checks import InputError, check_file


def save_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array`` (x, y, z[, ...]) with its 4x4 RAS ``affine`` as NIfTI (float32 unless integer)."""
    path = Path(path)
    array = np.asarray(array)
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputError(f"affine has shape {affine.shape}; expected (4, 4)")
    if not np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_:
        array = array.astype(np.float32)
    elif array.dtype == np.bool_:
        array = array.astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    tmp = path.with_name(path.name + ".partial" + "".join(path.suffixes))
    nib.save(image, tmp)
    tmp.replace(path)  # never leave a half-written file under the final name
    return path


def load_nifti(path: str | Path, name: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file as (float32 array, 4x4 affine); clear error if missing, truncated or unreadable."""
    path = check_file(name, path)
    try:
        image = nib.load(path)
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as error:  # nibabel raises many types for broken files
        raise InputError(f"{name}: cannot read NIfTI file {str(path)!r}: {error}") from error
    return data, np.asarray(image.affine, dtype=np.float64)
