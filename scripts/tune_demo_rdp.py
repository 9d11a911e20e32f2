"""Choose the demo's RDP strength β on training-split subjects (never the test subjects the demo shows).

    python scripts/tune_demo_rdp.py --count-level 1% --betas 1 4 16 64

Prints brain NRMSE and white-matter CoV of MAP-RDP (10 iterations x 8 subsets) per β, averaged over subjects.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from diffrecon.classical.penalties import RelativeDifferencePenalty
from diffrecon.classical.pet import map_em, osem
from diffrecon.data.phantoms import LABELS, make_subject
from diffrecon.data.splits import subject_seeds
from diffrecon.metrics import background_cov, nrmse
from diffrecon.physics.geometry import get_preset
from diffrecon.physics.pet_simulation import simulate_pet
from diffrecon.physics.projector import PETProjector


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count-level", default="1%")
    parser.add_argument("--betas", type=float, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--subjects", type=int, default=2)
    args = parser.parse_args()
    preset = get_preset("demo")
    projector = PETProjector(preset.scanner, preset.grid)
    scores: dict[str, list[tuple[float, float]]] = {}
    for seed in subject_seeds("train", args.subjects):
        subject = make_subject(seed, preset.grid, split="train")
        brain = np.isin(subject.labels, [LABELS["csf"], LABELS["grey_matter"], LABELS["white_matter"]])
        white = subject.white_matter > 0.9
        simulation = simulate_pet(torch.as_tensor(subject.fdg), torch.as_tensor(subject.mu_map), preset.scanner,
                                  preset.grid, count_level=args.count_level, seed=seed, projector=projector)
        images = {"OSEM 4x8": osem(simulation.measured, simulation.model, 4, 8, progress=False).image}
        for beta in args.betas:
            penalty = RelativeDifferencePenalty(beta, preset.grid.shape, preset.grid.voxel_size_mm)
            images[f"MAP-RDP beta={beta:g}"] = map_em(simulation.measured, simulation.model, penalty, 10, 8,
                                                      progress=False).image
        for name, image in images.items():
            image = image.numpy()
            scores.setdefault(name, []).append((nrmse(image, subject.fdg, brain), background_cov(image, white)))
    print(f"count level {args.count_level}, training subjects {subject_seeds('train', args.subjects)}")
    for name, values in scores.items():
        error, cov = np.mean(values, axis=0)
        print(f"{name:22s} brain NRMSE {error:.3f}  white-matter CoV {cov:.3f}")


if __name__ == "__main__":
    main()
