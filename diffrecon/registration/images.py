"""Images for registration: voxels with their RAS affine and frame of reference, read from NIfTI files or DICOM
series folders, and their conversion to and from ANTs images (which live in ITK's LPS world coordinates)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffrecon.checks import InputError, check_finite, check_shape
from diffrecon.io.dicom_read import choose_by_conversion, load_dicom_series
from diffrecon.io.nifti import load_nifti

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])
# NIfTI files carry no frame-of-reference UID: their fields of view must overlap by this fraction of the smaller
# one to count as one frame (a PET and an MR of one session share the scanner's patient coordinates).
MIN_FIELD_OF_VIEW_OVERLAP = 0.5


@dataclass(frozen=True)
class Image:
    """A 3D image: float32 voxels (x, y, z), 4x4 voxel-to-RAS-mm affine, DICOM frame-of-reference UID (None for
    NIfTI) and where it came from (for messages)."""

    array: np.ndarray
    affine: np.ndarray
    frame_of_reference: str | None = None
    source: str = "image"

    def __post_init__(self) -> None:
        if np.asarray(self.array).ndim != 3:
            raise InputError(f"{self.source} has shape {np.shape(self.array)}; expected a 3D (x, y, z) image")
        check_shape(f"affine of {self.source}", np.asarray(self.affine), (4, 4))
        check_finite(self.source, np.asarray(self.array))

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(np.asarray(self.affine)[:3, :3], axis=0)

    def corners_mm(self) -> np.ndarray:
        """World (RAS mm) bounds of the field of view: (2, 3) lower and upper corners of the voxel-edge box."""
        shape = np.asarray(self.array.shape)
        box = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape], indexing="ij")).reshape(3, -1)
        world = np.asarray(self.affine)[:3, :3] @ box + np.asarray(self.affine)[:3, 3:]
        return np.stack([world.min(1), world.max(1)])


def read_image(path: str | Path, name: str) -> Image:
    """A NIfTI file or a DICOM series folder as an :class:`Image` (``name`` for messages).

    Raises:
        InputError: missing or unreadable file, not 3D, non-finite values.
    """
    path = Path(path)
    source = f"{name} ({path})"
    if path.is_dir():
        volume = load_dicom_series(path, name=name, choose=choose_by_conversion(path))
        uid = volume.datasets[0].get("FrameOfReferenceUID")
        return Image(volume.array.astype(np.float32), volume.affine, str(uid) if uid else None, source)
    if not path.is_file():
        raise InputError(f"{name}: {str(path)!r} is neither a NIfTI file nor a DICOM series folder")
    try:
        array, affine = load_nifti(path, name)
    except InputError:
        raise
    except Exception as error:  # nibabel raises several types for truncated or foreign files
        raise InputError(f"{name}: {str(path)!r} could not be read as NIfTI: {error}") from error
    return Image(np.squeeze(array).astype(np.float32), affine, None, source)


def field_of_view_overlap(a: Image, b: Image) -> float:
    """Volume of the intersection of the two fields of view over the smaller one (0 to 1)."""
    box_a, box_b = a.corners_mm(), b.corners_mm()
    sides = np.clip(np.minimum(box_a[1], box_b[1]) - np.maximum(box_a[0], box_b[0]), 0, None)
    smaller = min(np.prod(box_a[1] - box_a[0]), np.prod(box_b[1] - box_b[0]))
    return float(np.prod(sides) / smaller)


def check_same_frame(mr: Image, pet: Image, subject: str) -> None:
    """Refuse an MR and a PET that are not on one frame of reference: different DICOM frame-of-reference UIDs,
    or (NIfTI) fields of view that overlap by less than :data:`MIN_FIELD_OF_VIEW_OVERLAP`."""
    if mr.frame_of_reference and pet.frame_of_reference and mr.frame_of_reference != pet.frame_of_reference:
        raise InputError(f"{subject}: the MR and the PET are on different frames of reference "
                         f"({mr.frame_of_reference} and {pet.frame_of_reference}); expected one PET/MR session "
                         "(register them first, then give both on the MR's frame)")
    overlap = field_of_view_overlap(mr, pet)
    if overlap < MIN_FIELD_OF_VIEW_OVERLAP:
        raise InputError(f"{subject}: the MR and the PET fields of view overlap by {overlap:.0%} in world "
                         f"coordinates; expected one frame of reference (at least {MIN_FIELD_OF_VIEW_OVERLAP:.0%} "
                         "overlap): check their affines, or register them first")


def to_ants(image: Image | np.ndarray, affine: np.ndarray | None = None):
    """An ANTs image of an :class:`Image` (or of an array with its RAS ``affine``)."""
    import ants

    if not isinstance(image, Image):
        image = Image(np.asarray(image, dtype=np.float32), affine)
    affine = np.asarray(image.affine, dtype=np.float64)
    spacing = image.spacing
    direction = LPS_FROM_RAS @ affine[:3, :3] / spacing
    return ants.from_numpy(np.ascontiguousarray(image.array, dtype=np.float32), origin=list(LPS_FROM_RAS @ affine[:3, 3]),
                           spacing=list(spacing), direction=direction)


def from_ants(image) -> tuple[np.ndarray, np.ndarray]:
    """(float32 array, RAS affine) of an ANTs image."""
    affine = np.eye(4)
    affine[:3, :3] = LPS_FROM_RAS @ np.asarray(image.direction) * np.asarray(image.spacing)
    affine[:3, 3] = LPS_FROM_RAS @ np.asarray(image.origin)
    return image.numpy().astype(np.float32), affine
