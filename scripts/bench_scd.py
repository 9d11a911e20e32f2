"""Steerable conditional diffusion (SCD, issue 30): each steered method against its unsteered base on cases in and
out of the prior's family. One JSON line per run (resumable: runs already in ``--out`` are skipped); ``table``
prints the markdown tables of docs/scd.md.

    # PET: phantoms (FDG: in family; amyloid: another tracer), real brains on the demo scanner
    python scripts/bench_scd.py pet --cases amyloid --split validation --subjects 3 --count-levels 1% 10% \\
        --runs '[["pet-lisch", {}], ["scd-pet-lisch", {"learning_rate": 0.003}]]' --out docs/scd/tune_pet.jsonl
    python scripts/bench_scd.py pet --preset demo --cases fdg_sts001 spm12_pet --count-levels 1% \\
        --runs '[["pet-lisch", {}], ["scd-pet-lisch", {}]]' --out docs/scd/pet_real.jsonl
    # the seed's experiment: a prior trained on shifted data (another bundle folder) on normal phantoms
    nice -n 10 python scripts/train_priors.py pet-axial-amyloid --no-export    # the shifted network (35 min)
    python scripts/bench_scd.py shifted-prior --out /tmp/amyloid_prior
    python scripts/bench_scd.py pet --cases fdg --split test --prior /tmp/amyloid_prior ...
    # MRI: T1 phantoms (in family), T2-weighted phantoms, real T1 slices, the twix scan
    python scripts/bench_scd.py mri --cases t2 --split validation --subjects 2 --masks random:4 \\
        --runs '[["dds", {}], ["scd-dds", {}]]' --out docs/scd/tune_mri.jsonl
    python scripts/bench_scd.py table docs/scd/tune_pet.jsonl

Phantom seeds come from ``--split`` (tune on validation, report on test); real images are evaluation-only cases.
PET is scored by NRMSE over the brain, MRI by PSNR of the magnitude.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from diffrecon.benchmarks.mri import REAL_T1, load_case, real_t1_slice
from diffrecon.benchmarks.mri import run as run_mri
from diffrecon.benchmarks.pet import REAL_BRAINS, real_brain_case
from diffrecon.benchmarks.pet import run as run_pet
from diffrecon.benchmarks.records import read_lines, resolved_settings
from diffrecon.data.splits import split_of, subject_seeds
from diffrecon.io.demo_cases import scanned_mri_case, simulated_mri_case, simulated_pet_case
from diffrecon.priors.weights import save_weights, state_dict_of

ROOT = Path(__file__).resolve().parents[1]

PET_TRACERS = ("fdg", "amyloid", "fdg_spikes")
MRI_CONTRASTS = ("t1", "t2")
CENTER_FRACTION = 0.08
SPIKE_FRACTION = 0.001
"""Spike cases ("fdg_spikes"): this fraction of the sinogram's bins (drawn with a fixed seed) gets 20 times the
largest measured count added, counts no Poisson model of the scan explains (the seed: SCD does not help there)."""


def add_spikes(case):
    """``case`` with :data:`SPIKE_FRACTION` of its bins spiked (integers, so still counts)."""
    data = case.data.clone()
    generator = torch.Generator().manual_seed(1)
    spiked = torch.rand(data.shape, generator=generator) < SPIKE_FRACTION
    data[spiked] += torch.round(20 * data.max())
    return dataclasses.replace(case, data=data, info={**case.info, "spiked_bins": int(spiked.sum())})


def case_seeds(cases: list[str], phantoms: tuple[str, ...], split: str, subjects: int) -> list[tuple[str, object]]:
    """(case kind, seed or name): phantom kinds over the split's seeds, real images by name."""
    seeds = subject_seeds(split, subjects)
    return [(kind, seed) for kind in cases for seed in (seeds if kind in phantoms else [kind])]


