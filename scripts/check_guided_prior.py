"""Does an MR-conditioned PET prior use the T1? Denoising error of its noise prediction on validation slices with
the subject's T1, with the T1 zeroed (the unconditional mode that guidance subtracts, and that w = 0 without an MR
samples from) and of the shipped unconditional prior, at several noise levels (issue 32's quality check).

    OMP_NUM_THREADS=1 nice -n 10 python scripts/check_guided_prior.py --bundle bundles/pet_fdg_mr_prior \\
        --orientation axial --subjects 8 --out guided_check.json

(``--bundle`` a copy of the bundle with a training checkpoint's EMA network in models/ checks a run under way.)

Slices: the validation slices of the training configs (FDG of the wide phantom population and its T1, normalised
as in training: emission mean of the volume, T1 peak), three per subject; the noise is seeded, so runs compare.
A conditional prior that uses the T1 has a lower error with it than without; its unconditional mode should be no
worse than the shipped prior (it is fine-tuned from it).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diffrecon.data.datasets import paired_training_items, validation_slices
from diffrecon.priors import load_bundle_prior
from diffrecon.transforms import EmissionNormalized, MagnitudePeakNormalized

TIMESTEPS = (50, 200, 400, 600, 800)


def slices(subjects: int, orientation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, h, w) FDG slices and their (N, 1, h, w) T1 slices (the condition channel) of the first validation
    subjects, normalised as in training."""
    items = paired_training_items("phantoms", subjects, split="validation")
    normalise = [EmissionNormalized(keys="image"), MagnitudePeakNormalized(keys="mr")]
    for transform in normalise:
        items = [transform(item) for item in items]
    pairs = validation_slices(items, orientation, keys=("image", "mr"))
    pet = torch.stack([torch.as_tensor(np.asarray(p["image"]), dtype=torch.float32) for p in pairs])[:, 0]
    mr = torch.stack([torch.as_tensor(np.asarray(p["mr"]), dtype=torch.float32) for p in pairs])
    return pet, mr


def denoising_errors(prior, pet: torch.Tensor, condition: torch.Tensor | None, seed: int = 0) -> list[float]:
    """Mean squared error of the predicted noise at each of ``TIMESTEPS`` (seeded noise)."""
    errors = []
    for t in TIMESTEPS:
        noise = torch.randn(pet.shape, generator=torch.Generator().manual_seed(seed + t))
        alpha, sigma = (float(v) for v in prior.schedule.alpha_sigma(t))
        with torch.no_grad():
            predicted = prior.predict_noise(alpha * pet + sigma * noise, t, condition)
        errors.append(float((predicted - noise).pow(2).mean()))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="pet_fdg_mr_prior", help="the conditional prior bundle (name or folder)")
    parser.add_argument("--orientation", default="axial", choices=("axial", "coronal", "sagittal"))
    parser.add_argument("--unconditional", default="pet_fdg_prior", help="the shipped unconditional prior bundle")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--out", help="JSON file for the table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    conditional = load_bundle_prior(args.bundle, args.orientation)
    pet, mr = slices(args.subjects, args.orientation)
    rows = {"conditional, with T1": denoising_errors(conditional, pet, mr)}
    rows["conditional, T1 zeroed"] = denoising_errors(conditional, pet, torch.zeros_like(mr))
    rows["shipped unconditional"] = denoising_errors(load_bundle_prior(args.unconditional, args.orientation), pet, None)
    print(f"| noise prediction MSE ({len(pet)} validation slices) | " + " | ".join(f"t = {t}" for t in TIMESTEPS)
          + " | mean |")
    print("|---" * (len(TIMESTEPS) + 2) + "|")
    for name, errors in rows.items():
        print(f"| {name} | " + " | ".join(f"{e:.4f}" for e in errors) + f" | {np.mean(errors):.4f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"timesteps": TIMESTEPS, "slices": len(pet), "bundle": str(args.bundle),
                                              "errors": rows}, indent=2))


if __name__ == "__main__":
    main()
