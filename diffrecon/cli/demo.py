"""``diffrecon demo``: phantom -> low-count 3D PET scan -> OSEM, MAP-EM (RDP) and PET-LiSch -> NIfTI, PNG,
metrics."""
from __future__ import annotations

import argparse
import json

# RDP strength for the demo's activity units at 1% counts, chosen on training subjects 0 and 1 with
# `python scripts/tune_demo_rdp.py --count-level 1% --betas 0.1 0.3 1 4 16`: lowest brain NRMSE (0.222 vs
# OSEM 0.234) with lower white-matter noise (CoV 0.190 vs 0.219; rerun 2026-12-02 after the BSREM preconditioner
# fix, β 0.1 / 1: NRMSE 0.222 / 0.252).
DEMO_RDP_BETA = 0.3


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="simulate a brain PET scan and reconstruct it (built-in data, a few minutes on a CPU)",
        description="Build a brain phantom from the test split, simulate a low-count fully 3D PET acquisition on "
                    "the demo scanner, reconstruct it with OSEM, MAP-EM (relative difference prior) and the "
                    "diffusion method PET-LiSch (shipped tri-planar prior), and write "
                    "NIfTI volumes, a PNG panel and a metrics table to the output folder.")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--seed", type=int, default=None, help="phantom subject seed (default: first test seed)")
    parser.add_argument("--count-level", default="1%", help="full, 10%% or 1%% (default 1%%: low count)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--preset", default="demo", choices=("demo", "demo2d"),
                        help="scanner + grid: demo (fully 3D, the default) or demo2d (one axial slice of it, "
                             "seconds: a quick check that the pipeline runs)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from diffrecon.data.phantoms import make_subject
    from diffrecon.data.splits import subject_seeds
    from diffrecon.io.figures import save_panel
    from diffrecon.io.nifti import save_nifti
    from diffrecon.metrics import phantom_metrics
    from diffrecon.physics.geometry import get_preset
    from diffrecon.methods import build_method
    from diffrecon.priors.bundle import load_volume_prior
    from diffrecon.physics.pet_simulation import simulate_pet, trues_per_direct_plane

    from diffrecon.checks import check_device, check_output_dir

    trues_per_direct_plane(args.count_level)  # validate before any work
    check_device("--device", args.device)
    out = check_output_dir("--out", args.out)
    preset = get_preset(args.preset)
    grid, scanner = preset.grid, preset.scanner
    seed = subject_seeds("test", 1)[0] if args.seed is None else args.seed

    print(f"[1/4] phantom subject {seed} on a {grid.shape} grid of {grid.voxel_size_mm[0]} mm voxels")
    subject = make_subject(seed, grid, lesions=3, lesion_kinds="hot", split="test")
    print(f"[2/4] simulating {args.count_level} counts on the {args.preset} scanner ({scanner.n_rings} rings, "
          f"{scanner.n_sinograms} sinograms x {scanner.n_views} views x {scanner.n_bins} bins)")
    simulation = simulate_pet(torch.as_tensor(subject.fdg), torch.as_tensor(subject.mu_map), scanner, grid,
                              count_level=args.count_level, seed=seed, device=args.device)
    print(f"      {simulation.true_counts:.3g} trues + {simulation.background_counts:.3g} randoms/scatter")

    print("[3/4] reconstructing")
    prior = load_volume_prior("pet_fdg_prior", grid.shape, args.device)
    methods = {"OSEM": build_method("osem", iterations=4, subsets=8),
               "MAP-RDP": build_method("map-rdp", beta=DEMO_RDP_BETA, iterations=10, subsets=8),
               # its defaults, tuned on validation subjects (docs/pet_diffusion.md): K = 3 OSEM iterations
               # over 8 subsets, warm start, 8 NFE
               "PET-LiSch": build_method("pet-lisch", prior=prior)}
    results, timings = {}, {}
    for name, method in methods.items():
        result = method(simulation.measured, simulation.model, generator=torch.Generator(args.device).manual_seed(seed))
        results[name], timings[name] = result.mean.cpu().numpy(), result.report["seconds"]
        print(f"      {name}: {timings[name]:.1f} s")

    print("[4/4] writing results")
    truth = subject.fdg
    lesions = subject.lesion_masks
    rows = {}
    for name, image in results.items():
        metrics = phantom_metrics(image, truth, subject.labels, lesions, subject.white_matter)
        metrics.pop("crc_cold_lesions")  # the demo's lesions are all hot
        rows[name] = {**metrics, "seconds": timings[name]}
        save_nifti(out / f"{name.lower().replace('-', '_')}.nii.gz", image, grid.affine)
    save_nifti(out / "truth_fdg.nii.gz", truth, grid.affine)
    save_nifti(out / "mu_map.nii.gz", subject.mu_map, grid.affine)
    save_nifti(out / "t1.nii.gz", subject.t1, grid.affine)
    save_panel(out / "panel.png", {"ground truth": truth, **results, "PET-LiSch - truth": results["PET-LiSch"] - truth},
               title=f"diffrecon demo: subject {seed}, {args.count_level} counts", signed={"PET-LiSch - truth"},
               cmap="gray_r", centre=tuple(int(c) for c in np.argwhere(lesions[0]).mean(axis=0).round()),
               annotations={name: f"PSNR {row['psnr_db']:.1f} dB, SSIM {row['ssim']:.3f}" for name, row in rows.items()})
    (out / "metrics.json").write_text(json.dumps(rows, indent=2))
    table = ["| method | PSNR (dB) | SSIM | NRMSE (brain) | CRC (hot lesions) | white-matter CoV | time (s) |",
             "|---|---|---|---|---|---|---|"]
    table += [f"| {name} | {r['psnr_db']:.2f} | {r['ssim']:.3f} | {r['nrmse']:.3f} | {r['crc_hot_lesions']:.2f} | "
              f"{r['white_matter_cov']:.3f} | {r['seconds']:.1f} |" for name, r in rows.items()]
    (out / "metrics.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    print(f"results in {out.resolve()}: panel.png, metrics.md, *.nii.gz")

