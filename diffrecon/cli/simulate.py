"""``diffrecon simulate``: phantom subject -> NIfTI images + a simulated PET sinogram at a count level."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="phantom -> NIfTI images + simulated PET sinogram",
        description="Build a brain phantom subject and simulate a PET acquisition of it. Writes the subject's "
                    "images (activity, T1, mu-map, lesion masks) as NIfTI and the measured sinogram with its "
                    "multiplicative and additive factors, ready for `diffrecon recon`.")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--seed", type=int, required=True, help="subject seed (see docs/phantoms.md for the split)")
    parser.add_argument("--split", default="test", help="seed split the subject must belong to (default test)")
    parser.add_argument("--preset", default="demo",
                        help="scanner + grid preset (demo, demo2d, clinical_brain; default %(default)s)")
    parser.add_argument("--tracer", default="fdg", choices=("fdg", "amyloid"),
                        help="activity distribution (default %(default)s)")
    parser.add_argument("--count-level", default="10%",
                        help="full (1e6 trues per direct plane), a percentage (10%%, 0.3%%) or a fraction "
                        "(0.05) of it (default %(default)s)")
    parser.add_argument("--lesions", type=int, default=0, help="number of random lesions (default %(default)s)")
    parser.add_argument("--background-fraction", type=float, default=0.3,
                        help="randoms + scatter / trues (default %(default)s)")
    parser.add_argument("--psf-fwhm", type=float, default=4.5,
                        help="scanner resolution FWHM in mm (default %(default)s)")
    parser.add_argument("--noise-seed", type=int, default=0, help="seed of the Poisson noise (default %(default)s)")
    parser.add_argument("--format", default="npz", choices=("npz", "nii.gz", "hs"),
                        help="sinogram file format (hs = STIR Interfile; default %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device (default %(default)s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from diffrecon.io.demo_cases import simulate_to_folder

    info = simulate_to_folder(args.out, args.seed, preset=args.preset, split=args.split, tracer=args.tracer,
                              count_level=args.count_level, lesions=args.lesions,
                              background_fraction=args.background_fraction, psf_fwhm=args.psf_fwhm or None,
                              noise_seed=args.noise_seed, sinogram_format=args.format, device=args.device)
    print(f"{info['true_counts']:.3g} trues, {info['background_counts']:.3g} background counts; wrote {args.out}")
    print("reconstruct with:", info["recon_command"])
