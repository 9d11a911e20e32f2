"""Personalised pseudo-PET training sets (Webber et al., TRPMS 2025): other subjects' PET in the target subject's
anatomy, through the registration of their MR to the target's MR.

Each other subject's MR is registered to the target MR (:func:`diffrecon.registration.register.register`),
the same transforms carry that subject's PET onto the target's PET grid (the target's MR and PET share one
frame of reference), and each registration is checked: MR similarity before and after, Dice of tissue labels
where both subjects have them, an overlay PNG. A registration that fails or does not raise similarity is
reported and left out. Optionally the set is enriched by Dirichlet-weighted sums of random subsets (each image
first divided by its emission mean). Registrations are cached per subject; the finished set is marked by
``set.json``, written last, so a rerun returns it and an interrupted run resumes where it stopped.

Layout of the input folder: one sub-folder per subject holding ``mr`` and ``pet`` (each a ``.nii``/``.nii.gz``
file or a DICOM series folder) and optionally ``labels`` (integer tissue labels on the MR's frame).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from diffrecon.checks import InputError, check_choice, check_integer
from diffrecon.io.nifti import load_nifti, save_nifti
from diffrecon.io.records import read_record, write_record
from diffrecon.registration.images import Image, check_same_frame, read_image
from diffrecon.registration.qc import save_overlay
from diffrecon.registration.register import TRANSFORMS, dice, register, resample, warp
from diffrecon.transforms.intensity import emission_mean

ROLES = ("mr", "pet", "labels")  # labels optional
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SET_RECORD = "set.json"


@dataclass(frozen=True)
class SubjectFiles:
    """One other subject: its name (the folder's) and its MR, PET and (optional) label images."""

    name: str
    mr: Path
    pet: Path
    labels: Path | None = None

    def read(self) -> tuple[Image, Image, Image | None]:
        """(MR, PET, labels or None), the MR and PET checked to share a frame of reference."""
        mr, pet = read_image(self.mr, f"subject {self.name} MR"), read_image(self.pet, f"subject {self.name} PET")
        check_same_frame(mr, pet, f"subject {self.name}")
        labels = read_image(self.labels, f"subject {self.name} labels") if self.labels else None
        return mr, pet, labels


def find_subjects(folder: str | Path) -> list[SubjectFiles]:
    """The subjects of ``folder`` (one sub-folder each, see the module docstring), sorted by name.

    Raises:
        InputError: no such folder, no subject, or a subject without its MR or PET (named).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"subjects folder {str(folder)!r} does not exist")
    subjects = []
    for entry in sorted(p for p in folder.iterdir() if p.is_dir()):
        found = {role: _find_role(entry, role) for role in ROLES}
        missing = [role for role in ("mr", "pet") if found[role] is None]
        if missing:
            raise InputError(f"subject {entry.name} in {str(folder)!r} has no {' and no '.join(missing)} image "
                             f"(expected {', '.join(r + '.nii.gz' for r in ('mr', 'pet'))} or DICOM folders "
                             "mr/ and pet/); every subject needs a paired MR and PET")
        subjects.append(SubjectFiles(entry.name, found["mr"], found["pet"], found["labels"]))
    if not subjects:
        raise InputError(f"subjects folder {str(folder)!r} holds no subject folders (each with an MR and a PET)")
    return subjects


def _find_role(folder: Path, role: str) -> Path | None:
    candidates = [folder / (role + suffix) for suffix in NIFTI_SUFFIXES] + [folder / role]
    return next((path for path in candidates if path.exists()), None)


@dataclass(frozen=True)
class Target:
    """The target subject: its MR, the grid its PET is reconstructed on (an image on the MR's frame; only its
    shape and affine are used) and optionally its tissue labels (for the Dice figures)."""

    mr: Image
    pet_grid: Image
    labels: Image | None = None


def build_pseudo_pet_set(target: Target, subjects: list[SubjectFiles], out: str | Path, *, size: int | None = None,
                         transform: str = "SyNRA", mixtures: int = 0, mixture_sizes: tuple[int, int] = (2, 4),
                         workers: int = 1, seed: int = 0, progress: bool = True, **parameters: Any) -> dict[str, Any]:
    """Build the pseudo-PET set of ``target`` from ``subjects`` in ``out``; returns the set's record.

    Args:
        target: the target's MR, PET grid and labels.
        subjects: the other subjects (:func:`find_subjects`).
        out: folder; ``images/`` holds the training images (NIfTI on the PET grid), ``registrations/<subject>/``
            the transforms and warped PET, ``qc/<subject>.png`` the overlays, ``qc.json`` the figures.
        size: use the first ``size`` subjects (default all); refused when fewer are given.
        transform, parameters: registration settings (:func:`~diffrecon.registration.register.register`).
        mixtures: number of Dirichlet-weighted sums added to the set.
        mixture_sizes: (smallest, largest) number of images in one sum.
        workers: subjects registered in parallel processes.
        seed: seed of the registrations' sampling and of the mixtures.
        progress: show a progress bar.

    Raises:
        InputError: too few subjects, unreadable or unpaired images, images on different frames of reference,
            bad settings, all before any registration; no registration passing quality control.
    """
    size = len(subjects) if size is None else check_integer("size", size)
    if len(subjects) < size:
        raise InputError(f"size is {size} but only {len(subjects)} subject(s) were given; expected at least "
                         f"{size} subjects with a paired MR and PET")
    subjects = subjects[:size]
    mixtures = check_integer("mixtures", mixtures, minimum=0)
    low, high = (int(v) for v in mixture_sizes)
    if mixtures and not 1 <= low <= high:
        raise InputError(f"mixture_sizes is {tuple(mixture_sizes)}; expected (smallest, largest) with "
                         "1 <= smallest <= largest")
    workers = check_integer("workers", workers)
    check_choice("transform", transform, TRANSFORMS)
    check_same_frame(target.mr, target.pet_grid, "target")
    for subject in subjects:  # every image readable and paired before the long work
        subject.read()
    out = Path(out)
    settings = {"transform": transform, "mixtures": mixtures, "mixture_sizes": [low, high], "seed": int(seed),
                **{k: list(v) if isinstance(v, tuple) else v for k, v in parameters.items()}}
    key = _set_key(target, subjects, settings)
    finished = read_set(out)
    if finished is not None and finished["key"] == key:
        return finished
    (out / SET_RECORD).unlink(missing_ok=True)
    jobs = [(target, subject, out, transform, int(seed), parameters) for subject in subjects]
    quality = _run(jobs, workers, progress)
    accepted = [q["subject"] for q in quality if q["accepted"]]
    if not accepted:
        reasons = "; ".join(f"{q['subject']}: {q['reason']}" for q in quality)
        raise InputError(f"no registration to the target MR passed quality control ({reasons})")
    images = out / "images"
    if images.exists():
        for stale in images.iterdir():
            stale.unlink()
    images.mkdir(parents=True, exist_ok=True)
    warped = {name: load_nifti(out / "registrations" / name / "pseudo_pet.nii.gz")[0] for name in accepted}
    for name, array in warped.items():
        save_nifti(images / f"{name}.nii.gz", array, target.pet_grid.affine)
    mixed = mixture_images(list(warped.values()), mixtures, (low, high), seed)
    for index, (array, members) in enumerate(mixed):
        save_nifti(images / f"mixture_{index:03d}.nii.gz", array, target.pet_grid.affine)
    record = {"key": key, "settings": settings, "subjects": [s.name for s in subjects], "accepted": accepted,
              "rejected": {q["subject"]: q["reason"] for q in quality if not q["accepted"]},
              "mixtures": [[accepted[i] for i in members] for _, members in mixed],
              "images": sorted(p.name for p in images.iterdir()), "quality": quality}
    write_record(out / "qc.json", quality)
    write_record(out / SET_RECORD, record)  # last: marks the set complete
    return record


def read_set(out: str | Path) -> dict[str, Any] | None:
    """The record of the finished set in ``out``, or None."""
    return read_record(Path(out) / SET_RECORD)


def mixture_images(images: list[np.ndarray], count: int, sizes: tuple[int, int],
                   seed: int) -> list[tuple[np.ndarray, list[int]]]:
    """``count`` sums of random subsets (size drawn in ``sizes``, capped at the number of images; drawn without
    replacement) of ``images``, each divided by its emission mean, with Dirichlet(1, ..., 1) weights; returned
    with the indices of their members. Deterministic in ``seed``."""
    normalised = [image / emission_mean(image) for image in images]
    out = []
    for index in range(count):
        rng = np.random.default_rng([int(seed), index, 314])
        size = int(rng.integers(min(sizes[0], len(images)), min(sizes[1], len(images)) + 1))
        members = sorted(int(i) for i in rng.choice(len(images), size, replace=False))
        weights = rng.dirichlet(np.ones(size))
        out.append((sum(w * normalised[i] for w, i in zip(weights, members)).astype(np.float32), members))
    return out


def _run(jobs: list[tuple], workers: int, progress: bool) -> list[dict[str, Any]]:
    """Quality records of every job, in subject order; in ``workers`` spawned processes when more than one."""
    bar = tqdm(total=len(jobs), desc="registering subjects", disable=not progress, leave=False)
    results = {}
    if workers == 1:
        for job in jobs:
            results[job[1].name] = _register_subject(*job)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_one_itk_thread) as pool:
            futures = {pool.submit(_register_subject, *job): job[1].name for job in jobs}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    bar.close()
    return [results[job[1].name] for job in jobs]


def _one_itk_thread() -> None:
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"


def _register_subject(target: Target, subject: SubjectFiles, out: Path, transform: str, seed: int,
                      parameters: dict[str, Any]) -> dict[str, Any]:
    """Register one subject, warp its PET, check the result; its quality record (accepted or why not)."""
    folder = out / "registrations" / subject.name
    record: dict[str, Any] = {"subject": subject.name, "accepted": False}
    try:
        mr, pet, labels = subject.read()
        registration = register(target.mr, mr, folder, transform, seed, **parameters)
        warped_mr = warp(mr, registration, target.mr)
        pseudo_pet = warp(pet, registration, target.pet_grid)
    except Exception as error:  # ANTs raises RuntimeError and others; the subject is reported and left out
        return {**record, "reason": f"registration failed: {type(error).__name__}: {error}"}
    record.update(before=registration.before, after=registration.after, seconds=registration.seconds)
    if target.labels is not None and labels is not None:
        record["dice_before"] = _mean_dice(target.labels.array, resample(labels, target.labels, "genericLabel"))
        record["dice_after"] = _mean_dice(target.labels.array, warp(labels, registration, target.labels,
                                                                    "genericLabel"))
    save_overlay(out / "qc" / f"{subject.name}.png", target.mr.array, resample(mr, target.mr), warped_mr,
                 f"{subject.name} -> target: correlation {registration.before['correlation']:.3f} -> "
                 f"{registration.after['correlation']:.3f}")
    if not registration.improved:
        return {**record, "reason": "registration did not raise the MR similarity "
                                    f"(before {registration.before}, after {registration.after})"}
    if not np.isfinite(pseudo_pet).all() or pseudo_pet.max() <= 0:
        return {**record, "reason": "the warped PET has no emission on the target's PET grid"}
    save_nifti(folder / "pseudo_pet.nii.gz", pseudo_pet, target.pet_grid.affine)
    return {**record, "accepted": True, "reason": ""}


def _mean_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the non-zero labels present in both label images."""
    labels = sorted((set(np.unique(np.rint(a)).astype(int)) & set(np.unique(np.rint(b)).astype(int))) - {0})
    return float(np.mean([dice(np.rint(a) == label, np.rint(b) == label) for label in labels])) if labels else 0.0


def _set_key(target: Target, subjects: list[SubjectFiles], settings: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for image in (target.mr, target.pet_grid):
        digest.update(np.ascontiguousarray(image.array, dtype=np.float32).tobytes())
        digest.update(np.asarray(image.affine, dtype=np.float64).tobytes())
    for subject in subjects:
        for path in (subject.mr, subject.pet, subject.labels):
            if path is not None:
                stat = path.stat()
                digest.update(f"{subject.name}:{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
