"""MRI half of ``diffrecon recon``: zero-filled, CG-SENSE and TV from k-space files or a simulated acquisition.

Fully sampled k-space with ``--acceleration`` is undersampled retrospectively and its RSS image is the
reference; k-space without ``--acceleration`` is reconstructed as measured; ``--image`` simulates multi-coil
k-space of a NIfTI image. Writes magnitude NIfTI images, a JSON report and a PNG panel
(reference / zero-filled / method / error with PSNR and SSIM).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

METHODS = ("zero-filled", "cg-sense", "tv")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--kspace", help="k-space: .npy/.npz (complex), fastMRI .h5 or ISMRMRD .h5")
    group.add_argument("--kspace-layout", default=None, help="axes of a .npy/.npz array, one letter each: c coils, "
                                                             "x readout, y/z phase, b slices (default cxy)")
    group.add_argument("--readout-oversampling", type=int, default=None,
                       help="readout oversampling factor to crop (default: from the file header, else 1)")
    group.add_argument("--slice", type=int, default=None, help="slice of multi-slice k-space (default: middle)")
    group.add_argument("--image", help="NIfTI image to simulate undersampled multi-coil k-space from")
    group.add_argument("--coils", type=int, default=8, help="simulated birdcage coils (--image)")
    group.add_argument("--snr-db", type=float, default=30.0, help="k-space SNR of the simulation in dB (--image)")
    group.add_argument("--mask", default="random", help="sampling pattern: random, gaussian1d, gaussian2d, "
                                                        "poisson or equispaced")
    group.add_argument("--acceleration", type=float, default=None,
                       help="undersample retrospectively by this factor (needed with --image)")
    group.add_argument("--center-fraction", type=float, default=0.08,
                       help="fully sampled centre (calibration), fraction of each undersampled axis")
    group.add_argument("--seed", type=int, default=0, help="mask and noise seed")
    group.add_argument("--lam", type=float, default=None, help="TV weight relative to max|A^H y| (default 0.01)")


def run(args: argparse.Namespace):
    """Reconstruct, write NIfTI + JSON + PNG to ``args.out``; returns the :class:`diffrecon.cli.recon.Result`."""
    import torch

    from diffrecon.checks import InputError
    from diffrecon.classical.mri_methods import DEFAULT_ITERATIONS, DEFAULT_TV_LAM, reconstruct_mri
    from diffrecon.cli.recon import Result
    from diffrecon.physics.mri_coils import sense_operator
    from diffrecon.physics.mri_masks import sampling_mask

    if bool(args.kspace) == bool(args.image):
        raise InputError(f"give exactly one of --kspace or --image for the MRI method {args.method!r}")
    iterations = DEFAULT_ITERATIONS[args.method] if args.iterations is None else args.iterations
    if args.method != "zero-filled" and iterations < 1:
        raise InputError(f"--iterations must be >= 1, got {iterations}")
    lam = DEFAULT_TV_LAM if args.lam is None else args.lam
    if args.image:
        full, reference, voxel = _simulated(args)
    else:
        full, voxel = _measured(args)
        reference = None
    ndim = full.dim() - 1
    mask_info = None
    if args.acceleration is not None:
        mask_info = sampling_mask(args.mask, tuple(full.shape[1:]), args.acceleration, args.center_fraction,
                                  seed=args.seed)
        if reference is None:
            if not (full != 0).any(0).all():
                raise InputError(f"--acceleration: the k-space in {args.kspace!r} is already undersampled; leave "
                                 "--acceleration out to reconstruct it as measured")
            from diffrecon.physics.mri_coils import rss
            from diffrecon.physics.mri_fft import ifft_centered

            reference = rss(ifft_centered(full, ndim), ndim)
        mask = mask_info.mask
    else:
        mask = (full != 0).any(0)
    measured = full * mask
    operator = sense_operator(measured, mask)
    results = {"zero-filled": reconstruct_mri("zero-filled", measured, operator)}
    if args.method != "zero-filled":
        results[args.method] = reconstruct_mri(args.method, measured, operator, iterations, lam)
    images = {name: result.image.abs().cpu().numpy() for name, result in results.items()}
    report = {"method": args.method, "iterations": iterations if args.method != "zero-filled" else 0,
              "n_coils": operator.n_coils, "shape": list(mask.shape),
              "acceleration": float(mask.numel() / mask.sum()), "objective": results[args.method].objective}
    if args.method == "tv":
        report["lam"] = lam
    if mask_info is not None:
        report.update(mask=mask_info.kind, requested_acceleration=mask_info.requested_acceleration,
                      center_fraction=args.center_fraction, seed=args.seed)
    affine = _write(Path(args.out), args.method, images, None if reference is None else reference.cpu().numpy(),
                    voxel, report)
    volume = images[args.method]
    settings = f" {report['iterations']} iterations" if report["iterations"] else ""
    return Result(volume[..., None] if volume.ndim == 2 else volume, affine,
                  str(Path(args.out) / f"{args.method}.nii.gz"),
                  f"{args.method.upper()}{settings} R={report['acceleration']:.1f}")


def _measured(args: argparse.Namespace):
    """k-space (n_coils, *spatial) of one slice with the readout oversampling removed, and the voxel size."""
    from diffrecon.checks import InputError
    from diffrecon.io.kspace import read_kspace
    from diffrecon.physics.mri_fft import remove_readout_oversampling

    data = read_kspace(args.kspace, args.kspace_layout)
    kspace = data.kspace
    if kspace.dim() > data.ndim + 1:
        n_slices = kspace.shape[0]
        index = n_slices // 2 if args.slice is None else args.slice
        if not 0 <= index < n_slices:
            raise InputError(f"--slice {index} is outside the {n_slices} slices of {args.kspace!r}")
        kspace = kspace[index]
    factor = data.readout_oversampling if args.readout_oversampling is None else args.readout_oversampling
    if factor != 1:
        kspace = remove_readout_oversampling(kspace, dim=1, factor=factor)
    return kspace, data.voxel_size_mm


def _simulated(args: argparse.Namespace):
    """Fully sampled multi-coil k-space of a NIfTI image (birdcage maps, complex noise), the image, voxel size."""
    import numpy as np
    import torch

    from diffrecon.checks import InputError, check_positive
    from diffrecon.io.nifti import load_nifti
    from diffrecon.physics.mri_coils import birdcage_maps
    from diffrecon.physics.mri_simulation import simulate_kspace

    if args.acceleration is None:
        raise InputError("--acceleration is required with --image (the simulated scan is undersampled by it)")
    check_positive("--coils", args.coils)
    image, affine = load_nifti(args.image, "--image")
    image = np.squeeze(image, axis=2) if image.ndim == 3 and image.shape[2] == 1 else image
    if image.ndim not in (2, 3):
        raise InputError(f"--image has shape {image.shape}; expected a 2D or 3D image")
    truth = torch.as_tensor(image)
    maps = birdcage_maps(truth.shape, args.coils)
    full, _ = simulate_kspace(truth, torch.ones(truth.shape, dtype=torch.bool), maps, args.snr_db, args.seed)
    return full, truth.abs(), tuple(float(v) for v in np.abs(affine[:3, :3]).sum(0))


def _write(out: Path, method: str, images: dict, reference, voxel, report: dict):
    """Magnitude NIfTI files, a JSON report with metrics and a PNG panel in ``out``; returns their affine."""
    import numpy as np

    from diffrecon.io.figures import save_panel
    from diffrecon.io.nifti import save_nifti

    spacing = list(voxel or (1.0, 1.0, 1.0)) + [1.0] * 3
    affine = np.diag(spacing[:3] + [1.0])
    as_volume = {name: image[..., None] if image.ndim == 2 else image for name, image in images.items()}
    for name, image in as_volume.items():
        save_nifti(out / f"{name}.nii.gz", image, affine)
    columns, annotations = dict(images), {}
    if reference is not None:
        from diffrecon.metrics import nrmse, psnr, ssim

        save_nifti(out / "reference.nii.gz", reference[..., None] if reference.ndim == 2 else reference, affine)
        report["metrics"] = {name: {"nrmse": nrmse(image, reference), "psnr_db": psnr(image, reference),
                                    "ssim": ssim(image, reference)} for name, image in images.items()}
        annotations = {name: f"PSNR {m['psnr_db']:.2f} dB  SSIM {m['ssim']:.3f}"
                       for name, m in report["metrics"].items()}
        columns = {"reference": reference, **images, "error": images[method] - reference}
    tmp = out / f"{method}.json.partial"
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(out / f"{method}.json")
    save_panel(out / f"{method}.png", columns, title=f"{method}, acceleration {report['acceleration']:.2f}",
               annotations=annotations, signed={"error"}, vmax=float(np.percentile(columns[next(iter(columns))], 99.5)))
    summary = ", ".join(f"{name} NRMSE {m['nrmse']:.4f}" for name, m in report.get("metrics", {}).items())
    print(f"wrote {method}.nii.gz, {method}.png and {method}.json in {out}" + (f" ({summary})" if summary else ""))
    return affine