def bench(modality: str, conditions: list[str], cases, runs, make_case, score, out: Path, prior: str | None) -> None:
    done = {line["key"] for line in read_lines(out)} if out.exists() else set()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as handle:
        for condition in conditions:
            for kind, seed in cases:
                case = None
                for name, settings in runs:
                    key = json.dumps([condition, kind, seed, name, settings, prior], sort_keys=True)
                    if key in done:
                        continue
                    case = case or make_case(condition, kind, seed)
                    figures = score(case, name, settings)
                    line = {"key": key, "modality": modality, "condition": condition, "case": kind, "seed": seed,
                            "prior": prior, **figures}
                    handle.write(json.dumps(line) + "\n")
                    handle.flush()
                    print(condition, kind, seed, name, settings, {k: round(figures[k], 4) for k in
                                                                  ("nrmse", "psnr_db", "seconds") if k in figures},
                          flush=True)


def main_pet(args: argparse.Namespace) -> None:
    def make_case(condition, kind, seed):
        level = condition.split()[-1]
        if kind in REAL_BRAINS:
            return real_brain_case(kind, level, 0)
        case = simulated_pet_case(seed, args.preset, level, lesions=2, lesion_kinds="mixed", split=args.split,
                                  tracer=kind.removesuffix("_spikes"))
        return add_spikes(case) if kind.endswith("_spikes") else case

    def score(case, name, settings):
        return run_pet(case, name, settings, args.samples, 0, args.prior)[0]

    if set(args.cases) & set(REAL_BRAINS) and args.preset != "demo":
        raise SystemExit("the real brains are scanned on the demo scanner: use --preset demo")
    bench("PET", [f"{args.preset} {level}" for level in args.count_levels],
          case_seeds(args.cases, PET_TRACERS, args.split, args.subjects), json.loads(args.runs), make_case, score,
          Path(args.out), args.prior)


def main_mri(args: argparse.Namespace) -> None:
    def make_case(condition, kind, seed):
        mask = condition.split()[0]
        pattern, acceleration = mask.split(":")
        if kind == "twix":
            return load_case("twix", kind, mask, CENTER_FRACTION, args.split)
        if kind in REAL_T1:
            return scanned_mri_case(torch.as_tensor(real_t1_slice(kind)), list(REAL_T1).index(kind),
                                    coils=args.coils, acceleration=float(acceleration), mask=pattern, snr_db=args.snr)
        return simulated_mri_case(seed, coils=args.coils, acceleration=float(acceleration), mask=pattern,
                                  snr_db=args.snr, split=args.split, contrast=kind)

    def score(case, name, settings):
        return run_mri(case, name, settings, args.samples, args.prior)

    masks = args.masks if args.coils == 1 else [f"{mask} {args.coils} coils" for mask in args.masks]
    bench("MR", masks, case_seeds(args.cases, MRI_CONTRASTS, args.split, args.subjects), json.loads(args.runs),
          make_case, score, Path(args.out), args.prior)


def shifted_prior(out: Path, weights: Path) -> None:
    """A prior bundle folder for the shifted-prior experiment: the shipped PET prior's configs with the axial
    network replaced by ``weights`` (the EMA of a training run or checkpoint, e.g. pet-axial-amyloid's); the coronal
    and sagittal networks stay the shipped ones, so use it on single slices (the axial network alone)."""
    if out.exists():
        raise SystemExit(f"--out {out} exists; give a new folder")
    shipped = ROOT / "bundles" / "pet_fdg_prior"
    shutil.copytree(shipped / "configs", out / "configs")
    shutil.copytree(shipped / "models", out / "models")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    save_weights(out / "models" / "model_axial.pt", state_dict_of(state))
    print(f"{out}: the shipped PET prior with the axial network of {weights}")


