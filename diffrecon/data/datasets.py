"""Datasets for training the priors: the built-in phantom population (training split only) or a folder of the
user's NIfTI volumes, as MONAI data lists of channel-first (1, x, y, z) arrays; fixed validation slices."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from diffrecon.checks import InputError, check_choice
from diffrecon.data.phantoms import make_subject
from diffrecon.data.splits import subject_seeds
from diffrecon.physics.geometry import ImageGrid
from diffrecon.transforms.slicing import foreground_slices, take_slice

# contrast -> (image of the phantom subject, phantom population); "fdg_wide" is FDG of the wide population
# (``diffrecon.data.phantoms.POPULATIONS``), on which the PET priors learn more than the standard phantoms show.
# "t1_wide" is the T1 of the wide population's subjects: the anatomy of "fdg_wide" (the population's warps differ), so
# the pairs of an MR-guided PET prior are (fdg_wide, t1_wide).
CONTRASTS = {"fdg": ("fdg", "standard"), "fdg_wide": ("fdg", "wide"), "amyloid": ("amyloid", "standard"),
             "t1": ("t1", "standard"), "t1_wide": ("t1", "wide")}
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def phantom_items(n: int, contrast: str = "fdg", grid_shape: Sequence[int] | None = None,
                  voxel_size_mm: Sequence[float] | None = None, split: str = "train", start: int = 0,
                  cache_dir: str | Path | None = None) -> list[dict[str, np.ndarray]]:
    """``n`` phantom subjects of ``split`` as ``{"image": (1, x, y, z) float32}`` items.

    Args:
        n: number of subjects (seeds ``subject_seeds(split, n, start)``).
        contrast: "fdg", "fdg_wide" (FDG of the wide population), "amyloid", "t1" or "t1_wide" (T1 of the wide
            population).
        grid_shape: (nx, ny, nz); with ``voxel_size_mm`` defines the grid (default: the demo grid, 3 mm).
        voxel_size_mm: voxel size of the grid.
        split: seed split; priors shipped with the package use "train" only.
        start: first seed offset within the split.
        cache_dir: if given, volumes are kept there as .npy and reused.
    """
    check_choice("contrast", contrast, CONTRASTS)
    if int(n) < 1:
        raise InputError(f"n must be >= 1, got {n}")
    grid = None
    if grid_shape is not None:
        grid = ImageGrid(tuple(int(v) for v in grid_shape), tuple(float(v) for v in voxel_size_mm or (3, 3, 3)))
    items = []
    for seed in subject_seeds(split, int(n), int(start)):
        cached = None
        if cache_dir is not None:
            tag = "default" if grid is None else "x".join(map(str, grid.shape)) + "_" + "x".join(
                f"{v:g}" for v in grid.voxel_size_mm)
            cached = Path(cache_dir) / f"{contrast}_{tag}_{seed}.npy"
        if cached is not None and cached.is_file():
            volume = np.load(cached)
        else:
            image, population = CONTRASTS[contrast]
            volume = getattr(make_subject(seed, grid, split=split, population=population), image).astype(np.float32)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                partial = cached.with_name(cached.stem + ".partial.npy")
                np.save(partial, volume)
                os.replace(partial, cached)
        items.append({"image": volume[None]})
    return items


def phantom_pet_items(n: int, preset: str = "demo", population: str = "wide", split: str = "train",
                      start: int = 0) -> list[dict[str, np.ndarray]]:
    """``n`` phantom subjects of ``split`` on ``preset``'s grid as ``{"image": FDG activity, "mu_map": μ-map}``
    channel-first (1, x, y, z) items, for scanning on the fly (:class:`~diffrecon.transforms.SimulatePETd`) into
    training pairs of a supervised method (PET-DEFT); ``population`` as :func:`~diffrecon.data.phantoms.make_subject`
    (default the wide one, as the shipped PET prior's)."""
    from diffrecon.physics.geometry import get_preset

    if int(n) < 1:
        raise InputError(f"n must be >= 1, got {n}")
    grid = get_preset(preset).grid
    items = []
    for seed in subject_seeds(split, int(n), int(start)):
        subject = make_subject(seed, grid, split=split, population=population)
        items.append({"image": subject.fdg[None].astype(np.float32), "mu_map": subject.mu_map[None].astype(np.float32),
                      "index": len(items)})
    return items


def nifti_items(folder: str | Path) -> list[dict[str, np.ndarray]]:
    """Every NIfTI volume in ``folder`` as ``{"image": (1, x, y, z) float32}`` items.

    Raises:
        InputError: the folder does not exist or holds no NIfTI file, a file cannot be read, a volume is not
            3D or not finite, or the volumes do not all have the same shape.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"data folder {str(folder)!r} does not exist")
    paths = sorted(p for p in folder.iterdir() if p.name.endswith(NIFTI_SUFFIXES))
    if not paths:
        raise InputError(f"data folder {str(folder)!r} holds no NIfTI images (*.nii, *.nii.gz)")
    items, shapes = [], {}
    for path in paths:
        try:
            volume = np.asarray(nib.load(path).get_fdata(dtype=np.float32))
        except Exception as error:  # nibabel raises several types for truncated or foreign files
            raise InputError(f"data folder: {path.name} could not be read as NIfTI: {error}") from error
        volume = np.squeeze(volume)
        if volume.ndim != 3:
            raise InputError(f"data folder: {path.name} has shape {volume.shape}; expected a 3D volume")
        if not np.isfinite(volume).all():
            raise InputError(f"data folder: {path.name} contains NaN/Inf values")
        shapes.setdefault(volume.shape, []).append(path.name)
        items.append({"image": volume[None]})
    if len(shapes) > 1:
        listing = "; ".join(f"{shape}: {', '.join(names[:3])}" for shape, names in shapes.items())
        raise InputError(f"data folder {str(folder)!r} holds images of mixed sizes ({listing}); expected one "
                         "size (resample them to a common grid first)")
    return items


def training_items(source: str, n: int = 64, contrast: str = "fdg", **phantom_args) -> list[dict[str, np.ndarray]]:
    """``source`` "phantoms" (the phantom training split) or a path to a folder of NIfTI volumes."""
    if source == "phantoms":
        return phantom_items(n, contrast, **phantom_args)
    return nifti_items(source)


def paired_training_items(source: str, n: int = 64, contrast: str = "fdg_wide", condition_contrast: str = "t1_wide",
                          condition_source: str | None = None, condition_key: str = "mr",
                          **phantom_args) -> list[dict[str, np.ndarray]]:
    """Image and condition pairs for a conditional prior, ``{"image": (1, x, y, z), condition_key: (1, x, y, z)}``:
    ``source`` "phantoms" pairs each phantom subject's ``contrast`` with its ``condition_contrast`` (the same
    anatomy); a folder of NIfTI volumes is paired by file name with the folder ``condition_source``.

    Raises:
        InputError: no ``condition_source`` for a folder, file names that differ between the folders, or pairs of
            different shapes; as :func:`training_items`.
    """
    if source == "phantoms":
        images = phantom_items(n, contrast, **phantom_args)
        conditions = phantom_items(n, condition_contrast, **phantom_args)
        return [{**image, condition_key: condition["image"]} for image, condition in zip(images, conditions)]
    if not condition_source:
        raise InputError(f"condition_source is required with the data folder {str(source)!r}: a folder of the "
                         "condition images (e.g. the co-registered T1s) with the same file names")
    names = [sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(NIFTI_SUFFIXES))
             if Path(folder).is_dir() else [] for folder in (source, condition_source)]
    if names[0] != names[1]:
        raise InputError(f"data folders {str(source)!r} and {str(condition_source)!r} must hold the same file names "
                         f"(pairs); only in one: {sorted(set(names[0]) ^ set(names[1]))[:5]}")
    pairs = []
    for name, image, condition in zip(names[0], nifti_items(source), nifti_items(condition_source)):
        if image["image"].shape != condition["image"].shape:
            raise InputError(f"data folders: {name} has shape {image['image'].shape[1:]} and its condition "
                             f"{condition['image'].shape[1:]}; expected the same grid")
        pairs.append({"image": image["image"], condition_key: condition["image"]})
    return pairs


def validation_slices(items: Sequence[dict[str, np.ndarray]], orientation: str,
                      positions: Sequence[float] = (0.35, 0.5, 0.65),
                      keys: Sequence[str] = ("image",)) -> list[dict[str, object]]:
    """Fixed 2D slices for the validation loss: at ``positions`` (fractions) of each volume's foreground slices
    (of "image"), the same slice of every key of ``keys``; each item carries its ``index`` so the validation noise
    can be seeded per item."""
    out = []
    for item in items:
        keep = foreground_slices(item["image"], orientation)
        for position in positions:
            index = int(keep[min(int(position * len(keep)), len(keep) - 1)])
            out.append({**{key: take_slice(item[key], orientation, index).copy() for key in keys}, "index": len(out)})
    return out
