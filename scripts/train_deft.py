"""A first training of PET-DEFT's h-network on single slices (issue 31, in progress): phantom training-split
subjects on the `demo2d` scanner, fresh Poisson counts at every visit (SimulatePETd), ε-matching (deft_loss) with
Adam, then validation slices reconstructed by PET-DEFT, by its own unconditional estimate (no correction) and by
PET-DDS. Not the bundle's trainer (to come: bundles/pet_deft/train.json on MONAI's SupervisedTrainer); this script
checks that the method learns before that is built.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/train_deft.py --subjects 32 --steps 3000 \\
        --out runs/deft_demo2d/model_axial.pt --log runs/deft_demo2d/log.jsonl
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffrecon.data.phantoms import make_subject
from diffrecon.data.splits import subject_seeds
from diffrecon.io.demo_cases import simulated_pet_case
from diffrecon.methods import build_method
from diffrecon.methods.pet_deft import PETDEFT, correction_model, deft_loss, h_network
from diffrecon.methods.spaces import PETSpace
from diffrecon.metrics import nrmse
from diffrecon.physics.geometry import get_preset
from diffrecon.priors.bundle import fit_prior
from diffrecon.priors.weights import save_weights
from diffrecon.transforms.acquisition import SimulatePETd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--count-level", default="1%")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    torch.manual_seed(0)
    preset = get_preset("demo2d")
    items = [{"image": s.fdg, "mu_map": s.mu_map} for s in
             (make_subject(seed, preset.grid, split="train") for seed in subject_seeds("train", args.subjects))]
    scan = SimulatePETd(preset="demo2d", count_level=args.count_level).set_random_state(seed=0)
    first = scan(items[0])
    prior = fit_prior("pet_fdg_prior", first["physics"], "vp")
    correction = correction_model(prior, {name: h_network() for name in prior.priors})
    share = sum(p.numel() for p in correction.parameters()) / sum(p.numel() for p in prior.parameters())
    optimiser = torch.optim.Adam(correction.parameters(), lr=args.learning_rate)
    space = PETSpace("auto", 8)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("w") as log:
        log.write(json.dumps({"h_parameters_share_of_prior": share}) + "\n")
        start, losses = time.perf_counter(), []
        for step in range(args.steps):
            item = scan(items[step % len(items)])
            call = space.prepare(item["sinogram"], item["physics"], prior, 1, None)
            clean = space.to_network(torch.as_tensor(item["image"])[None], call)
            optimiser.zero_grad()
            loss = deft_loss(prior, correction, clean, call, space, torch.Generator().manual_seed(step))
            loss.backward()
            optimiser.step()
            losses.append(float(loss))
            if (step + 1) % 100 == 0:
                line = {"step": step + 1, "loss": float(np.mean(losses[-100:])),
                        "seconds": time.perf_counter() - start}
                log.write(json.dumps(line) + "\n")
                log.flush()
                print(line, flush=True)
        save_weights(args.out, correction.priors["axial"].network)
        for seed in subject_seeds("validation", args.validation):
            case = simulated_pet_case(seed, "demo2d", args.count_level, lesions=2, lesion_kinds="mixed",
                                      split="validation")
            brain = np.asarray(case.images["labels"]) > 0
            figures = {"seed": seed}
            for name, method in (("pet-deft", PETDEFT(prior, correction, progress=False)),
                                 ("unconditional", PETDEFT(prior, None, progress=False)),
                                 ("pet-dds", build_method("pet-dds", prior=prior, progress=False))):
                result = method(case.data, case.physics, generator=torch.Generator().manual_seed(0))
                figures[name] = nrmse(result.mean.numpy(), np.asarray(case.reference), brain)
            log.write(json.dumps(figures) + "\n")
            print(figures, flush=True)


if __name__ == "__main__":
    main()
