"""Quality check of the shipped priors: unconditional samples (PNG grid in the bundle docs) and their tissue
contrast against the training images, measured the same way (``diffrecon.priors.quality.tissue_ratio``).

    nice -n 10 python scripts/check_priors.py pet-axial pet-coronal pet-sagittal mr-vp mr-ve pet-volume

Writes bundles/<bundle>/docs/<name>_samples.png and quality_<name>.json. A prior passes when the median
ratio of its samples is within 15% of the training images' median ratio; the figure is written either way.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffrecon.data.datasets import phantom_items
from diffrecon.io.figures import save_panel, save_sample_grid
from diffrecon.priors import load_bundle_prior, sample
from diffrecon.priors.quality import median_tissue_ratio, nearest_correlation
from diffrecon.priors.runs import PRIORS  # the names of the training command, scripts/train_priors.py
from diffrecon.transforms import EmissionNormalize, foreground_slices, take_slice

ROOT = Path(__file__).resolve().parents[1]

# name -> (bundle, shipped model, slice orientation), one per shipped model (the base runs; candidate runs
# export to the same models); mr-ve is the VE form of the mr-vp network
CHECKS = {**{name: (run.bundle, run.model or run.run, run.overrides.get("orientation", "axial"))
             for name, run in PRIORS.items() if not run.configs}, "mr-ve": ("mr_t1_prior", "ve", "axial")}

GRIDS = {"pet_fdg_prior": ("fdg", None, None, {"axial": (64, 72), "coronal": (64, 56), "sagittal": (72, 56)}),
         "mr_t1_prior": ("t1", (128, 128, 112), (1.5, 1.5, 1.5), {"axial": (128, 128)})}
TOLERANCE = 0.15


def reference_slices(bundle: str, orientation: str, n_subjects: int, split: str) -> np.ndarray:
    """Every foreground slice of the first subjects of ``split``, normalised as in training (PET: emission
    mean of the volume; MR: maximum of the slice)."""
    contrast, shape, voxel, _ = GRIDS[bundle]
    items = phantom_items(n_subjects, contrast, shape, voxel, split=split,
                          cache_dir=ROOT / "bundles" / bundle / "runs" / "phantom_cache")
    stack = []
    for item in items:
        volume = EmissionNormalize()(item["image"]) if contrast != "t1" else item["image"]
        stack += [take_slice(volume, orientation, i)[0] for i in foreground_slices(volume, orientation)]
    stack = np.stack(stack)
    return stack / stack.max(axis=(1, 2), keepdims=True) if contrast == "t1" else stack


def check(name: str, n_samples: int, steps: int, n_subjects: int) -> dict:
    bundle, value, orientation = CHECKS[name]
    prior = load_bundle_prior(bundle, value)
    training = reference_slices(bundle, orientation, n_subjects, "train")
    validation = reference_slices(bundle, orientation, 2, "validation")
    # ancestral (DDPM-type) steps for VP, predictor-corrector for VE, with the denoised estimate kept in the
    # training data's range (PET: up to the largest normalised training value times the largest random
    # factor 1.5; MR: [0, 1])
    method = "pc" if prior.schedule.kind == "ve" else "ddpm"
    clip = (0.0, float(training.max()) * (1.5 if bundle == "pet_fdg_prior" else 1.0))
    start = time.perf_counter()
    samples = sample(prior, (n_samples, *GRIDS[bundle][3][orientation]), steps=steps, method=method,
                     generator=torch.Generator().manual_seed(0), clip=clip)
    seconds = time.perf_counter() - start
    docs = ROOT / "bundles" / bundle / "docs"
    save_sample_grid(docs / f"{value}_samples.png", samples, f"{value}: unconditional samples")
    sample_ratio, measured = median_tissue_ratio(samples.numpy())
    train_ratio, n_train = median_tissue_ratio(training)
    result = {"prior": name, "method": method, "steps": steps, "clip": clip, "samples": n_samples,
              "sampling_seconds": seconds, "sample_ratio": sample_ratio, "samples_measured": measured,
              "training_ratio": train_ratio, "training_slices": n_train,
              "relative_difference": sample_ratio / train_ratio - 1,
              "sample_nearest_correlation_median": float(np.median(nearest_correlation(samples, training))),
              "validation_nearest_correlation_median": float(np.median(nearest_correlation(validation, training))),
              "sample_min": float(samples.min()), "sample_max": float(samples.max())}
    result["passes_ratio_check"] = abs(result["relative_difference"]) <= TOLERANCE
    (docs / f"quality_{value}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def check_volume(steps: int) -> dict:
    """One 3D sample on the demo grid from the tri-planar score of the three PET priors (smoke test)."""
    score = load_bundle_prior("pet_fdg_prior", "triplanar", chunk_size=32)
    start = time.perf_counter()
    clip = (0.0, float(reference_slices("pet_fdg_prior", "axial", 4, "train").max()) * 1.5)
    volume = sample(score, (64, 72, 56), steps=steps, method="ddpm", generator=torch.Generator().manual_seed(0),
                    clip=clip)
    seconds = time.perf_counter() - start
    docs = ROOT / "bundles" / "pet_fdg_prior" / "docs"
    save_panel(docs / "volume_sample.png", {"tri-planar sample": volume.numpy()},
               title=f"3D sample, {steps} ancestral steps")
    ratio, measured = median_tissue_ratio(np.moveaxis(volume.numpy(), 2, 0))
    result = {"prior": "pet-volume", "steps": steps, "sampling_seconds": seconds, "axial_slice_ratio": ratio,
              "slices_measured": measured}
    (docs / "quality_volume.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def write_quality_table(bundle: str) -> Path:
    """bundles/<bundle>/docs/quality.md: one row per quality_<name>.json present (written by this script)."""
    docs = ROOT / "bundles" / bundle / "docs"
    rows = [json.loads(p.read_text()) for p in sorted(docs.glob("quality_*.json")) if p.stem != "quality_volume"]
    lines = ["# Quality of the shipped priors", "",
             "Written by `python scripts/check_priors.py <names>` (seeded samples; tissue ratio = bright/dark class "
             "means by Otsu among tissue pixels, i.e. grey/white for FDG and white/grey for T1, measured alike on "
             "samples and on every foreground training slice of 16 training subjects; nearest correlation = best "
             "Pearson correlation of an image with any of those training slices, for samples and, as the level "
             "real unseen images reach, for validation-subject slices). Pass: ratio within 15% of training.", "",
             "| prior | sampler | samples | sample ratio | training ratio | difference | ratio check | "
             "nearest corr. samples | nearest corr. validation | sampling time (s) | grid |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        value = r["prior"].split("-")[1]
        lines.append(f"| {r['prior']} | {r['method']} {r['steps']} steps | {r['samples']} | {r['sample_ratio']:.3f} | "
                     f"{r['training_ratio']:.3f} | {100 * r['relative_difference']:+.1f}% | "
                     f"{'pass' if r['passes_ratio_check'] else 'FAIL'} | "
                     f"{r['sample_nearest_correlation_median']:.3f} | {r['validation_nearest_correlation_median']:.3f} | "
                     f"{r['sampling_seconds']:.0f} | [{value}_samples.png]({value}_samples.png) |")
    volume = docs / "quality_volume.json"
    if volume.is_file():
        r = json.loads(volume.read_text())
        lines += ["", f"3D smoke test: one 64 x 72 x 56 volume from the tri-planar score of the three priors, "
                      f"{r['steps']} ancestral steps, {r['sampling_seconds']:.0f} s; median grey/white ratio of its "
                      f"axial slices {r['axial_slice_ratio']:.3f} ([volume_sample.png](volume_sample.png))."]
    path = docs / "quality.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("priors", nargs="+", choices=sorted(CHECKS) + ["pet-volume"],
                        help="pet-volume: one 3D sample from the tri-planar score of the three PET priors")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200, help="ancestral steps (VP) or predictor-corrector steps (VE)")
    parser.add_argument("--subjects", type=int, default=16, help="training subjects for the reference ratio")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.priors:
        result = check_volume(args.steps) if name == "pet-volume" else check(name, args.samples, args.steps,
                                                                               args.subjects)
        print(json.dumps(result), flush=True)
        write_quality_table("pet_fdg_prior" if name.startswith("pet") else "mr_t1_prior")


if __name__ == "__main__":
    main()
