"""The real images the benchmarks and prior checks use out of the priors' family (evaluation only, never trained
or tuned on), placed on a prior's grid and normalised as its training images, and the test-split phantoms beside
them: the real FDG brain series and the SPM12 PET template (PET), the SPM12 and BRAINS T1 images and the Siemens
twix scan (MRI). They are read from the shared data folder (``$DIFFRECON_SHARED_DATA``, default ``../shared/data``
beside the repository), which is for development and tests: the package ships none of it."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffrecon.bundle import bundle_path
from diffrecon.data.datasets import phantom_items
from diffrecon.data.phantoms import default_grid
from diffrecon.io.cases import load_mri_case
from diffrecon.io.volumes import load_volume, resample_to_grid
from diffrecon.physics.geometry import ImageGrid
from diffrecon.transforms import EmissionNormalize

DATA = Path(os.environ.get("DIFFRECON_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
FDG_SERIES = DATA / "mirp_sts001" / "FDG_PET_raw"
SPM_PET = DATA / "spm12_templates_mr_pet" / "PET.nii"
SPM_T1 = DATA / "spm12_templates_mr_pet" / "single_subj_T1.nii"
BRAINS_T1 = {"BRAINS T1 test (real, 4 mm)": DATA / "sirf_registration_t1t2" / "test.nii.gz",
             "BRAINS T1 test2 (real, 4 mm)": DATA / "sirf_registration_t1t2" / "test2.nii.gz"}
TWIX = DATA / "twix_gre_siemens" / "gre_kspace_cha_lin_col.npy"
TWIX_PIXEL_MM = 1.25  # 200 mm field of view over 160 samples once the readout oversampling is removed
MR_GRID = ImageGrid((128, 128, 112), (1.5, 1.5, 1.5))  # the MR prior's training grid (bundles/mr_t1_prior)
FDG_BRAIN_FROM_MM = -26.5  # world z of the lowest brain slice of the FDG series (its slice 262 of 267)
FDG_TOP_SLICE = 14  # demo-grid slice where the FDG series' last brain slice lands
FOREGROUND = 0.1  # scored voxels: above this fraction of the volume maximum (as foreground_slices)


@dataclass
class Source:
    """One evaluation volume on the prior's grid, normalised as in training, and the voxels scored."""

    name: str
    family: str  # "in" (test-split phantoms) or "out"
    volume: np.ndarray  # (x, y, z)
    scored: np.ndarray  # (x, y, z) bool
    affine: np.ndarray | None = None  # where the grid was placed in the source's world coordinates (real images)
    t1: Path | None = None  # the subject's T1 in the same world coordinates, where one exists


def grid_affine(centre_mm: np.ndarray, grid: ImageGrid | None = None) -> np.ndarray:
    """The affine (axes, voxel size) of ``grid`` (default the demo grid) moved so that its centre lies at
    ``centre_mm``."""
    grid = grid or default_grid()
    affine = grid.affine.copy()
    affine[:3, 3] = centre_mm - affine[:3, :3] @ ((np.asarray(grid.shape) - 1) / 2)
    return affine


def normalised(volume: np.ndarray) -> np.ndarray:
    return np.asarray(EmissionNormalize()(volume), dtype=np.float32)


def fdg_source() -> Source:
    """The brain slices of the real FDG series, with the head around them, on the prior's grid."""
    array, affine = load_volume(FDG_SERIES, "FDG series")
    z_mm = affine[2, 2] * np.arange(array.shape[2]) + affine[2, 3]
    brain = np.flatnonzero(z_mm >= FDG_BRAIN_FROM_MM)
    slab = array[:, :, brain]
    head = np.argwhere(slab > FOREGROUND * slab.max())
    centre = (affine[:3, :3] @ np.r_[head[:, :2].mean(0), brain[-1]] + affine[:3, 3])
    grid = default_grid()
    centre[2] += grid.voxel_size_mm[2] * ((grid.shape[2] - 1) / 2 - FDG_TOP_SLICE)
    target = grid_affine(centre)
    volume = normalised(resample_to_grid(array, affine, target, grid.shape, name="FDG series"))
    slab_z = target[2, 2] * np.arange(grid.shape[2]) + target[2, 3] >= FDG_BRAIN_FROM_MM
    scored = (volume > FOREGROUND * volume.max()) & slab_z[None, None, :]
    return Source("FDG STS-001 (real, brain base)", "out", volume, scored, target)


