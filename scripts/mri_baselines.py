"""NRMSE of zero-filled, CG-SENSE and TV on the real 2-coil Siemens GRE k-space, retrospectively undersampled.

Reference: RSS of the fully sampled k-space (readout oversampling cropped, 160 x 160). For each mask kind and
acceleration, the mean and range of NRMSE over seeds; every method uses its registry default settings;
the case is loaded by ``diffrecon.io.cases.load_mri_case``, as ``diffrecon recon`` does.

    python scripts/mri_baselines.py [--data ../shared/data/twix_gre_siemens/gre_kspace_cha_lin_col.npy]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from diffrecon.io.cases import load_mri_case
from diffrecon.methods import build_method, method_names
from diffrecon.metrics import nrmse

METHODS = method_names("MR")
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/twix_gre_siemens/gre_kspace_cha_lin_col.npy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="twix k-space .npy (coil, line, column)")
    parser.add_argument("--masks", nargs="+", default=["random", "equispaced", "gaussian1d"])
    parser.add_argument("--accelerations", nargs="+", type=float, default=[4, 8])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--center-fraction", type=float, default=0.08)
    args = parser.parse_args()

    methods = {name: build_method(name) for name in METHODS}
    print(", ".join(method.description() for method in methods.values()) +
          f"; centre fraction {args.center_fraction}, seeds 0-{args.seeds - 1}; NRMSE mean [min, max]\n")
    print("| mask | R | " + " | ".join(METHODS) + " | time per slice (s) |")
    print("|---|---|" + "---|" * (len(METHODS) + 1))
    for kind in args.masks:
        for acceleration in args.accelerations:
            errors = {method: [] for method in METHODS}
            start = time.perf_counter()
            for seed in range(args.seeds):
                case = load_mri_case(args.data, layout="cyx", readout_oversampling=2, mask=kind,
                                     acceleration=acceleration, center_fraction=args.center_fraction, seed=seed)
                for name, method in methods.items():
                    errors[name].append(nrmse(method(case.data, case.physics).mean.abs(), case.reference))
            seconds = (time.perf_counter() - start) / args.seeds
            cells = [f"{np.mean(e):.3f} [{np.min(e):.3f}, {np.max(e):.3f}]" for e in errors.values()]
            print(f"| {kind} | {acceleration:g} | " + " | ".join(cells) + f" | {seconds:.1f} |")


if __name__ == "__main__":
    main()
