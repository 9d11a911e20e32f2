"""``diffrecon recon``: a classical reconstruction of PET or MRI data; the method picks the modality.

PET methods live in :mod:`diffrecon.cli.recon_pet`, MRI methods in :mod:`diffrecon.cli.recon_mri`; each
module provides ``METHODS``, ``add_arguments(group)`` and ``run(args) -> Result`` (after writing its files).
The result can then be written as DICOM and sent to a PACS with the options of ``diffrecon export``.
"""
from __future__ import annotations

import argparse
from typing import NamedTuple

import numpy as np

from diffrecon.checks import InputError
from diffrecon.cli import recon_mri, recon_pet
from diffrecon.cli.export import add_export_arguments, check_export_args, export_from_args, print_export_report


class Result(NamedTuple):
    """What a reconstruction wrote: the image volume (x, y, z), its affine, its NIfTI file, a description."""

    volume: np.ndarray
    affine: np.ndarray
    path: str
    description: str


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recon", help="classical PET or MRI reconstruction -> NIfTI + PNG",
        description="Reconstruct a PET sinogram or MRI k-space with a classical method. The method decides "
                    "which inputs are needed: PET methods take a sinogram and acquisition factors, MRI methods "
                    "k-space and a sampling mask (or an image to undersample).")
    parser.add_argument("--method", required=True, choices=[*recon_pet.METHODS, *recon_mri.METHODS],
                        help="reconstruction method")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--iterations", type=int, default=None, help="number of iterations (method default)")
    recon_pet.add_arguments(parser.add_argument_group("PET inputs"))
    recon_mri.add_arguments(parser.add_argument_group("MRI inputs"))
    add_export_arguments(parser.add_argument_group("DICOM export and PACS (optional; as diffrecon export)"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    pet = args.method in recon_pet.METHODS
    modality = "PT" if pet else "MR"
    if not pet and args.export_source_dicom:
        raise InputError("--export-source-dicom: k-space files carry no patient position, so an MRI result cannot "
                         "join a source study; leave the option out to export it as a new study")
    check_export_args(args, modality)  # before the reconstruction
    result = (recon_pet if pet else recon_mri).run(args)
    report = export_from_args(args, result.volume, result.affine, modality=modality,
                              method_description=result.description)
    if report is not None:
        print_export_report(report, "recon", f"rerun `diffrecon export --result {result.path} --modality "
                                             f"{modality} --method-description '{result.description}'` with the "
                                             "same export options to send what is missing")
