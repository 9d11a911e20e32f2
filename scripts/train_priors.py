"""Train the shipped priors through their bundles' train.json with the shared bundles/common/prior_train.json
(phantom training split) and export the EMA weights with checksums to each bundle's models/ folder.

    nice -n 10 python scripts/train_priors.py pet-axial pet-coronal pet-sagittal      # one process, in turn
    nice -n 10 python scripts/train_priors.py mr-vp --resume                           # continue from checkpoints
    nice -n 10 python scripts/train_priors.py mr-vp --resume --epochs 150              # train a finished run further
    nice -n 10 python scripts/train_priors.py pet-axial --no-export                    # keep models/ as it is
    python scripts/train_priors.py pet-axial --export-only                             # export a finished run
    nice -n 10 python scripts/train_priors.py mr-vp-wide --no-export                   # a candidate run
    nice -n 10 python scripts/train_priors.py mr-vp-shapes --no-export                 # ... fine-tuned further
    nice -n 10 python scripts/train_priors.py pet-coronal-shapes-own --no-export       # PET candidates

``--no-export`` leaves the shipped weights alone so that a run can be measured first
(``scripts/check_prior_generalisation.py --weights runs/.../model.pt ...``); ``--export-only`` then copies a
finished run's ``model.pt`` to models/ with its checksum.

The MR bundle trains one VP network; its VE form (Score-MRI) is the same network under a change of variables
(``diffrecon.priors.VarianceExplodingPrior``), so there is no separate VE run.

Logs: bundles/<bundle>/runs/<name>/train.log; checkpoints (every epoch, last two kept):
bundles/<bundle>/runs/<name>/checkpoints/checkpoint_epoch=<n>.pt. ``--resume`` continues from the newest one.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import torch

from diffrecon.bundle import run_bundle
from diffrecon.priors.weights import latest_checkpoint, save_weights, state_dict_of

ROOT = Path(__file__).resolve().parents[1]


class PriorRun(NamedTuple):
    """A training run: its bundle, run folder name (runs/<run>), train.json overrides, further configs of the
    bundle applied last, and the model it exports (models/model_<model>.pt; default the run name)."""

    bundle: str
    run: str
    overrides: dict
    configs: tuple[str, ...] = ()
    model: str | None = None


PRIORS = {
    "pet-axial": PriorRun("pet_fdg_prior", "axial", {"orientation": "axial", "epochs": 80}),
    "pet-coronal": PriorRun("pet_fdg_prior", "coronal", {"orientation": "coronal", "epochs": 80}),
    "pet-sagittal": PriorRun("pet_fdg_prior", "sagittal", {"orientation": "sagittal", "epochs": 80}),
    "mr-vp": PriorRun("mr_t1_prior", "vp", {"epochs": 180}),
    # candidate: the shipped MR network fine-tuned on augmented phantoms (configs/train_wide.json); measured with
    # check_prior_generalisation.py --bundle mr_t1_prior before it may replace model_vp.pt
    "mr-vp-wide": PriorRun("mr_t1_prior", "vp_wide", {"epochs": 60}, ("train_wide.json",), model="vp"),
    # candidates: a finished run fine-tuned with 30% of its slices replaced by generic objects
    # (configs/train_shapes.json, diffrecon.transforms.RandShapesd; PET coronal and sagittal slices also cut at a
    # random height, RandAxialEdged): MR from mr-vp-wide; every PET orientation from the finished pet-axial run
    # (a 2D denoiser of the wide population, then fine-tuned on its own slices)
    "mr-vp-shapes": PriorRun("mr_t1_prior", "vp_shapes", {"epochs": 30}, ("train_wide.json", "train_shapes.json"),
                             model="vp"),
    # candidate (measured, not shipped: docs/mri_diffusion.md): mr-vp-shapes fine-tuned further with half of the
    # slices generic objects, 40% of those cut by the image edge, and blur up to 9 mm FWHM (configs/train_generic.json)
    "mr-vp-generic": PriorRun("mr_t1_prior", "vp_generic", {"epochs": 25},
                              ("train_wide.json", "train_shapes.json", "train_generic.json"), model="vp"),
    # shipped (0.4.0): mr-vp-shapes (0.3.0) trained further on its recipe (train_wide.json, train_shapes.json) with
    # four slices per augmented volume and two volumes per batch (configs/train_more.json), as pet-<orientation>-more;
    # 23 epochs: the run went on to 40, which were no better than 0.3.0 for DDS on validation slices (23: +0.16 dB)
    "mr-vp-more": PriorRun("mr_t1_prior", "vp_more", {"epochs": 23},
                           ("train_wide.json", "train_shapes.json", "train_more.json"), model="vp"),
    **{f"pet-{o}-shapes": PriorRun("pet_fdg_prior", f"{o}_shapes", {"orientation": o, "epochs": 30},
                                   ("train_shapes.json",), model=o) for o in ("axial", "coronal", "sagittal")},
    # candidates: the same, but coronal and sagittal fine-tuned from their own orientation's finished run
    # (pet-coronal, pet-sagittal) instead of the axial one (configs/train_shapes_own.json)
    **{f"pet-{o}-shapes-own": PriorRun("pet_fdg_prior", f"{o}_shapes_own", {"orientation": o, "epochs": 30},
                                       ("train_shapes.json", "train_shapes_own.json"), model=o)
       for o in ("coronal", "sagittal")},
    # candidates (measured, not shipped: docs/pet_diffusion.md): the 0.2.0 runs fine-tuned further with half of the
    # slices generic objects, half of the coronal and sagittal ones cut at a random height, and blur up to 15 mm
    # FWHM (configs/train_generic.json)
    **{f"pet-{o}-generic": PriorRun("pet_fdg_prior", f"{o}_generic", {"orientation": o, "epochs": 20},
                                    ("train_shapes.json", "train_generic.json"), model=o)
       for o in ("axial", "coronal", "sagittal")},
    # candidates: the shipped 0.2.0 networks trained further on the same recipe (train_shapes.json), four slices per
    # augmented volume and two volumes per batch (configs/train_more.json): four times the training slices per epoch
    # (0.2.0 saw 110 epochs x 512 slices, 7040 steps), for about twice the epoch's time on a CPU
    **{f"pet-{o}-more": PriorRun("pet_fdg_prior", f"{o}_more", {"orientation": o, "epochs": 40},
                                 ("train_shapes.json", "train_more.json"), model=o)
       for o in ("axial", "coronal", "sagittal")},
}


def train(name: str, resume: bool, threads: int, epochs: int | None) -> None:
    """Run (or, with ``resume``, continue) the training of prior ``name`` into bundles/<bundle>/runs/<name>/."""
    prior = PRIORS[name]
    overrides = {**prior.overrides, **({"epochs": epochs} if epochs else {})}
    bundle_root = ROOT / "bundles" / prior.bundle
    run_dir = bundle_root / "runs" / prior.run
    run_dir.mkdir(parents=True, exist_ok=True)
    configs = [str(bundle_root / "configs" / "train.json"), str(ROOT / "bundles" / "common" / "prior_train.json")]
    configs += [str(bundle_root / "configs" / config) for config in prior.configs]
    settings = {"num_threads": threads, **overrides}
    checkpoint = latest_checkpoint(run_dir / "checkpoints") if resume else None
    if checkpoint is not None:
        settings["resume_ckpt"] = checkpoint
    run_bundle(configs, bundle_root, settings, run_dir / "train.log")


def export(name: str) -> Path:
    """Copy the EMA weights of the finished run of prior ``name`` to its bundle's models/ with a checksum."""
    prior = PRIORS[name]
    bundle_root = ROOT / "bundles" / prior.bundle
    state = torch.load(bundle_root / "runs" / prior.run / "model.pt", map_location="cpu", weights_only=True)
    return save_weights(bundle_root / "models" / f"model_{prior.model or prior.run}.pt", state_dict_of(state))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("priors", nargs="+", choices=sorted(PRIORS))
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint of each run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--epochs", type=int, help="total epochs (default: the shipped setting); with --resume, "
                        "a larger number trains an existing run further")
    exporting = parser.add_mutually_exclusive_group()
    exporting.add_argument("--no-export", action="store_true", help="train only; leave models/ as it is")
    exporting.add_argument("--export-only", action="store_true", help="export finished runs without training")
    args = parser.parse_args()
    for name in args.priors:
        if not args.export_only:
            train(name, args.resume, args.threads, args.epochs)
        if not args.no_export:
            print(export(name), flush=True)


if __name__ == "__main__":
    main()