def table(paths: list[str]) -> None:
    """Per (condition, case kind, prior): each run's mean figure over its cases, its wall time and SCD's extra
    network passes; a steered run's change against its unsteered base (``scd-<base>``) on the same cases."""
    lines = [line for path in paths for line in read_lines(Path(path))]
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for line in lines:
        split = split_of(line["seed"]) if isinstance(line["seed"], int) else "real"
        groups[(line["condition"], line["case"], split, line["prior"])][run_label(line)].append(line)
    print("| condition | case | split | prior | run | n | NRMSE / PSNR | change against the base | seconds | "
          "SCD passes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (condition, kind, split, prior), runs in groups.items():
        figure = "nrmse" if next(iter(runs.values()))[0]["modality"] == "PET" else "psnr_db"
        means = {run: float(np.mean([g[figure] for g in group])) for run, group in runs.items()}
        for run, group in runs.items():
            base = run_label(group[0], base=True)
            change = ""
            if group[0]["method"].startswith("scd-") and base in means:
                value, reference = means[run], means[base]
                change = (f"{100 * (value / reference - 1):+.1f}%" if figure == "nrmse"
                          else f"{value - reference:+.2f} dB")
            passes = np.mean([g.get("steering_evaluations", 0) for g in group])
            seconds = np.mean([g["seconds"] for g in group])
            prior_name = Path(prior).name if prior else "shipped"
            print(f"| {condition} | {kind} | {split} | {prior_name} | {run} | {len(group)} | {means[run]:.4g} | "
                  f"{change} | {seconds:.1f} | {passes:.0f} |")


STEERING_SETTINGS = ("rank", "learning_rate", "adapt_iterations", "skip", "last", "stop_at_aim", "em_steps")


def run_label(line: dict, base: bool = False) -> str:
    """A run's method and settings (with any default it ran with that differs from today's: a line written
    before a default changed); with ``base``, those of its unsteered base (SCD's settings dropped)."""
    today = resolved_settings(line["method"], {})
    then = line.get("resolved") or today
    settings = {**{k: v for k, v in then.items() if k in today and today[k] != v}, **line["settings"]}
    if base:
        settings = {k: v for k, v in settings.items() if k not in STEERING_SETTINGS}
    return f"{line['method'].removeprefix('scd-') if base else line['method']} {json.dumps(settings, sort_keys=True)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for modality, cases in (("pet", PET_TRACERS + tuple(REAL_BRAINS)), ("mri", MRI_CONTRASTS + tuple(REAL_T1)
                                                                         + ("twix",))):
        sub = commands.add_parser(modality)
        sub.add_argument("--cases", nargs="+", choices=cases, required=True)
        sub.add_argument("--split", default="validation", choices=("validation", "test"))
        sub.add_argument("--subjects", type=int, default=2)
        sub.add_argument("--runs", required=True, help="JSON list of [method, settings]")
        sub.add_argument("--prior", default=None, help="a prior bundle folder (default: the shipped one)")
        sub.add_argument("--samples", type=int, default=1)
        sub.add_argument("--out", required=True)
        if modality == "pet":
            sub.add_argument("--preset", default="demo2d", choices=("demo", "demo2d"))
            sub.add_argument("--count-levels", nargs="+", default=["1%"])
        else:
            sub.add_argument("--masks", nargs="+", default=["random:4"])
            sub.add_argument("--snr", type=float, default=30.0)
            sub.add_argument("--coils", type=int, default=1, help="simulated coils of the phantoms and real T1 slices")
    tables = commands.add_parser("table")
    tables.add_argument("paths", nargs="+")
    shifted = commands.add_parser("shifted-prior", help=shifted_prior.__doc__)
    shifted.add_argument("--weights", type=Path,
                         default=ROOT / "bundles/pet_fdg_prior/runs/axial_amyloid/model.pt")
    shifted.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "table":
        table(args.paths)
    elif args.command == "shifted-prior":
        shifted_prior(args.out, args.weights)
    else:
        (main_pet if args.command == "pet" else main_mri)(args)


if __name__ == "__main__":
    main()
