"""PET inputs of ``diffrecon recon``: options, and the case loaded from them by :func:`diffrecon.io.cases.load_pet_case`."""
from __future__ import annotations

import argparse

OPTIONS = ("sinogram", "multiplicative", "additive", "mu_map", "grid", "psf_fwhm", "reference", "mr", "device")


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--sinogram", help="measured counts: .npz or .nii(.gz) written by diffrecon, or STIR "
                                          "Interfile .hs (the file carries the scanner geometry), or a case folder "
                                          "written by diffrecon simulate (its files, PSF and grid)")
    group.add_argument("--multiplicative", help="multiplicative factors m (normalisation x attenuation x scale) "
                                                "as a sinogram file; default 1")
    group.add_argument("--additive", help="additive background b (randoms + scatter) as a sinogram file; default 0")
    group.add_argument("--mu-map", help="mu-map (1/mm), NIfTI or DICOM series folder: its attenuation factors "
                                        "are multiplied into m")
    group.add_argument("--grid", help="image grid: a preset name (demo, demo2d, clinical_brain) or a NIfTI "
                                      "image whose shape, voxel size and affine to use; default: the preset whose "
                                      "scanner matches the sinogram")
    group.add_argument("--psf-fwhm", type=float, default=None, help="resolution model FWHM in mm (default none)")
    group.add_argument("--mr", help="anatomical MR for bowsher: NIfTI or DICOM series folder; also the T1 of the MR "
                                    "guidance of pet-dds, pet-lisch, pet-dps and pet-naive with an MR-conditioned "
                                    "--prior (e.g. pet_fdg_mr_prior; --guidance). Resampled onto the PET grid by its "
                                    "affine; refused if it covers less than half of the grid (another frame of "
                                    "reference)")
    group.add_argument("--reference", help="ground-truth activity (NIfTI or DICOM series folder): metrics are "
                                           "reported. Images on another grid than the reconstruction's are "
                                           "resampled onto it by their affines (same patient coordinates)")


def load(args: argparse.Namespace, images: list[str]):
    """The case of ``args`` (a :class:`diffrecon.io.cases.Case`), with the method's input ``images`` on the grid."""
    from diffrecon.io.cases import load_pet_case

    names = {key: f"--{key.replace('_', '-')}" for key in OPTIONS}
    wanted = {key: getattr(args, key) for key in ("reference", *images) if getattr(args, key, None)}
    return load_pet_case(args.sinogram, multiplicative=args.multiplicative, additive=args.additive,
                         mu_map=args.mu_map, grid=args.grid, psf_fwhm=args.psf_fwhm, images=wanted,
                         device=args.device, names=names)

