"""MR-to-MR registration with ANTs, cached on disk, its quality figures, and warping other images with it.

:func:`register` maps a moving image onto a fixed one (a rigid/affine stage, then SyN by default; any
``type_of_transform`` of ``ants.registration``) and keeps the transform files and a JSON record in a folder:
called again with the same images and settings it returns the record without registering again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffrecon.checks import InputError, check_choice
from diffrecon.io.records import read_record, write_record
from diffrecon.registration.images import Image, from_ants, to_ants

# type_of_transform values of ants.registration offered here (rigid and affine alone, or followed by SyN)
TRANSFORMS = ("Rigid", "Affine", "SyN", "SyNRA", "SyNOnly", "ElasticSyN", "antsRegistrationSyNQuick[s]",
              "antsRegistrationSyN[s]")
# ANTsPy's SyN default (40, 20, 0) skips the full-resolution level; on 3-4 mm PET-grid brains that costs about half
# a voxel of accuracy (tests/registration: mean error 1.01 -> 0.56 voxels on a known warp), so SyN runs get this
# unless reg_iterations is given.
SYN_ITERATIONS = (60, 40, 20)
SYN_TRANSFORMS = ("SyN", "SyNRA", "SyNOnly", "ElasticSyN")
INTERPOLATIONS = ("linear", "nearestNeighbor", "genericLabel", "bSpline")
RECORD = "registration.json"


@dataclass(frozen=True)
class Registration:
    """A finished registration: forward transform files (moving -> fixed, in ANTs' order), its settings, the
    similarity of the images before (world coordinates, no transform) and after, and its seconds."""

    transforms: list[str]
    settings: dict[str, Any]
    before: dict[str, float]
    after: dict[str, float]
    seconds: float
    key: str

    @property
    def improved(self) -> bool:
        """Both similarity figures rose."""
        return all(self.after[name] > self.before[name] for name in self.before)


def similarity(fixed: Image, moving_on_fixed: np.ndarray) -> dict[str, float]:
    """Correlation and Mattes mutual information (nats; higher is more similar) of the fixed image and a moving
    image already on its grid, over the voxels where either has signal (above 5% of its maximum); both 0 when
    the moving image has no signal there (fields of view that do not overlap)."""
    import ants

    a, b = np.asarray(fixed.array, dtype=np.float64), np.asarray(moving_on_fixed, dtype=np.float64)
    if b.max() <= b.min() or a.max() <= a.min():
        return {"correlation": 0.0, "mutual_information": 0.0}
    mask = (a > 0.05 * a.max()) | (b > 0.05 * b.max())
    correlation = float(np.corrcoef(a[mask], b[mask])[0, 1])
    information = -float(ants.image_similarity(to_ants(fixed), to_ants(moving_on_fixed, fixed.affine),
                                               "MattesMutualInformation"))
    return {"correlation": correlation if np.isfinite(correlation) else 0.0, "mutual_information": information}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks (1 when both are empty)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def resample(image: Image, reference: Image, interpolation: str = "linear") -> np.ndarray:
    """``image`` on the grid of ``reference`` in world coordinates (no transform); 0 outside its field of view."""
    return warp(image, None, reference, interpolation)


def warp(image: Image, registration: Registration | None, reference: Image, interpolation: str = "linear") -> np.ndarray:
    """``image`` (on the moving image's frame of reference) mapped by ``registration`` onto the grid of
    ``reference`` (on the fixed image's frame; any grid there, e.g. the target's PET grid); 0 outside."""
    import ants

    check_choice("interpolation", interpolation, INTERPOLATIONS)
    if registration is None:  # world coordinates are shared
        warped = ants.resample_image_to_target(to_ants(image), to_ants(reference), interp_type=interpolation)
    else:
        warped = ants.apply_transforms(to_ants(reference), to_ants(image), registration.transforms,
                                       interpolator=interpolation)
    return from_ants(warped)[0]


def register(fixed: Image, moving: Image, folder: str | Path, transform: str = "SyNRA", seed: int = 0,
             **parameters: Any) -> Registration:
    """Register ``moving`` to ``fixed`` (both MR) and keep the transforms and the record in ``folder``.

    Args:
        fixed, moving: the images (any grids, on their own frames of reference).
        folder: where the transform files and ``registration.json`` go; a finished registration of the same
            images with the same settings found there is returned as it is.
        transform: ``type_of_transform`` of ``ants.registration`` (:data:`TRANSFORMS`); default SyNRA: rigid,
            affine, then symmetric normalisation.
        seed: ANTs' random sampling seed (reproducible metrics sampling).
        parameters: further ``ants.registration`` keywords (e.g. ``syn_metric="CC"``; SyN transforms get
            ``reg_iterations`` :data:`SYN_ITERATIONS` unless given), recorded with the settings.

    Raises:
        InputError: an unknown transform or an image without signal.
    """
    import ants

    check_choice("transform", transform, TRANSFORMS)
    for image in (fixed, moving):
        if not np.any(image.array > 0):
            raise InputError(f"{image.source} has no positive voxel; expected an MR image to register")
    if transform in SYN_TRANSFORMS:
        parameters.setdefault("reg_iterations", SYN_ITERATIONS)
    settings = {"transform": transform, "seed": int(seed), **{k: _jsonable(v) for k, v in parameters.items()}}
    key = _key(fixed, moving, settings)
    folder = Path(folder)
    cached = load_registration(folder)
    if cached is not None and cached.key == key:
        return cached
    start = time.perf_counter()
    before = similarity(fixed, resample(moving, fixed))
    result = ants.registration(to_ants(fixed), to_ants(moving), type_of_transform=transform, random_seed=int(seed),
                               **parameters)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    transforms = []
    for index, path in enumerate(result["fwdtransforms"]):
        target = folder / f"forward_{index}{''.join(Path(path).suffixes)}"
        shutil.copyfile(path, target)
        transforms.append(target.name)
    record = Registration([str(folder / name) for name in transforms], settings, before, {}, 0.0, key)
    after = similarity(fixed, warp(moving, record, fixed))
    registration = Registration(record.transforms, settings, before, after, time.perf_counter() - start, key)
    write_record(folder / RECORD, {**asdict(registration), "transforms": transforms})  # last: marks completion
    return registration


def load_registration(folder: str | Path) -> Registration | None:
    """The finished registration recorded in ``folder``, or None (none, incomplete or its files missing)."""
    folder = Path(folder)
    payload = read_record(folder / RECORD)
    if not isinstance(payload, dict) or "transforms" not in payload:
        return None
    paths = [str(folder / name) for name in payload["transforms"]]
    if not all(Path(path).is_file() for path in paths):
        return None
    return Registration(**{**payload, "transforms": paths})


def _key(fixed: Image, moving: Image, settings: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for image in (fixed, moving):
        digest.update(np.ascontiguousarray(image.array, dtype=np.float32).tobytes())
        digest.update(np.asarray(image.affine, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

