"""Built-in demo cases: a phantom subject scanned in memory, ready for a method (what the bundles reconstruct
when no data are given)."""
from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from diffrecon.checks import check_choice, check_device, check_integer, check_output_dir
from diffrecon.data.phantoms import Subject, make_subject
from diffrecon.io.cases import Case, load_mri_case
from diffrecon.io.nifti import save_nifti
from diffrecon.io.sinogram import save_sinogram
from diffrecon.physics.geometry import ImageGrid, get_preset
from diffrecon.physics.pet_simulation import simulate_pet, trues_per_direct_plane


def simulated_pet_case(seed: int = 20000, preset: str = "demo2d", count_level: str = "10%", lesions: int = 2,
                       lesion_kinds: str = "hot", psf_fwhm: float = 4.5, noise_seed: int = 0, split: str | None = "test",
                       device: str | torch.device = "cpu", tracer: str = "fdg") -> Case:
    """Phantom subject ``seed`` of ``split`` (refused if it belongs to another) with ``lesions`` lesions, its
    ``tracer`` ("fdg" or "amyloid") scanned on ``preset`` at ``count_level`` as ``diffrecon simulate`` does; the
    case's reference is the true activity, its images the T1 ("mr"), the μ-map and the lesion masks, and the model
    includes the PSF."""
    check_choice("tracer", tracer, ("fdg", "amyloid"))
    subject = make_subject(seed, get_preset(preset).grid, lesions=lesions, lesion_kinds=lesion_kinds, split=split)
    images = {"mr": subject.t1, "lesions": subject.lesion_masks, "white_matter": subject.white_matter,
              "labels": subject.labels}
    return scanned_pet_case(getattr(subject, tracer), subject.mu_map, preset, count_level, psf_fwhm, noise_seed,
                            images, {"phantom_seed": seed, "tracer": tracer}, device)


def scanned_pet_case(activity: np.ndarray, mu_map: np.ndarray, preset: str = "demo", count_level: str = "10%",
                     psf_fwhm: float = 4.5, noise_seed: int = 0, images: dict | None = None, info: dict | None = None,
                     device: str | torch.device = "cpu") -> Case:
    """Any activity and μ-map on ``preset``'s grid (e.g. a real PET image resampled to it) scanned at
    ``count_level`` with the PSF; the case's reference is ``activity``, its images the μ-map and ``images``."""
    grid = get_preset(preset).grid
    scan = simulate_pet(torch.as_tensor(activity), torch.as_tensor(mu_map), get_preset(preset).scanner, grid,
                        count_level=count_level, psf_fwhm_mm=psf_fwhm, seed=noise_seed, device=device)
    info = {"scanner": preset, "grid": list(grid.shape), **(info or {}), "count_level": count_level}
    return Case(scan.measured, scan.model, grid.affine, activity, {**(images or {}), "mu_map": mu_map}, info)


def simulated_mri_case(seed: int = 20000, coils: int = 8, acceleration: float = 4.0, mask: str = "random",
                       center_fraction: float = 0.08, snr_db: float = 30.0, phase: float = 1.0, noise_seed: int = 0,
                       split: str | None = "test", slices: int = 1, device: str | torch.device = "cpu",
                       contrast: str = "t1") -> Case:
    """The central axial slice (128 x 128, 1.5 mm, as the MR prior's images) of phantom subject ``seed`` of
    ``split`` in ``contrast`` ("t1", or "t2": T2-weighted, a contrast the shipped T1 prior never saw), or with
    ``slices`` > 1 the volume of that many central slices (3D k-space: masks undersample the last two axes, y and
    z), scanned as :func:`scanned_mri_case` describes; the reference is the magnitude."""
    check_choice("contrast", contrast, ("t1", "t2"))
    grid = ImageGrid((128, 128, check_integer("slices", slices)), (1.5, 1.5, 1.5))
    volume = getattr(make_subject(seed, grid, split=split), contrast)
    magnitude = torch.as_tensor(volume[..., 0] if slices == 1 else volume)
    case = scanned_mri_case(magnitude, seed, coils, acceleration, mask, center_fraction, snr_db, phase, noise_seed,
                            device)
    return replace(case, affine=grid.affine, info={**case.info, "phantom_seed": seed})


def scanned_mri_case(magnitude: torch.Tensor, seed: int, coils: int = 8, acceleration: float = 4.0,
                     mask: str = "random", center_fraction: float = 0.08, snr_db: float = 30.0, phase: float = 1.0,
                     noise_seed: int = 0, device: str | torch.device = "cpu") -> Case:
    """A magnitude image (rows, cols) or volume (rows, cols, slices) given a smooth phase (a random second-order
    field, drawn from ``seed``, of up to about ``phase`` radians; 0 for a real image), scanned with ``coils``
    birdcage coils at ``snr_db`` and undersampled by ``mask`` with ``acceleration``
    (:func:`diffrecon.io.cases.load_mri_case`, coil maps by ESPIRiT as for measured data); the reference is the
    magnitude image."""
    magnitude = torch.as_tensor(magnitude, dtype=torch.float32)
    rng = np.random.default_rng([seed, noise_seed, 7])
    axes = torch.meshgrid(*(torch.linspace(-1, 1, n) for n in magnitude.shape), indexing="ij")
    terms = torch.stack([*axes, *(a * b for a, b in itertools.combinations(axes, 2)), *(a ** 2 - 0.5 for a in axes)])
    weights = torch.as_tensor(rng.uniform(-1, 1, len(terms)), dtype=torch.float32)
    field = (weights.reshape(-1, *[1] * magnitude.dim()) * terms).sum(0)
    image = magnitude * torch.exp(1j * float(phase) * field / field.abs().max().clamp_min(1e-6))
    case = load_mri_case(image=image, coils=coils, snr_db=snr_db, mask=mask, acceleration=acceleration,
                         center_fraction=center_fraction, seed=noise_seed, device=device)
    return replace(case, info={**case.info, "coils": coils, "snr_db": snr_db, "phase": phase})


