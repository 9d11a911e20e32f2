"""NRMSE of zero-filled, CG-SENSE and TV on the real 2-coil Siemens GRE k-space, retrospectively undersampled.

Reference: RSS of the fully sampled k-space (readout oversampling cropped, 160 x 160). For each mask kind and
acceleration, the mean and range of NRMSE over seeds; every method uses its package default settings.

    python scripts/mri_baselines.py [--data ../shared/data/twix_gre_siemens/gre_kspace_cha_lin_col.npy]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from diffrecon.classical.mri_methods import DEFAULT_ITERATIONS, DEFAULT_TV_LAM, METHODS, reconstruct_mri
from diffrecon.io.kspace import read_kspace
from diffrecon.metrics import nrmse
from diffrecon.physics.mri_coils import rss, sense_operator
from diffrecon.physics.mri_fft import ifft_centered, remove_readout_oversampling
from diffrecon.physics.mri_masks import sampling_mask

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/twix_gre_siemens/gre_kspace_cha_lin_col.npy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="twix k-space .npy (coil, line, column)")
    parser.add_argument("--masks", nargs="+", default=["random", "equispaced", "gaussian1d"])
    parser.add_argument("--accelerations", nargs="+", type=float, default=[4, 8])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--center-fraction", type=float, default=0.08)
    args = parser.parse_args()

    full = remove_readout_oversampling(read_kspace(args.data, layout="cyx").kspace, dim=1, factor=2)
    reference = rss(ifft_centered(full))
    print(f"CG-SENSE {DEFAULT_ITERATIONS['cg-sense']} iterations, TV lam {DEFAULT_TV_LAM} x "
          f"{DEFAULT_ITERATIONS['tv']} PDHG iterations, centre fraction {args.center_fraction}, "
          f"seeds 0-{args.seeds - 1}; NRMSE mean [min, max]\n")
    print("| mask | R | " + " | ".join(METHODS) + " | time per slice (s) |")
    print("|---|---|" + "---|" * (len(METHODS) + 1))
    for kind in args.masks:
        for acceleration in args.accelerations:
            errors = {method: [] for method in METHODS}
            start = time.perf_counter()
            for seed in range(args.seeds):
                mask = sampling_mask(kind, tuple(full.shape[1:]), acceleration, args.center_fraction, seed=seed).mask
                measured = full * mask
                operator = sense_operator(measured, mask)
                for method in METHODS:
                    image = reconstruct_mri(method, measured, operator).image.abs()
                    errors[method].append(nrmse(image, reference))
            seconds = (time.perf_counter() - start) / args.seeds
            cells = [f"{np.mean(e):.3f} [{np.min(e):.3f}, {np.max(e):.3f}]" for e in errors.values()]
            print(f"| {kind} | {acceleration:g} | " + " | ".join(cells) + f" | {seconds:.1f} |")


if __name__ == "__main__":
    main()
