"""MRI inputs of ``diffrecon recon``: options, and the case loaded from them by :func:`diffrecon.io.cases.load_mri_case`.

Fully sampled k-space with ``--acceleration`` is undersampled retrospectively and its RSS image is the
reference; k-space without ``--acceleration`` is reconstructed as measured; ``--image`` simulates multi-coil
k-space of a NIfTI image.
"""
from __future__ import annotations

import argparse

# one vocabulary with the library and the MRI bundles: option --NAME-WITH-HYPHENS sets setting name_with_underscores
# (--kspace-layout and --slice, the names before 2026-12, are kept as aliases)
NAMES = {"kspace": "--kspace", "image": "--image", "layout": "--layout",
         "readout_oversampling": "--readout-oversampling", "slice_index": "--slice-index", "coils": "--coils",
         "snr_db": "--snr-db", "mask": "--mask", "acceleration": "--acceleration",
         "center_fraction": "--center-fraction", "seed": "--seed", "device": "--device"}


def add_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--kspace", help="k-space: .npy/.npz (complex), fastMRI .h5, ISMRMRD .h5 or Siemens twix .dat")
    group.add_argument("--layout", "--kspace-layout", dest="layout", default=None,
                       help="axes of a .npy/.npz array, one letter each: c coils, x readout, y/z phase, b slices "
                            "(default cxy)")
    group.add_argument("--readout-oversampling", type=int, default=None,
                       help="readout oversampling factor to crop (default: from the file header, else 1)")
    group.add_argument("--slice-index", "--slice", dest="slice_index", type=int, default=None,
                       help="slice of multi-slice k-space, from 0 (default: the middle one)")
    group.add_argument("--image", help="NIfTI image to simulate undersampled multi-coil k-space from")
    group.add_argument("--coils", type=int, default=8, help="simulated birdcage coils (--image; default "
                                                                        "%(default)s)")
    group.add_argument("--snr-db", type=float, default=30.0, help="k-space SNR of the simulation in dB "
                                                                              "(--image; default %(default)s)")
    group.add_argument("--mask", default="random", help="sampling pattern: random, gaussian1d, gaussian2d, "
                                                        "poisson or equispaced (generated with --acceleration), "
                                                        "or a .npy file holding a 0/1 mask (default %(default)s)")
    group.add_argument("--acceleration", type=float, default=None,
                       help="undersample retrospectively by this factor (needed with --image)")
    group.add_argument("--center-fraction", type=float, default=0.08,
                       help="fully sampled centre (calibration), fraction of each undersampled axis (default "
                            "%(default)s)")


def load(args: argparse.Namespace, images: list[str]):
    """The case of ``args`` (a :class:`diffrecon.io.cases.Case`); MRI methods take no extra input images."""
    from diffrecon.io.cases import load_mri_case

    return load_mri_case(args.kspace, image=args.image, layout=args.layout,
                         readout_oversampling=args.readout_oversampling, slice_index=args.slice_index,
                         coils=args.coils,
                         snr_db=args.snr_db, mask=args.mask, acceleration=args.acceleration,
                         center_fraction=args.center_fraction, seed=args.seed, device=args.device,
                         names=NAMES)

