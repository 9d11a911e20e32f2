"""``diffrecon recon``: a classical reconstruction of PET or MRI data; the method picks the modality.

PET methods live in :mod:`diffrecon.cli.recon_pet`, MRI methods in :mod:`diffrecon.cli.recon_mri`; each
module provides ``METHODS``, ``add_arguments(group)`` and ``run(args)``.
"""
from __future__ import annotations

import argparse

from diffrecon.cli import recon_mri, recon_pet


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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    (recon_pet if args.method in recon_pet.METHODS else recon_mri).run(args)
