"""``diffrecon simulate``: phantom subject -> NIfTI images + a simulated PET sinogram at a count level."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate", help="phantom -> NIfTI images + simulated PET sinogram",
        description="Build a brain phantom subject and simulate a PET acquisition of it. Writes the subject's "
                    "images (activity, T1, mu-map, lesion masks) as NIfTI and the measured sinogram with its "
                    "multiplicative and additive factors, ready for `diffrecon recon`.")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--seed", type=int, required=True, help="subject seed (see docs/phantoms.md for the split)")
    parser.add_argument("--split", default="test", help="seed split the subject must belong to (default test)")
    parser.add_argument("--preset", default="demo", help="scanner + grid preset (demo, demo2d, clinical_brain)")
    parser.add_argument("--tracer", default="fdg", choices=("fdg", "amyloid"), help="activity distribution")
    parser.add_argument("--count-level", default="10%", help="full (1e6 trues per direct plane), 10%% or 1%%")
    parser.add_argument("--lesions", type=int, default=0, help="number of random lesions")
    parser.add_argument("--background-fraction", type=float, default=0.3, help="randoms + scatter / trues")
    parser.add_argument("--psf-fwhm", type=float, default=4.5, help="scanner resolution FWHM in mm")
    parser.add_argument("--noise-seed", type=int, default=0, help="seed of the Poisson noise")
    parser.add_argument("--format", default="npz", choices=("npz", "nii.gz", "hs"),
                        help="sinogram file format (hs = STIR Interfile)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import torch

    from diffrecon.checks import check_device, check_output_dir
    from diffrecon.data.phantoms import make_subject
    from diffrecon.io.sinogram import save_sinogram
    from diffrecon.physics.geometry import get_preset
    from diffrecon.physics.pet_simulation import simulate_pet, trues_per_direct_plane

    preset = get_preset(args.preset)
    trues_per_direct_plane(args.count_level)  # validate before building anything
    check_device("--device", args.device)
    check_output_dir("--out", args.out)
    subject = make_subject(args.seed, preset.grid, lesions=args.lesions, split=args.split)
    activity = getattr(subject, args.tracer)
    simulation = simulate_pet(torch.as_tensor(activity), torch.as_tensor(subject.mu_map), preset.scanner, preset.grid,
                              count_level=args.count_level, background_fraction=args.background_fraction,
                              psf_fwhm_mm=args.psf_fwhm or None, seed=args.noise_seed, device=args.device)
    out = Path(args.out)
    subject.save(out)
    files = {}
    for name, sinogram in (("sinogram", simulation.measured), ("multiplicative", simulation.model.multiplicative),
                           ("additive", simulation.model.additive)):
        if sinogram is not None:
            files[name] = str(save_sinogram(out / f"{name}.{args.format}", sinogram.cpu().numpy(), preset.scanner))
    command = ["diffrecon recon --method osem", f"--sinogram {files['sinogram']}",
               f"--multiplicative {files['multiplicative']}"]
    command += [f"--additive {files['additive']}"] if "additive" in files else []
    command += [f"--psf-fwhm {args.psf_fwhm}"] if args.psf_fwhm else []
    command += [f"--grid {args.preset}", f"--out {out / 'recon'}"]
    info = {"seed": args.seed, "preset": args.preset, "tracer": args.tracer, "count_level": args.count_level,
            "true_counts": simulation.true_counts, "background_counts": simulation.background_counts,
            "psf_fwhm_mm": args.psf_fwhm, "files": files, "recon_command": " ".join(command)}
    (out / "simulation.json").write_text(json.dumps(info, indent=2))
    print(f"{simulation.true_counts:.3g} trues, {simulation.background_counts:.3g} background counts; wrote {out}")
    print("reconstruct with:", info["recon_command"])
