"""Benchmark (and tune) MRI reconstructions: every configuration on every case, one JSON line each (resumable:
configurations already in the output are skipped), then a table.

Cases: phantom T1 slices (128 x 128, 1.5 mm, a smooth phase, 8 simulated birdcage coils, 30 dB; coil maps by
ESPIRiT as for measured data) of the validation split (tuning) or the test split (evaluation), undersampled by
``--masks`` given as KIND:R (random = uniform random lines, gaussian1d, gaussian2d, poisson, equispaced); and
with ``--twix``, the real 2-coil Siemens GRE scan (../shared/data/twix_gre_siemens, 160 x 160 after removing
the readout oversampling) undersampled retrospectively, its fully sampled RSS image the reference (evaluation
only: it is never used to tune). With ``--real``, real brain T1 images out of the prior's family take the
phantoms' place (evaluation only): the central axial slice of the SPM12 single-subject T1 and of the two BRAINS T1
scans, placed on the prior's grid as scripts/check_prior_generalisation.py places them, then scanned as the
phantoms (phase, coils, noise, masks).

    python scripts/bench_mri.py --split validation --subjects 3 --masks random:4 random:8 \\
        --runs '[["tv", {"lam": 0.003}], ["dds", {"gamma": 10}]]' --out tune_mri.jsonl
    python scripts/bench_mri.py --split test --subjects 5 --masks random:4 random:8 gaussian2d:8 poisson:8 \\
        --twix 4 8 --runs "$(cat tuned_mri_runs.json)" --out bench_mri.jsonl --curve psnr_steps.png
        [--prior candidate_prior_bundle]
    python scripts/bench_mri.py --split test --real --masks random:4 random:8 --runs ... --out real.jsonl
    python scripts/bench_mri.py --split validation --slices 32 --center-fraction 0.25 --masks poisson:4 ...

With ``--slices N`` the phantoms are volumes of N central axial slices scanned in 3D (8 coils on one ring, 3D
k-space, the 2D masks undersampling the two phase-encode axes y and z, ESPIRiT maps from the central cube), which
the diffusion methods reconstruct slice by slice with their coupling along z (``slice_tv``).

Diffusion methods use the shipped mr_t1_prior or ``--prior`` (a prior bundle folder, part of each key).

Per line: PSNR, SSIM, NRMSE of the magnitude against the reference (whole image; PSNR over the reference's
maximum), network evaluations (NFE, sequential, per sample) and 2D images through the network, seconds
(network, physics, all), the data residual. The table ends with the time of one network evaluation of one
128 x 128 image and one A + Aᴴ of 8-coil data measured in the same run. ``--curve`` plots PSNR against NFE for
every diffusion method and variant with several step counts (one-sample runs).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffrecon.benchmarks.mri import FIGURES, REAL_T1, load_case, run
from diffrecon.benchmarks.records import done_runs, is_done, read_lines, uncertainty_cells, uncertainty_header
from diffrecon.data.splits import subject_seeds
from diffrecon.io.demo_cases import simulated_mri_case
from diffrecon.methods.registry import method_parameters
from diffrecon.pipeline import method_inputs

FLOOR_DB = 10.0  # the curve's lowest PSNR; runs below it are marked, not drawn to scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, choices=("validation", "test"),
                        help="validation to tune, test to report")
    parser.add_argument("--subjects", type=int, default=3, help="first subjects of the split")
    parser.add_argument("--masks", nargs="*", default=["random:4", "random:8"], help="KIND:R for the phantoms")
    parser.add_argument("--twix", type=float, nargs="*", default=[], help="accelerations of the real twix scan "
                                                                          "(random lines; test split only)")
    parser.add_argument("--real", action="store_true", help="real brain T1 slices (REAL_T1) instead of the "
                        "phantoms, scanned alike; evaluation only")
    parser.add_argument("--center-fraction", type=float, default=0.08)
    parser.add_argument("--slices", type=int, default=1, help="phantom volumes of this many central axial slices "
                        "(3D k-space; 2D masks undersample y and z; part of each key) instead of single slices")
    parser.add_argument("--runs", required=True, help="JSON list of [method, settings] pairs")
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="JSON lines file (appended; done configurations skipped)")
    parser.add_argument("--prior", help="prior bundle folder for the diffusion methods (default: the shipped "
                        "mr_t1_prior); part of each configuration's key")
    parser.add_argument("--curve", help="PNG: PSNR against NFE of the diffusion runs")
    args = parser.parse_args()
    if (args.twix or args.real) and args.split != "test":
        parser.error("--twix and --real are evaluation data: use them with --split test only")
    if args.slices > 1 and (args.twix or args.real):
        parser.error("--slices: volumes are simulated from the phantoms only (not with --twix or --real)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    done = done_runs(read_lines(out))
    runs = json.loads(args.runs)
    subjects = [("real", name) for name in REAL_T1] if args.real else [
        ("phantom", seed) for seed in subject_seeds(args.split, args.subjects)]
    cases = [(source, seed, mask) for mask in args.masks for source, seed in subjects]
    cases += [("twix", 0, f"random:{r:g}") for r in args.twix]
    for source, seed, mask in cases:
        case = None
        for name, settings in runs:
            key = json.dumps([source, seed, mask, args.center_fraction, name, settings, args.num_samples,
                              *([args.prior] if args.prior else []), *([args.slices] if args.slices > 1 else [])])
            if is_done(done, key, name, settings):
                continue
            if case is None:
                case = load_case(source, seed, mask, args.center_fraction, args.split, args.slices)
            line = run(case, name, settings, args.num_samples, args.prior)
            line.update(key=key, source=source, seed=seed, mask=mask, slices=args.slices)
            with out.open("a") as stream:
                stream.write(json.dumps(line) + "\n")
            print(f"{source} {seed} {mask} {name} {settings}: PSNR {line['psnr_db']:.2f} NRMSE {line['nrmse']:.4f} "
                  f"({line['seconds']:.1f} s)", flush=True)
    print(summarise(read_lines(out)))
    print(unit_costs(args.threads))
    if args.curve:
        plot_curve(read_lines(out), Path(args.curve))


def summarise(lines: list[dict]) -> str:
    """Markdown table of mean figures per case kind and configuration (best PSNR first per kind)."""
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    for line in lines:
        key = json.loads(line["key"])
        run_name = json.dumps(key[4:])  # method, settings, samples[, prior]
        groups.setdefault((line["source"], line["mask"]), {}).setdefault(run_name, []).append(line)
    rows = ["| data, mask | method, settings, samples | n | PSNR | SSIM | NRMSE | NFE | network images | "
            f"s (network, physics) | {uncertainty_header()} |", "|---" * (9 + len(uncertainty_header().split(" | ")))
            + "|"]
    for (source, mask), runs in sorted(groups.items()):
        for run_name, members in sorted(runs.items(), key=lambda item: -np.mean([m["psnr_db"] for m in item[1]])):
            mean = {k: float(np.mean([m.get(k) or 0.0 for m in members])) for k in FIGURES}
            rows.append(f"| {source} {mask} | {run_name} | {len(members)} | {mean['psnr_db']:.2f} | "
                        f"{mean['ssim']:.3f} | {mean['nrmse']:.4f} | {mean['network_evaluations']:.0f} | "
                        f"{mean['network_images']:.0f} | {mean['seconds']:.1f} ({mean['seconds_network']:.1f}, "
                        f"{mean['seconds_physics']:.1f}) | {uncertainty_cells(members)} |")
    return "\n".join(rows)


def unit_costs(threads: int) -> str:
    """Seconds of one network evaluation of one 128 x 128 image and of one A + Aᴴ of the 8-coil demo case."""
    case = simulated_mri_case()
    prior = method_inputs("dds", case)["prior"]
    image = torch.randn(1, 128, 128)
    timings = {}
    for part, work in (("network evaluation (one 128 x 128 image)", lambda: prior.predict_noise(image, 500)),
                       ("A + A^H (8 coils)", lambda: case.physics.A_adjoint(case.physics.A(image + 0j)))):
        with torch.no_grad():
            work()
            start = time.perf_counter()
            for _ in range(5):
                work()
        timings[part] = (time.perf_counter() - start) / 5
    return f"{threads} thread(s): " + ", ".join(f"one {part} {seconds:.4f} s" for part, seconds in timings.items())


def plot_curve(lines: list[dict], path: Path) -> None:
    """PSNR against NFE per (data, mask, method, variant, warm start) of the one-sample diffusion runs with
    several step counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[int, list[float]]] = {}
    for line in lines:
        if not line["network_evaluations"] or line["num_samples"] != 1:
            continue
        label = f"{line['source']} {line['mask']} {line['method']} {line.get('variant') or ''}".strip()
        warm = line.get("resolved", line["settings"]).get("warm_start",
                                                           method_parameters(line["method"])["warm_start"].default)
        label += f" warm {warm}" if warm else ""
        curves.setdefault(label, {}).setdefault(line["network_evaluations"], []).append(line["psnr_db"])
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for label, points in sorted(curves.items()):
        if len(points) > 1:
            nfe = sorted(points)
            psnr_db = np.array([np.mean(points[n]) for n in nfe])
            line, = axes.plot(nfe, np.maximum(psnr_db, FLOOR_DB), marker="o", label=label)
            below = psnr_db < FLOOR_DB  # diverged runs: drawn at the floor with a downward marker
            axes.plot(np.asarray(nfe)[below], np.full(below.sum(), FLOOR_DB), "v", color=line.get_color(),
                      markersize=10)
    axes.set_xscale("log")
    axes.set_xlabel("network evaluations per sample (NFE)")
    axes.set_ylabel(f"PSNR (dB); ▼: below {FLOOR_DB:g} dB (diverged)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
