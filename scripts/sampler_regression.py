"""Regression check of the diffusion methods across a refactor: run PET-DDS, PET-LiSch, DDS and Score-MRI (every
variant) with the shipped priors on small cases and fixed seeds, and store or compare their samples.

    python scripts/sampler_regression.py --record before.pt     # before changing the code
    python scripts/sampler_regression.py --compare before.pt    # after: max |difference| / image maximum per run

A run differs when that ratio exceeds 1e-5 (``--tolerance``). Runs are named; ``--only`` picks some.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from diffrecon.io.demo_cases import simulated_mri_case, simulated_pet_case
from diffrecon.methods import build_method
from diffrecon.physics.mri_masks import sampling_mask
from diffrecon.physics.mri_simulation import simulate_kspace
from diffrecon.priors.bundle import load_bundle_prior, load_volume_prior


def pet_runs() -> dict[str, Callable[[], torch.Tensor]]:
    case2d = simulated_pet_case(20000, preset="demo2d", count_level="10%")
    prior2d = load_volume_prior("pet_fdg_prior", case2d.physics.grid.shape)

    def run(case, prior, name, **options):
        method = build_method(name, prior=prior, progress=False, **options)
        return method(case.data, case.physics, num_samples=2, generator=torch.Generator().manual_seed(5)).samples

    runs = {
        "pet-dds-default-2d": lambda: run(case2d, prior2d, "pet-dds"),
        "pet-dds-noise-2d": lambda: run(case2d, prior2d, "pet-dds", steps=4, warm_start=None, eta=0.5),
        "pet-lisch-default-2d": lambda: run(case2d, prior2d, "pet-lisch"),
        "pet-lisch-mlem-2d": lambda: run(case2d, prior2d, "pet-lisch", steps=4, schedule_subsets=1, subsets=1,
                                         iterations=6),
    }

    def volume():
        case3d = simulated_pet_case(20000, preset="demo", count_level="1%")
        prior3d = load_volume_prior("pet_fdg_prior", case3d.physics.grid.shape)
        return case3d, prior3d

    runs["pet-dds-rdpz-3d"] = lambda: run(*volume(), "pet-dds", steps=2, rdp_z=0.5)
    runs["pet-lisch-3d"] = lambda: run(*volume(), "pet-lisch", steps=2)
    return runs


def mri_runs() -> dict[str, Callable[[], torch.Tensor]]:
    priors = {form: load_bundle_prior("mr_t1_prior", form) for form in ("vp", "ve")}
    multi = simulated_mri_case(20001, coils=4, acceleration=4)
    image = torch.as_tensor(multi.reference, dtype=torch.float32)
    image = image * torch.exp(1j * torch.linspace(-1, 1, image.shape[0]))[:, None]
    mask = sampling_mask("random", tuple(image.shape), 4, center_fraction=0.08, seed=1).mask
    single = simulate_kspace(image, mask, snr_db=30, seed=2)
    volume = simulated_mri_case(20002, coils=2, slices=8, mask="poisson", acceleration=4, center_fraction=0.5)

    def run(data, operator, name, **options):
        form = "ve" if name == "score-mri" else "vp"
        method = build_method(name, prior=priors[form], progress=False, **options)
        return method(data, operator, num_samples=2, generator=torch.Generator().manual_seed(7)).samples

    return {
        "dds-multi": lambda: run(multi.data, multi.physics, "dds", steps=6),
        "dds-noise-single": lambda: run(*single, "dds", steps=5, warm_start=None, eta=0.5),
        "dds-real-single": lambda: run(*single, "dds", steps=4, real_valued=True, plane_tv=0.0),
        "dds-volume": lambda: run(volume.data, volume.physics, "dds", steps=4, tv_iterations=2),
        "score-mri-hybrid": lambda: run(multi.data, multi.physics, "score-mri", steps=6, sense_every=2),
        "score-mri-ssos": lambda: run(multi.data, multi.physics, "score-mri", steps=4, variant="ssos"),
        "score-mri-complex": lambda: run(*single, "score-mri", steps=4, plane_tv=0.001),
        "score-mri-real": lambda: run(*single, "score-mri", steps=4, variant="real", warm_start=None),
        "score-mri-volume": lambda: run(volume.data, volume.physics, "score-mri", steps=3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--record", help="store the samples of every run in this file")
    action.add_argument("--compare", help="compare every run with the samples stored in this file")
    parser.add_argument("--only", nargs="+", help="run only these names")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = {**pet_runs(), **mri_runs()}
    names = args.only or list(runs)
    stored = torch.load(args.compare) if args.compare else {}
    results, rows = {}, []
    for name in names:
        start = time.perf_counter()
        samples = runs[name]()
        seconds = time.perf_counter() - start
        results[name] = samples
        row = {"run": name, "seconds": round(seconds, 1)}
        if args.compare:
            before = stored[name]
            peak = before.abs().max().item()
            row["max_difference_over_max"] = (samples - before).abs().max().item() / peak
            row["same"] = row["max_difference_over_max"] <= args.tolerance
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.record:
        torch.save(results, args.record)


if __name__ == "__main__":
    main()
