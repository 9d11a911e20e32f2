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

import torch

from diffrecon.bundle import run_bundle
from diffrecon.priors.runs import PRIORS
from diffrecon.priors.weights import latest_checkpoint, save_weights, state_dict_of

ROOT = Path(__file__).resolve().parents[1]


def train(name: str, resume: bool, threads: int, epochs: int | None) -> None:
    """Run (or, with ``resume``, continue) the training of prior ``name`` into bundles/<bundle>/runs/<name>/."""
    prior = PRIORS[name]
    overrides = {**prior.overrides, **({"epochs": epochs} if epochs else {})}
    bundle_root = ROOT / "bundles" / prior.bundle
    run_dir = bundle_root / "runs" / prior.run
    run_dir.mkdir(parents=True, exist_ok=True)
    configs = [str(bundle_root / "configs" / "train.json"), str(ROOT / "bundles" / "common" / "prior_train.json")]
    configs += [str(bundle_root / "configs" / config) for config in prior.configs]
    # the research runs stay in the bundle (their configs chain from runs/<run>/model.pt there); a bundle run by hand
    # writes under ./runs/<bundle>/ (runs_dir of common/prior_train.json)
    settings = {"num_threads": threads, "runs_dir": str(bundle_root / "runs"), **overrides}
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