def centred_source(path: Path, name: str, grid: ImageGrid, normalise, t1: Path | None = None) -> Source:
    """A real volume on ``grid``, its foreground's bounding box centred, normalised by ``normalise``."""
    array, affine = load_volume(path, name)
    box = np.argwhere(array > FOREGROUND * array.max())
    centre = affine[:3, :3] @ ((box.min(0) + box.max(0)) / 2) + affine[:3, 3]
    target = grid_affine(centre, grid)
    volume = normalise(resample_to_grid(array, affine, target, grid.shape, name=name))
    return Source(name, "out", volume, volume > FOREGROUND * volume.max(), target, t1)


def t1_on_grid(source: Source) -> np.ndarray | None:
    """The source's T1 resampled onto the grid the source was placed on (None where it has none)."""
    if source.t1 is None or source.affine is None:
        return None
    array, affine = load_volume(source.t1, f"T1 of {source.name}")
    return resample_to_grid(array, affine, source.affine, source.volume.shape, name=f"T1 of {source.name}")


def per_slice_max(volume: np.ndarray) -> np.ndarray:
    """Every axial slice scaled to [0, 1] by its maximum (empty slices stay 0), as the MR training slices."""
    peaks = volume.max(axis=(0, 1), keepdims=True)
    return np.where(peaks > 0, volume / np.where(peaks > 0, peaks, 1), 0).astype(np.float32)


def twix_source() -> Source:
    """The real GRE scan's fully sampled RSS image at the MR prior's 1.5 mm, one axial slice of 128 x 128."""
    from scipy.ndimage import zoom

    image = load_mri_case(TWIX, layout="cyx", readout_oversampling=2, acceleration=1.0).reference.numpy()
    resampled = zoom(image, TWIX_PIXEL_MM / MR_GRID.voxel_size_mm[0], order=1)
    size = MR_GRID.shape[0]
    start = [(n - size) // 2 for n in resampled.shape]
    volume = per_slice_max(resampled[start[0]:start[0] + size, start[1]:start[1] + size, None])
    return Source("Siemens GRE twix (real, ACR-like phantom)", "out", volume, volume > FOREGROUND)


def phantom_sources(n: int, bundle: str) -> list[Source]:
    """The first ``n`` test-split phantoms (never used in training), normalised as the bundle's training images."""
    if bundle == "mr_t1_prior":
        items = phantom_items(n, "t1", MR_GRID.shape, MR_GRID.voxel_size_mm, split="test",
                              cache_dir=bundle_path(bundle) / "runs" / "phantom_cache")
        volumes = [per_slice_max(item["image"][0]) for item in items]
    else:
        items = phantom_items(n, "fdg", split="test", cache_dir=bundle_path(bundle) / "runs" / "phantom_cache")
        volumes = [normalised(item["image"][0]) for item in items]
    return [Source(f"test phantom {i}", "in", v, v > FOREGROUND * v.max()) for i, v in enumerate(volumes)]


def out_of_family_sources(bundle: str) -> list[Source]:
    """The real images of the bundle's modality (module docstring)."""
    if bundle == "mr_t1_prior":
        volumes = [(SPM_T1, "SPM12 single-subject T1 (real, 2 mm)"), *((p, n) for n, p in BRAINS_T1.items())]
        return [centred_source(p, n, MR_GRID, per_slice_max) for p, n in volumes] + [twix_source()]
    return [fdg_source(), spm_pet_source()]


def spm_pet_source() -> Source:
    """The SPM12 PET template on the prior's grid, centred, with the SPM12 single-subject T1 (the same MNI
    coordinates) as its T1."""
    return centred_source(SPM_PET, "SPM12 PET template (H2-15O)", default_grid(), normalised, t1=SPM_T1)
