"""One entry point for image volumes from NIfTI files or DICOM series folders, optionally on a target grid.

Commands take an image (an MR for the Bowsher prior, a reference, a result to export) from either source
through :func:`load_volume`; :func:`resample_to_grid` puts it on the reconstruction grid (same patient
coordinates, e.g. a PET/MR pair sharing a DICOM frame of reference).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from scipy.ndimage import affine_transform

from diffrecon.checks import InputError, check_finite, check_shape, naming_file
from diffrecon.io.dicom_read import choose_by_conversion, list_series, load_dicom_series, select_series
from diffrecon.io.nifti import load_nifti


def load_volume(path: str | Path, name: str = "image", *, series_uid: str | None = None,
                modality: str | None = None, suv: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file or a DICOM series folder as (float32 (x, y, z) array, 4x4 RAS affine).

    Args:
        path: a .nii/.nii.gz file or a folder holding DICOM files.
        name: parameter name for error messages.
        series_uid, modality: which series to load from a folder holding several (DICOM only); where they leave
            several, the error advises converting the wanted one (the commands that read images through here
            take no series option).
        suv: convert a PET series to body-weight SUV (DICOM only).
    """
    path = Path(path)
    if path.is_dir():
        volume = load_dicom_series(path, series_uid=series_uid, modality=modality, suv=suv, name=name,
                                   choose=choose_by_conversion(path))
        return volume.array, volume.affine
    if suv or series_uid or modality:
        raise InputError(f"{name}: series_uid, modality and suv apply to DICOM folders; {str(path)!r} is a file")
    array, affine = load_nifti(path, name)
    if array.ndim != 3:
        raise InputError(f"{name} {str(path)!r} has shape {array.shape}; expected a 3D (x, y, z) volume")
    if not np.isfinite(affine).all():
        raise InputError(f"{name} {str(path)!r} has a NaN/Inf affine; expected a finite voxel-to-world matrix")
    return array, affine


def frame_of_reference(path: str | Path, name: str = "image") -> str | None:
    """The DICOM frame-of-reference UID of the series :func:`load_volume` reads from the folder ``path`` (headers
    only); None for a NIfTI file, which carries none, or a series without one."""
    path = Path(path)
    if not path.is_dir():
        return None
    with naming_file(path):
        return select_series(list_series(path, name), name=name, choose=choose_by_conversion(path)).frame_of_reference


def check_one_frame(paths: Mapping[str, str | Path | None]) -> None:
    """Refuse images (parameter name -> file or DICOM folder) whose DICOM series lie on different frames of
    reference: their patient coordinates are not comparable, so resampling one onto the other's grid by the
    affines would misplace it. NIfTI files carry no frame UID; their placement is checked by coverage
    (:func:`load_on_grid`)."""
    frames = {name: frame_of_reference(path, name) for name, path in paths.items() if path}
    known = [(name, uid) for name, uid in frames.items() if uid]
    for name, uid in known[1:]:
        if uid != known[0][1]:
            raise InputError(f"{known[0][0]} and {name} are DICOM series on different frames of reference "
                             f"({known[0][1]} and {uid}); expected images of one session in one patient coordinate "
                             "system (register one to the other first, e.g. the MR to the PET)")


def resample_to_grid(array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray,
                     target_shape: tuple[int, int, int], order: int = 1, fill: float = 0.0,
                     name: str = "array") -> np.ndarray:
    """Resample ``array`` (with ``affine``) onto the grid ``target_affine``/``target_shape`` (same world space).

    Linear interpolation by default (``order`` 0..5 as in scipy.ndimage); points outside get ``fill``;
    ``name`` names the image in error messages.
    """
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3:
        raise InputError(f"{name} has shape {array.shape}; expected (x, y, z)")
    check_shape(f"affine of {name}", np.asarray(affine), (4, 4))
    check_shape("target_affine", np.asarray(target_affine), (4, 4))
    if len(target_shape) != 3 or min(target_shape) < 1:
        raise InputError(f"target_shape is {tuple(target_shape)}; expected three positive sizes")
    try:
        voxel_map = np.linalg.solve(np.asarray(affine, dtype=np.float64), np.asarray(target_affine, dtype=np.float64))
    except np.linalg.LinAlgError as error:
        raise InputError(f"{name}: its affine is singular; expected an invertible 4x4 voxel-to-world matrix") from error
    return affine_transform(array, voxel_map[:3, :3], voxel_map[:3, 3], output_shape=tuple(int(n) for n in target_shape),
                            order=order, mode="constant", cval=fill).astype(np.float32)


def load_on_grid(path: str | Path, name: str, target_affine: np.ndarray, target_shape: tuple[int, int, int],
                 min_coverage: float = 0.5) -> tuple[np.ndarray, str | None]:
    """Read a NIfTI file or DICOM series folder (:func:`load_volume`) onto a target grid: as it is when it is on
    that grid, else resampled by its affine (linear; zero outside the image). Returns the image and, when it was
    resampled, a note saying from what (for the user: an image off the grid is resampled, not refused).

    Raises:
        InputError: NaN/Inf voxels (refused here, as the case is loaded, not after the reconstruction), or the
            image covers less than ``min_coverage`` of the grid, i.e. it is not in the grid's patient coordinates
            (another frame of reference, or the wrong file).
    """
    array, affine = load_volume(path, name)
    with naming_file(path):  # the checks name the parameter; say which file it was
        check_finite(name, array)
        if array.shape == tuple(target_shape) and np.allclose(affine, target_affine, atol=1e-3):
            return array, None
        coverage = float(resample_to_grid(np.ones_like(array), affine, target_affine, target_shape, order=0,
                                          name=name).mean())
        spacing = tuple(round(float(v), 3) for v in np.abs(affine[:3, :3]).sum(0))
        if coverage < min_coverage:
            raise InputError(f"{name} (shape {array.shape}, voxels {spacing} mm) covers {100 * coverage:.0f}% of the "
                             f"reconstruction grid (shape {tuple(target_shape)}); expected an image in the same "
                             f"patient coordinates covering at least {100 * min_coverage:.0f}% of it")
        note = (f"resampled from shape {array.shape}, voxels {spacing} mm, onto the reconstruction grid (shape "
                f"{tuple(target_shape)}) by its affine; it covers {100 * coverage:.0f}% of the grid")
        return resample_to_grid(array, affine, target_affine, target_shape, name=name), note