def simulate_to_folder(out: str | Path, seed: int, *, preset: str = "demo", split: str | None = "test",
                       tracer: str = "fdg", count_level: str = "10%", lesions: int = 0,
                       background_fraction: float = 0.3, psf_fwhm: float | None = 4.5, noise_seed: int = 0,
                       sinogram_format: str = "npz", device: str | torch.device = "cpu") -> dict:
    """``diffrecon simulate``: phantom subject ``seed`` on ``preset``'s grid written to ``out`` as NIfTI images,
    its ``tracer`` scanned at ``count_level`` (sinogram, multiplicative and additive factors as
    ``sinogram_format`` files) and ``simulation.json`` with the counts, the files and the command that
    reconstructs them; returns that record. Settings are checked before any work."""
    preset_spec = get_preset(preset)
    trues_per_direct_plane(count_level)
    check_choice("tracer", tracer, ("fdg", "amyloid"))
    check_device("--device", device)  # named as diffrecon simulate's options, whose call this is
    out = check_output_dir("--out", out)
    subject = make_subject(seed, preset_spec.grid, lesions=lesions, split=split)
    simulation = simulate_pet(torch.as_tensor(getattr(subject, tracer)), torch.as_tensor(subject.mu_map),
                              preset_spec.scanner, preset_spec.grid, count_level=count_level,
                              background_fraction=background_fraction, psf_fwhm_mm=psf_fwhm, seed=noise_seed,
                              device=device)
    save_subject(subject, out)
    files = {}
    for name, sinogram in (("sinogram", simulation.measured), ("multiplicative", simulation.model.multiplicative),
                           ("additive", simulation.model.additive)):
        if sinogram is not None:
            path = save_sinogram(out / f"{name}.{sinogram_format}", sinogram.cpu().numpy(), preset_spec.scanner)
            files[name] = str(path)
    command = ["diffrecon recon --method osem", f"--sinogram {files['sinogram']}",
               f"--multiplicative {files['multiplicative']}"]
    command += [f"--additive {files['additive']}"] if "additive" in files else []
    command += [f"--psf-fwhm {psf_fwhm}"] if psf_fwhm else []
    command += [f"--grid {preset}", f"--out {out / 'recon'}"]
    info = {"seed": seed, "preset": preset, "tracer": tracer, "count_level": count_level,
            "true_counts": simulation.true_counts, "background_counts": simulation.background_counts,
            "psf_fwhm_mm": psf_fwhm, "files": files, "recon_command": " ".join(command)}
    (out / "simulation.json").write_text(json.dumps(info, indent=2))
    return info


def save_subject(subject: Subject, folder: str | Path) -> list[Path]:
    """Write every image of a phantom ``subject`` as NIfTI (``<name>.nii.gz``) in ``folder``; lesion masks as a 4D
    image."""
    folder = Path(folder)
    written = [save_nifti(folder / f"{name}.nii.gz", getattr(subject, name), subject.affine)
               for name in ("t1", "fdg", "amyloid", "mu_map", "labels", "grey_matter", "white_matter")]
    if len(subject.lesion_masks):
        written.append(save_nifti(folder / "lesion_masks.nii.gz",
                                  np.moveaxis(subject.lesion_masks, 0, -1).astype(np.uint8), subject.affine))
    return written


def phantom_subject_folders(folder: str | Path, seeds: Sequence[int], preset: str = "demo",
                            split: str | None = "train") -> Path:
    """Phantom subjects ``seeds`` of ``split`` on the ``preset`` grid as a folder of other subjects for a
    personalised prior (:func:`diffrecon.registration.pseudo_pet.find_subjects`): ``<seed>/mr.nii.gz`` (T1),
    ``pet.nii.gz`` (FDG, no lesions) and ``labels.nii.gz``; subjects already written are kept."""
    folder = Path(folder)
    grid = get_preset(preset).grid
    for seed in seeds:
        subject_dir = folder / f"subject_{int(seed):05d}"
        if (subject_dir / "labels.nii.gz").is_file():  # written last
            continue
        subject = make_subject(int(seed), grid, split=split)
        for name, image in (("mr", subject.t1), ("pet", subject.fdg), ("labels", subject.labels.astype(np.float32))):
            save_nifti(subject_dir / f"{name}.nii.gz", image, grid.affine)
    return folder
