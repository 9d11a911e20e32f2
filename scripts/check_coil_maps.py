"""How the ESPIRiT kernel width sets the quality of the coil maps, and what that costs the reconstructions.

Validation-split phantom slices scanned as in scripts/bench_mri.py (8 birdcage coils, a smooth phase, 30 dB, an 8%
fully sampled centre: a calibration region 10 samples wide), for each mask and each ESPIRiT kernel width: how well
the estimated maps match the true birdcage maps (the 1st percentile over the object of |Σ_c conj(Ŝ_c) S_c|, 1 for
maps equal up to one phase per voxel), and the PSNR of CG-SENSE and of DDS (its defaults, one sample) with those
maps. "rule" is the width ``sense_operator`` takes by default (a third of the calibration width, 3 to 6); "true"
uses the true maps (the bound that better estimation could reach).

    OMP_NUM_THREADS=1 python scripts/check_coil_maps.py --out docs/mri_bench/coil_maps.jsonl [--kernels true]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from diffrecon.benchmarks.mri import load_case, run
from diffrecon.benchmarks.records import read_lines
from diffrecon.physics.mri_coils import birdcage_maps, sense_operator
from diffrecon.physics.mri_operators import MRIOperator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[10000, 10001, 10002])
    parser.add_argument("--masks", nargs="+", default=["random:4", "random:8", "gaussian2d:8", "poisson:8"])
    parser.add_argument("--kernels", nargs="+", default=["rule", "3", "4", "6"])
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one per case and kernel (resumable)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    done = {(line["subject"], line["mask"], line["kernel"]) for line in read_lines(args.out)}
    for subject in args.subjects:
        for mask in args.masks:
            case = load_case("phantom", subject, mask, 0.08, "validation")
            true_maps = birdcage_maps(case.physics.shape, case.physics.n_coils)
            reference = np.asarray(case.reference)
            inside = torch.as_tensor(reference > 0.1 * reference.max())
            for kernel in args.kernels:
                if (subject, mask, kernel) in done:
                    continue
                if kernel == "true":
                    physics = MRIOperator(case.physics.mask, true_maps)
                else:
                    physics = sense_operator(case.data, case.physics.mask, None if kernel == "rule" else int(kernel))
                overlap = (physics.coil_maps.conj() * true_maps).sum(0).abs()[inside]
                line = {"subject": subject, "mask": mask, "kernel": kernel,
                        "overlap_p1": float(overlap.quantile(0.01)), "overlap_mean": float(overlap.mean())}
                for name in ("cg-sense", "dds"):
                    line[f"psnr_{name}"] = run(replace(case, physics=physics), name, {}, num_samples=1)["psnr_db"]
                with args.out.open("a") as stream:
                    stream.write(json.dumps(line) + "\n")
                print(json.dumps(line), flush=True)
    print(_table(read_lines(args.out), args.kernels))


def _table(lines: list[dict], kernels: list[str]) -> str:
    """Mean over subjects per mask and kernel: overlap 1st percentile, CG-SENSE and DDS PSNR."""
    rows = ["| mask | kernel | subjects | map overlap, 1st percentile | CG-SENSE PSNR | DDS PSNR |", "|---|---|---|---|---|---|"]
    for mask in dict.fromkeys(line["mask"] for line in lines):
        for kernel in kernels:
            chosen = [line for line in lines if line["mask"] == mask and line["kernel"] == kernel]
            if chosen:
                mean = {key: np.mean([line[key] for line in chosen]) for key in ("overlap_p1", "psnr_cg-sense",
                                                                                 "psnr_dds")}
                rows.append(f"| {mask} | {kernel} | {len(chosen)} | {mean['overlap_p1']:.3f} | "
                            f"{mean['psnr_cg-sense']:.2f} | {mean['psnr_dds']:.2f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
