"""Benchmark (and tune) PET reconstructions on brain phantoms: every configuration on every subject and noise
realisation, one JSON line each (resumable: configurations already in the output are skipped), then a table.

Tune on the validation split, report the test split (evaluation subjects; lesions of random shapes, hot and
cold, that no training subject has):

    python scripts/bench_pet.py --split validation --preset demo2d --count-level 10% --subjects 4 \\
        --runs '[["map-rdp", {"beta": 0.3}], ["pet-lisch", {"steps": 20, "iterations": 20}]]' --out tune.jsonl
    python scripts/bench_pet.py --split test --preset demo --count-level 1% --subjects 5 --noise-seeds 0 1 2 \\
        --runs "$(cat tuned_runs.json)" --out bench.jsonl --images bench_images

Out of the priors' family (evaluation only): ``--real`` scans, instead of phantoms, the real FDG brain base and the
SPM12 PET template on the demo grid (placed as scripts/check_prior_generalisation.py places them; μ-map: water in
the head; with ``--preset demo2d`` the axial slice of each with the most brain voxels) and scores NRMSE over the
brain, PSNR and SSIM:

    python scripts/bench_pet.py --split test --preset demo --count-level 1% --real --runs "$(cat tuned_runs.json)" \\
        --out real.jsonl [--prior candidate_prior_bundle]

Diffusion methods get the shipped pet_fdg_prior (or ``--prior``, a prior bundle folder) fitted to the grid (three
orientations in 3D, the axial prior for one slice) and draw ``--num-samples`` samples whose mean is scored. Per
line: NRMSE (brain), PSNR, SSIM, CRC of hot and cold lesions, white-matter CoV, network evaluations, seconds
(network, physics, all) and the process's peak memory so far. With ``--images``, the images are kept (float16) so
the table adds bias and variance across noise realisations. The table also gives the time of one network evaluation
and one forward + back projection measured in the same run, to compare wall time with NFE x network + projections.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffrecon.benchmarks.pet import REAL_BRAINS, real_brain_case, run, summarise
from diffrecon.benchmarks.records import done_runs, is_done, read_lines
from diffrecon.data.splits import subject_seeds
from diffrecon.io.demo_cases import simulated_pet_case
from diffrecon.pipeline import method_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, choices=("validation", "test"),
                        help="validation to tune, test to report")
    parser.add_argument("--preset", default="demo2d", choices=("demo", "demo2d"))
    parser.add_argument("--count-level", default="10%")
    parser.add_argument("--subjects", type=int, default=3, help="first subjects of the split")
    parser.add_argument("--noise-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--runs", required=True, help="JSON list of [method, settings] pairs")
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="JSON lines file (appended; done configurations skipped)")
    parser.add_argument("--images", help="folder to keep each mean image (for bias and variance)")
    parser.add_argument("--real", action="store_true", help="instead of phantoms, the real brains out of the "
                        "priors' family (REAL_BRAINS; evaluation only): NRMSE over the brain, PSNR, SSIM")
    parser.add_argument("--brains", nargs="+", choices=sorted(REAL_BRAINS), help="with --real: these brains only "
                        "(e.g. spm12_pet, the one with a T1, for MR-guided runs)")
    parser.add_argument("--prior", help="prior bundle folder for the diffusion methods (default: the shipped "
                        "pet_fdg_prior); part of each configuration's key")
    parser.add_argument("--pll-curve", help="PNG: NRMSE against the log-likelihood, MLEM iterations beside "
                                            "PET-LiSch's K (runs of mlem and pet-lisch with several iterations)")
    args = parser.parse_args()
    if args.brains and not args.real:
        parser.error("--brains chooses among the real brains: use it with --real")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    done = done_runs(read_lines(out))
    runs = json.loads(args.runs)
    subjects = (args.brains or list(REAL_BRAINS)) if args.real else subject_seeds(args.split, args.subjects)
    for seed in subjects:
        for noise_seed in args.noise_seeds:
            case = None
            for name, settings in runs:
                key = json.dumps([args.preset, args.count_level, seed, noise_seed, name, settings, args.num_samples,
                                  *([args.prior] if args.prior else [])])
                if is_done(done, key, name, settings):
                    continue
                if case is None:
                    case = (real_brain_case(seed, args.count_level, noise_seed, args.preset) if args.real else
                            simulated_pet_case(seed, args.preset, args.count_level, lesions=3, lesion_kinds="mixed",
                                               noise_seed=noise_seed, split=args.split))
                line, image = run(case, name, settings, args.num_samples, noise_seed, args.prior)
                line.update(key=key, seed=seed, noise_seed=noise_seed)
                if args.images:
                    Path(args.images).mkdir(parents=True, exist_ok=True)
                    line["image"] = str(Path(args.images) / f"{abs(hash(key)) % 10 ** 12}.npy")
                    np.save(line["image"], image.astype(np.float16))
                with out.open("a") as stream:
                    stream.write(json.dumps(line) + "\n")
                print(f"{seed} {noise_seed} {name} {settings}: NRMSE {line['nrmse']:.4f} "
                      f"CRC hot {line.get('crc_hot_lesions', np.nan):.2f} ({line['seconds']:.1f} s)", flush=True)
    print(unit_costs(args.preset, args.threads))
    print(summarise(read_lines(out)))
    if args.pll_curve:
        plot_pll_curve(read_lines(out), Path(args.pll_curve))


def unit_costs(preset: str, threads: int) -> str:
    """Seconds of one network evaluation of the fitted prior and of one forward + back projection."""
    case = simulated_pet_case(20000, preset, "10%", lesions=0)
    prior = method_inputs("pet-lisch", case)["prior"]
    image = torch.as_tensor(case.reference)[None]
    timings = {}
    for part, work in (("network evaluation", lambda: prior.predict_noise(torch.randn_like(image), 500)),
                       ("forward + back projection", lambda: case.physics.A_adjoint(case.physics.A(image)))):
        with torch.no_grad():
            work()
            start = time.perf_counter()
            for _ in range(3):
                work()
        timings[part] = (time.perf_counter() - start) / 3
    return (f"{preset}, {threads} thread(s), 1 sample: " +
            ", ".join(f"one {part} {seconds:.3f} s" for part, seconds in timings.items()))


def plot_pll_curve(lines: list[dict], path: Path) -> None:
    """NRMSE against the mean final log-likelihood for MLEM (per iteration count) and PET-LiSch (per K): at equal
    K both have the same likelihood, so the curves compare images of equal data fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, label in (("mlem", "MLEM (iterations)"), ("pet-lisch", "PET-LiSch (K)")):
        points = {}
        for line in lines:
            if line["method"] == method and "log_likelihood" in line:
                points.setdefault(line["settings"]["iterations"], []).append((line["log_likelihood"], line["nrmse"]))
        ks = sorted(points)
        x = [np.mean([p[0] for p in points[k]]) for k in ks]
        y = [np.mean([p[1] for p in points[k]]) for k in ks]
        ax.plot(x, y, "o-", label=label)
        for k, xi, yi in zip(ks, x, y):
            ax.annotate(str(k), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("Poisson log-likelihood (mean over subjects)")
    ax.set_ylabel("NRMSE (brain)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
