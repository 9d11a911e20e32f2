"""PET half of ``diffrecon recon``: MLEM, OSEM, MAP-EM with the relative difference prior, Bowsher."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

METHODS = ("mlem", "osem", "map-rdp", "bowsher")
DEFAULT_ITERATIONS = {"mlem": 30, "osem": 4, "map-rdp": 10, "bowsher": 10}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--sinogram", help="measured counts: .npz or .nii(.gz) written by diffrecon, or STIR "
                                          "Interfile .hs (the file carries the scanner geometry)")
    group.add_argument("--multiplicative", help="multiplicative factors m (normalisation x attenuation x scale) "
                                                "as a sinogram file; default 1")
    group.add_argument("--additive", help="additive background b (randoms + scatter) as a sinogram file; default 0")
    group.add_argument("--mu-map", help="mu-map (1/mm), NIfTI or DICOM series folder: its attenuation factors "
                                        "are multiplied into m")
    group.add_argument("--grid", help="image grid: a preset name (demo, demo2d, clinical_brain) or a NIfTI "
                                      "image whose shape, voxel size and affine to use; default: the preset whose "
                                      "scanner matches the sinogram")
    group.add_argument("--psf-fwhm", type=float, default=None, help="resolution model FWHM in mm (default none)")
    group.add_argument("--subsets", type=int, default=8, help="ordered subsets (osem, map-rdp, bowsher)")
    group.add_argument("--beta", type=float, default=None, help="penalty strength (map-rdp default 1.0, "
                                                                "bowsher 0.05)")
    group.add_argument("--gamma", type=float, default=2.0, help="RDP edge-preservation parameter")
    group.add_argument("--mr", help="anatomical MR for bowsher: NIfTI or DICOM series folder")
    group.add_argument("--bowsher-neighbours", type=int, default=8, help="neighbours kept per voxel (of 26)")
    group.add_argument("--reference", help="ground-truth activity (NIfTI or DICOM series folder): metrics are "
                                           "reported. Images on another grid than the reconstruction's are "
                                           "resampled onto it by their affines (same patient coordinates)")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")


def run(args: argparse.Namespace):
    """Reconstruct, write NIfTI + JSON + PNG to ``args.out``; returns the :class:`diffrecon.cli.recon.Result`."""
    import torch

    from diffrecon.checks import InputError, check_device, check_positive
    from diffrecon.classical.pet import map_em, reconstruct_pet
    from diffrecon.cli.recon import Result
    from diffrecon.io.nifti import save_nifti
    from diffrecon.io.sinogram import load_sinogram
    from diffrecon.io.volumes import load_on_grid
    from diffrecon.physics.pet import PETAcquisitionModel, attenuation_factors
    from diffrecon.physics.projector import PETProjector

    if not args.sinogram:
        raise InputError(f"--sinogram is required for the PET method {args.method!r}")
    if args.method == "bowsher" and not args.mr:
        raise InputError("--mr (an anatomical MR image) is required for the bowsher method")
    if args.psf_fwhm is not None and args.psf_fwhm < 0:
        raise InputError(f"--psf-fwhm must be >= 0 mm, got {args.psf_fwhm}")
    check_device("--device", args.device)
    iterations = args.iterations or DEFAULT_ITERATIONS[args.method]
    check_positive("--iterations", iterations)
    measured, scanner = load_sinogram(args.sinogram)
    grid, grid_affine = resolve_grid(args.grid, scanner)
    on_grid = {name: load_on_grid(path, f"--{name.replace('_', '-')}", grid_affine, grid.shape)
               for name, path in (("mu_map", args.mu_map), ("reference", args.reference), ("mr", args.mr)) if path}
    projector = PETProjector(scanner, grid, device=args.device)
    multiplicative = _factor(args.multiplicative, "--multiplicative", scanner, load_sinogram)
    if "mu_map" in on_grid:
        attenuation = attenuation_factors(projector, torch.as_tensor(on_grid["mu_map"]))
        multiplicative = attenuation if multiplicative is None else multiplicative.to(args.device) * attenuation
    additive = _factor(args.additive, "--additive", scanner, load_sinogram)
    model = PETAcquisitionModel(projector, multiplicative, additive, psf_fwhm_mm=args.psf_fwhm)
    data = model.check_data(torch.as_tensor(measured), "--sinogram")
    reference = on_grid.get("reference")

    options = {"description": args.method}
    if args.method in ("mlem", "osem"):
        n_subsets = 1 if args.method == "mlem" else args.subsets
        result = reconstruct_pet(data, model, iterations, n_subsets=n_subsets, **options)
    else:
        penalty = build_penalty(args, grid, on_grid.get("mr"))
        result = map_em(data, model, penalty, iterations=iterations, n_subsets=args.subsets, **options)
    image = result.image.cpu().numpy()

    out = Path(args.out)
    save_nifti(out / f"{args.method}.nii.gz", image, grid_affine)
    report = {"method": args.method, "iterations": iterations, "log_likelihood": result.log_likelihood}
    if result.objective:
        report["objective"] = result.objective
    columns = {args.method.upper(): image}
    if reference is not None:
        from diffrecon.metrics import nrmse, psnr, ssim

        report["metrics"] = {"psnr_db": psnr(image, reference), "ssim": ssim(image, reference),
                             "nrmse": nrmse(image, reference)}
        columns = {"reference": reference, **columns, "difference": image - reference}
    (out / f"{args.method}.json").write_text(json.dumps(report, indent=2))
    from diffrecon.io.figures import save_panel

    save_panel(out / f"{args.method}.png", columns, title=f"{args.method} ({iterations} iterations)",
               signed={"difference"}, cmap="gray_r")
    print(f"wrote {out / f'{args.method}.nii.gz'}, {args.method}.png and {args.method}.json in {out}")
    settings = f"{iterations} iterations" + ("" if args.method == "mlem" else f" x {args.subsets} subsets")
    return Result(image, grid_affine, str(out / f"{args.method}.nii.gz"), f"{args.method.upper()} {settings}")


def resolve_grid(spec: str | None, scanner):
    """The image grid and its affine from a preset name, a NIfTI image, or the preset whose scanner matches."""
    from diffrecon.checks import InputError
    from diffrecon.io.nifti import load_nifti
    from diffrecon.physics.geometry import PRESET_NAMES, ImageGrid, get_preset

    if spec is None:
        for name in PRESET_NAMES:
            if get_preset(name).scanner == scanner:
                return get_preset(name).grid, get_preset(name).grid.affine
        raise InputError("--grid is required: the sinogram's scanner matches no preset "
                         f"({', '.join(PRESET_NAMES)}); give a preset name or a NIfTI image on the wanted grid")
    if spec in PRESET_NAMES:
        return get_preset(spec).grid, get_preset(spec).grid.affine
    if not (spec.endswith(".nii") or spec.endswith(".nii.gz")):
        raise InputError(f"--grid {spec!r} is neither a preset ({', '.join(PRESET_NAMES)}) nor a NIfTI file")
    image, affine = load_nifti(spec, "--grid")
    return ImageGrid(tuple(image.shape[:3]), tuple(float(v) for v in abs(affine[:3, :3]).sum(0))), affine


def build_penalty(args: argparse.Namespace, grid, mr):
    """RDP for map-rdp; a quadratic penalty with Bowsher neighbours from ``mr`` (on the grid) for bowsher."""
    import torch

    from diffrecon.classical.penalties import QuadraticPenalty, RelativeDifferencePenalty, bowsher_selection

    if args.method == "map-rdp":
        beta = 1.0 if args.beta is None else args.beta
        return RelativeDifferencePenalty(beta, grid.shape, grid.voxel_size_mm, gamma=args.gamma)
    selection = bowsher_selection(torch.as_tensor(mr), args.bowsher_neighbours)
    beta = 0.05 if args.beta is None else args.beta
    return QuadraticPenalty(beta, grid.shape, grid.voxel_size_mm, selection=selection)


def _factor(path: str | None, name: str, scanner, load_sinogram):
    import torch

    from diffrecon.checks import InputError

    if not path:
        return None
    factor, factor_scanner = load_sinogram(path)
    if factor_scanner != scanner:
        raise InputError(f"{name}: its scanner geometry differs from the sinogram's")
    return torch.as_tensor(factor)
