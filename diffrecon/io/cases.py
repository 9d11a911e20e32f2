"""Load a whole case from files: the measured data and the physics a method is called with.

:func:`load_pet_case` turns a sinogram file, its acquisition factors, a μ-map and a grid into measured counts,
a :class:`PETAcquisitionModel` and the grid's affine; :func:`load_mri_case` turns k-space (or an image to
simulate from), a mask and coil maps into k-space and an :class:`MRIOperator`. The command line, the bundles,
the benchmarks and a user's script all load cases through these two calls.

Input names in error messages are the keyword names (``mu_map``); the command line passes ``names`` to get its
option names (``--mu-map``) instead.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffrecon.checks import (InputError, check_at_least, check_device, check_file, check_integer,
                              check_nonnegative, naming_file)
from diffrecon.io.nifti import load_nifti
from diffrecon.io.sinogram import load_sinogram
from diffrecon.io.volumes import check_one_frame, load_on_grid
from diffrecon.metrics import ssim_window
from diffrecon.physics.geometry import PRESET_NAMES, ImageGrid, ScannerGeometry, get_preset
from diffrecon.physics.mri_operators import MRIOperator
from diffrecon.physics.pet import PETAcquisitionModel, attenuation_factors
from diffrecon.physics.projector import PETProjector


def _namer(names: Mapping[str, str] | None):
    return lambda key: (names or {}).get(key, key)


@dataclass
class Case:
    """Measured data, the physics they were measured through, and what else is known, ready for a method:
    ``method(case.data, case.physics)``.

    Attributes:
        data: PET counts (n_sinograms, n_views, n_bins), or complex MRI k-space ([n_coils,] *spatial) zero where
            not sampled (single-coil data have no coil axis).
        physics: a :class:`PETAcquisitionModel` (ȳ = m ⊙ A(PSF x) + b) or an :class:`MRIOperator` (A = M F
            [S], coil maps estimated by ESPIRiT or given).
        affine: 4x4 RAS affine of the reconstructed image (the PET grid's; MRI voxel sizes where known).
        reference: ground truth on the image grid when known (a given PET reference; for MRI the fully sampled
            root-sum-of-squares image or the simulated image), else None.
        images: other images on the grid, by name (e.g. "mr", "mu_map").
        info: JSON-serialisable facts (MRI: n_coils, shape, acceleration, and the mask's kind and seed).
    """

    data: torch.Tensor
    physics: PETAcquisitionModel | MRIOperator
    affine: np.ndarray
    reference: np.ndarray | torch.Tensor | None = None
    images: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def load_pet_case(sinogram: str | Path, *, multiplicative: str | Path | None = None,
                  additive: str | Path | None = None, mu_map: str | Path | None = None,
                  grid: str | Path | None = None, psf_fwhm: float | None = None,
                  images: Mapping[str, str | Path] | None = None, device: str | torch.device = "cpu",
                  names: Mapping[str, str] | None = None) -> Case:
    """Load a PET case.

    Args:
        sinogram: measured counts (.npz, NIfTI + JSON sidecar or STIR Interfile .hs), or a case folder written by
            ``diffrecon simulate`` (its ``simulation.json`` names the files, PSF and grid; the other arguments
            override what it says).
        multiplicative: normalisation x attenuation x scale sinogram file (default 1).
        additive: randoms + scatter sinogram file (default 0).
        mu_map: μ-map (1/mm), NIfTI or DICOM folder, resampled onto the grid; its attenuation factors are
            multiplied into the multiplicative factors.
        grid: a preset name, a NIfTI image on the wanted grid, or None for the preset whose scanner matches.
        psf_fwhm: resolution model FWHM in mm (None or 0: none).
        images: further images to put on the grid, by name (e.g. {"reference": ..., "mr": ...}); "reference"
            becomes the case's reference.
        device: torch device of the data and the model.
        names: how to name each input in error messages (default: the keyword names).

    Raises:
        InputError: an unreadable file, factors of another scanner, an image outside the grid, ... (named).
    """
    name = _namer(names)
    images = dict(images or {})
    if sinogram is not None and Path(sinogram).is_dir():
        folder = _simulated_case(Path(sinogram), name("sinogram"))
        sinogram = folder["sinogram"]
        multiplicative = multiplicative or folder.get("multiplicative")
        additive = additive or folder.get("additive")
        grid = grid or folder.get("grid")
        psf_fwhm = folder.get("psf_fwhm") if psf_fwhm is None else psf_fwhm
        images = {**folder["images"], **images}
    if not sinogram:
        raise InputError(f"{name('sinogram')} is required: the measured sinogram file or a simulated case folder")
    check_one_frame({name(key): path for key, path in (("mu_map", mu_map), *images.items())})
    if psf_fwhm is not None:
        check_at_least(name("psf_fwhm"), psf_fwhm)
    device = check_device(name("device"), device)
    measured, scanner = load_sinogram(sinogram)
    factors = {key: _factor(path, name(key), scanner) for key, path in
               (("multiplicative", multiplicative), ("additive", additive))}
    image_grid, affine = resolve_grid(grid, scanner, name("grid"), source=sinogram)
    loaded = {key: load_on_grid(path, name(key), affine, image_grid.shape)
              for key, path in (("mu_map", mu_map), *images.items()) if path}
    on_grid = {key: image for key, (image, _) in loaded.items()}
    resampled = {name(key): note for key, (_, note) in loaded.items() if note}
    projector = PETProjector(scanner, image_grid, device=device)
    if "mu_map" in on_grid:
        attenuation = attenuation_factors(projector, torch.as_tensor(on_grid["mu_map"]))
        base = factors["multiplicative"]
        factors["multiplicative"] = attenuation if base is None else base.to(device) * attenuation
    with naming_file(multiplicative):  # the files were checked on reading but for all-zero factors
        model = PETAcquisitionModel(projector, factors["multiplicative"], factors["additive"],
                                    psf_fwhm_mm=psf_fwhm or None)
    with naming_file(sinogram):
        data = model.check_data(torch.as_tensor(measured), name("sinogram"))
    reference = on_grid.pop("reference", None)
    info = {"scanner": scanner.name, "grid": list(image_grid.shape), **({"resampled": resampled} if resampled else {})}
    return Case(data, model, affine, reference, on_grid, info)


def resolve_grid(spec: str | Path | None, scanner: ScannerGeometry, name: str = "grid",
                 source: str | Path = "the sinogram") -> tuple[ImageGrid, np.ndarray]:
    """The image grid and its affine from a preset name, a NIfTI image, or the preset whose scanner matches (the
    scanner of ``source``, the sinogram file named in the error)."""
    if spec is None:
        for preset in PRESET_NAMES:
            if get_preset(preset).scanner == scanner:
                return get_preset(preset).grid, get_preset(preset).grid.affine
        raise InputError(f"{name} is required: the scanner of {str(source)!r} matches no preset "
                         f"({', '.join(PRESET_NAMES)}); give a preset name or a NIfTI image on the wanted grid")
    spec = str(spec)
    if spec in PRESET_NAMES:
        return get_preset(spec).grid, get_preset(spec).grid.affine
    if not spec.endswith((".nii", ".nii.gz")):
        raise InputError(f"{name} {spec!r} is neither a preset ({', '.join(PRESET_NAMES)}) nor a NIfTI file")
    image, affine = load_nifti(spec, name)
    if image.ndim < 3 or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(f"{name}: {spec!r} has shape {image.shape} and affine {affine.tolist()}; expected a 3D "
                         "image (or more dimensions) with a finite, invertible voxel-to-world matrix")
    voxel = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    return ImageGrid(tuple(image.shape[:3]), voxel), affine


def _factor(path: str | Path | None, name: str, scanner: ScannerGeometry) -> torch.Tensor | None:
    if not path:
        return None
    factor, factor_scanner = load_sinogram(path)
    if factor_scanner != scanner:
        raise InputError(f"{name}: its scanner geometry differs from the sinogram's (in {str(path)!r})")
    if factor.ndim != 3:
        raise InputError(f"{name} {str(path)!r} has shape {factor.shape}; expected one set of factors "
                         f"{scanner.data_shape} (n_sinograms, n_views, n_bins)")
    check_nonnegative(f"{name} {str(path)!r}", factor)
    return torch.as_tensor(factor)


def _simulated_case(folder: Path, name: str) -> dict[str, Any]:
    """The files, PSF and grid of a case folder written by ``diffrecon simulate`` (its simulation.json)."""
    info_file = check_file(f"{name} (a case folder needs simulation.json)", folder / "simulation.json")
    try:
        info = json.loads(info_file.read_text())
        files = info["files"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise InputError(f"{name}: {str(info_file)!r} is not a diffrecon simulation record: {error}") from error
    if not isinstance(files, dict) or not all(isinstance(path, str) and path for path in files.values()) \
            or not isinstance(files.get("sinogram"), str):
        raise InputError(f"{name}: {str(info_file)!r}: 'files' is {files!r}; expected an object of file names with "
                         "at least 'sinogram'")
    preset, psf = info.get("preset"), info.get("psf_fwhm_mm")
    if preset is not None and preset not in PRESET_NAMES:
        raise InputError(f"{name}: {str(info_file)!r}: 'preset' is {preset!r}; expected one of "
                         f"{', '.join(PRESET_NAMES)}")
    if psf is not None and (isinstance(psf, bool) or not isinstance(psf, (int, float)) or not np.isfinite(psf)
                            or psf < 0):
        raise InputError(f"{name}: {str(info_file)!r}: 'psf_fwhm_mm' is {psf!r}; expected a number >= 0 (or null)")
    located = {key: folder / Path(path).name for key, path in files.items()}
    case = {"sinogram": located["sinogram"], "multiplicative": located.get("multiplicative"),
            "additive": located.get("additive"), "grid": info.get("preset"), "psf_fwhm": info.get("psf_fwhm_mm"),
            "images": {}}
    for key, file in (("reference", f"{info.get('tracer', 'fdg')}.nii.gz"), ("mr", "t1.nii.gz")):
        if (folder / file).is_file():
            case["images"][key] = folder / file
    return case


def load_mri_case(kspace: str | Path | None = None, *, image: str | Path | np.ndarray | torch.Tensor | None = None,
                  layout: str | None = None,
                  readout_oversampling: int | None = None, slice_index: int | None = None, coils: int = 8,
                  snr_db: float = 30.0, mask: str | Path = "random", acceleration: float | None = None,
                  center_fraction: float = 0.08, seed: int = 0, coil_maps: torch.Tensor | None = None,
                  device: str | torch.device = "cpu", names: Mapping[str, str] | None = None) -> Case:
    """Load an MRI case from a k-space file, or simulate one from an image.

    Fully sampled k-space with ``acceleration`` is undersampled retrospectively and its root-sum-of-squares
    image is the reference; k-space without ``acceleration`` is reconstructed as measured; ``image`` (NIfTI)
    is turned into multi-coil k-space (birdcage coils, complex noise) and undersampled.

    Args:
        kspace: .npy/.npz (complex, axes by ``layout``), fastMRI .h5, ISMRMRD .h5 or Siemens twix .dat.
        image: NIfTI image to simulate from (instead of ``kspace``), or an image array (real or complex, 2D or 3D;
            1 mm voxels in the case's affine).
        layout: axes of a NumPy array (default cxy); see :func:`diffrecon.io.kspace.read_kspace`.
        readout_oversampling: factor to crop along the readout (default: the file's, else 1).
        slice_index: slice of multi-slice k-space (default the middle one).
        coils, snr_db: simulated coils and k-space SNR (``image`` only).
        mask: sampling pattern kind (random, gaussian1d, gaussian2d, poisson, equispaced) generated with
            ``acceleration``, ``center_fraction`` and ``seed``, or a .npy file holding a 0/1 mask.
        acceleration: undersampling factor (required with ``image``).
        coil_maps: given coil sensitivities (n_coils, *spatial) instead of ESPIRiT estimates.
        device: torch device of the k-space (the operator follows its input's device).
        names: how to name each input in error messages (default: the keyword names).
    """
    from diffrecon.physics.mri_coils import rss, sense_operator
    from diffrecon.physics.mri_fft import ifft_centered
    from diffrecon.physics.mri_masks import calibration_width, sampling_mask

    name = _namer(names)
    device = check_device(name("device"), device)
    if (kspace is None) == (image is None):
        raise InputError(f"give exactly one of {name('kspace')} or {name('image')}")
    if image is not None:
        with naming_file(image):
            full, reference, voxel = _simulated_kspace(image, coils, snr_db, acceleration, seed, name)
        noise_sigma = None  # known, but left to the estimate: simulated cases stand in for files without a scan
    else:
        full, voxel, noise_sigma = _measured_kspace(kspace, layout, readout_oversampling, slice_index, name)
        reference = None
    spatial = tuple(full.shape[1:])
    info: dict[str, Any] = {}
    if Path(str(mask)).suffix == ".npy":
        sampling = _mask_file(mask, spatial, name("mask"))
        info["mask"] = str(mask)
    elif acceleration is not None:
        generated = sampling_mask(str(mask), spatial, acceleration, center_fraction, seed=seed)
        sampling = generated.mask
        info.update(mask=generated.kind, requested_acceleration=generated.requested_acceleration,
                    center_fraction=center_fraction, seed=seed)
    else:
        sampling = (full != 0).any(0)
    if acceleration is not None and reference is None:
        if not (full != 0).any(0).all():
            raise InputError(f"{name('acceleration')}: the k-space in {str(kspace)!r} is already undersampled; "
                             f"leave {name('acceleration')} out to reconstruct it as measured")
        reference = rss(ifft_centered(full, len(spatial)), len(spatial))
    measured = full * sampling
    if "center_fraction" in info and coil_maps is None and full.shape[0] > 1:
        # the generated mask's centre calibrates the coil maps: too narrow, and the user's option says so
        width = calibration_width(sampling)
        if width < 4:
            raise InputError(f"{name('center_fraction')} {center_fraction} gives a fully sampled centre of {width} "
                             f"samples on the {'x'.join(map(str, spatial))} grid; ESPIRiT coil maps need at least "
                             f"4: raise {name('center_fraction')}")
    with naming_file(kspace if image is None else image):
        if coil_maps is not None:
            operator = MRIOperator(sampling, coil_maps)
        else:
            operator = sense_operator(measured, sampling)
        operator.noise_sigma = noise_sigma
        if operator.coil_maps is None:  # one coil: no coil axis, so images and reference share a shape
            measured = measured[0]
        info.update(n_coils=operator.n_coils, shape=list(spatial),
                    acceleration=float(sampling.numel() / sampling.sum()))
        operator.check_kspace(measured, name("kspace"))
    return Case(measured.to(device), operator, _affine(voxel), reference, info=info)


def _affine(voxel: tuple[float, ...] | None) -> np.ndarray:
    spacing = list(voxel or (1.0, 1.0, 1.0)) + [1.0] * 3
    return np.diag(spacing[:3] + [1.0])


def _mask_file(path: str | Path, spatial: tuple[int, ...], name: str) -> torch.Tensor:
    path = check_file(name, path)
    try:
        mask = torch.as_tensor(np.load(path, allow_pickle=False))
    except Exception as error:  # numpy raises many types for broken files, torch for unsupported dtypes
        raise InputError(f"{name}: cannot read {str(path)!r} as a NumPy array: {error}") from error
    if tuple(mask.shape) != spatial:
        raise InputError(f"{name} {str(path)!r} has shape {tuple(mask.shape)}; expected the k-space's spatial shape "
                         f"{spatial}")
    if not ((mask == 0) | (mask == 1)).all():
        raise InputError(f"{name} {str(path)!r} must hold only 0/1 values")
    return mask.bool()


def _measured_kspace(path: str | Path, layout: str | None, oversampling: int | None, slice_index: int | None,
                     name) -> tuple[torch.Tensor, tuple[float, ...] | None, float | None]:
    """k-space (n_coils, *spatial) of one slice with the readout oversampling removed, the voxel size and the noise
    σ of the file's noise scan (the crop in image space keeps the per-sample noise variance)."""
    from diffrecon.io.kspace import read_kspace
    from diffrecon.physics.mri_fft import remove_readout_oversampling

    data = read_kspace(path, layout, layout_name=name("layout"))
    kspace = data.kspace
    if kspace.dim() > data.ndim + 1:
        n_slices = kspace.shape[0]
        index = n_slices // 2 if slice_index is None else slice_index
        if not 0 <= index < n_slices:
            raise InputError(f"{name('slice_index')} {index} is outside the {n_slices} slices of {str(path)!r}")
        kspace = kspace[index]
    factor = data.readout_oversampling if oversampling is None else check_integer(name("readout_oversampling"),
                                                                                   oversampling)
    if factor != 1:
        with naming_file(path):
            kspace = remove_readout_oversampling(kspace, dim=1, factor=factor)
    return kspace, data.voxel_size_mm, data.noise_sigma


def _simulated_kspace(path: str | Path, coils: int, snr_db: float, acceleration: float | None, seed: int, name):
    """Fully sampled multi-coil k-space of a NIfTI image or an array (birdcage maps, complex noise), the image's
    magnitude, voxel size."""
    from diffrecon.physics.mri_coils import birdcage_maps
    from diffrecon.physics.mri_simulation import simulate_kspace

    if acceleration is None:
        raise InputError(f"{name('acceleration')} is required with {name('image')} (the simulated scan is "
                         "undersampled by it)")
    check_integer(name("coils"), coils)
    if isinstance(path, (np.ndarray, torch.Tensor)):
        image = np.asarray(path.detach().cpu() if isinstance(path, torch.Tensor) else path)
        affine = np.eye(4)
    else:
        image, affine = load_nifti(path, name("image"))
    image = np.squeeze(image, axis=2) if image.ndim == 3 and image.shape[2] == 1 else image
    if image.ndim not in (2, 3):
        raise InputError(f"{name('image')} has shape {image.shape}; expected a 2D or 3D image")
    if min(image.shape[:2]) < ssim_window():  # it becomes the reference, scored by SSIM after the reconstruction
        raise InputError(f"{name('image')} has shape {image.shape}; expected at least {ssim_window()} voxels per "
                         "in-plane side (the SSIM window the result is scored with)")
    truth = torch.as_tensor(image)
    truth = truth.to(torch.complex64 if truth.is_complex() else torch.float32)
    maps = birdcage_maps(truth.shape, coils)
    full, _ = simulate_kspace(truth, torch.ones(truth.shape, dtype=torch.bool), maps, snr_db, seed)
    return full, truth.abs(), tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
