"""Robustness of the self-tuning defaults: each diffusion method at its default ("auto") on data of conditions it
was never tuned on, against its own per-case best setting from a sweep (the oracle no user has) and against
classical methods tuned on validation subjects of the same condition. One JSON line per run (resumable: runs
already in ``--out`` are skipped), then a markdown table (docs/robustness.md).

    python scripts/bench_robustness.py pet --count-levels 0.1% 0.3% 1% 3% 10% full --subjects 3 \\
        --out docs/robustness/pet_demo2d.jsonl
    python scripts/bench_robustness.py pet --preset demo --real --small --count-levels 1% 10% --subjects 1 \\
        --out docs/robustness/pet_demo.jsonl
    python scripts/bench_robustness.py mri --snrs none 30 20 --masks random:4 random:8 --subjects 2 \\
        --out docs/robustness/mri.jsonl
    python scripts/bench_robustness.py mri --real --snrs 30 --masks random:4 poisson:8 --subjects 2 \\
        --out docs/robustness/mri_real.jsonl
    python scripts/bench_robustness.py table docs/robustness/pet_demo2d.jsonl docs/robustness/mri.jsonl

Classical settings are chosen on the validation split per condition (the best mean over its subjects) and run on
the test split; the diffusion methods' default and sweep run on the test split only. PET is scored by NRMSE over
the phantom's brain, MRI by PSNR of the magnitude.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from diffrecon.benchmarks.mri import REAL_T1, load_case, real_t1_slice
from diffrecon.benchmarks.mri import run as run_mri
from diffrecon.benchmarks.pet import REAL_BRAINS, real_brain_case
from diffrecon.benchmarks.pet import run as run_pet
from diffrecon.benchmarks.records import read_lines, uncertainty_cells, uncertainty_header
from diffrecon.uncertainty import UNCERTAINTY_FIGURES
from diffrecon.data.splits import subject_seeds
from diffrecon.io.demo_cases import scanned_mri_case, simulated_mri_case, simulated_pet_case

PET_DEFAULTS = {"pet-lisch": {}, "pet-dds": {}}
PET_SWEEPS = {"pet-lisch": [{"iterations": k} for k in (1, 2, 3, 5, 8)],
              "pet-dds": [{"lam": v} for v in (0.02, 0.1, 0.5, 2.0, 10.0, 50.0)]}
PET_CLASSICAL = {"osem": [{"iterations": i, "post_filter_mm": f} for i in (1, 2, 4, 8) for f in (0.0, 4.0, 8.0, 12.0)],
                 "map-rdp": [{"beta": b} for b in (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)]}
PET_SMALL = {"sweeps": {"pet-lisch": [{"iterations": k} for k in (2, 3, 5)],
                        "pet-dds": [{"lam": v} for v in (0.02, 0.5, 10.0)]},
             "classical": {"osem": [{"iterations": i, "post_filter_mm": f} for i in (2, 4, 8) for f in (0.0, 4.0, 8.0)],
                           "map-rdp": [{"beta": b} for b in (0.1, 0.3, 1.0)]}}
"""Coarser grids (``--small``) for fully 3D runs, which take a minute each on a CPU."""
MRI_DEFAULTS = {"dds": {}, "score-mri": {}}
MRI_SWEEPS = {"dds": [{"gamma": g} for g in (1.0, 3.0, 10.0, 30.0, 100.0, "auto")],
              "score-mri": [{"projection": "hard"}, {"projection": "auto"}]}
CENTER_FRACTION = 0.08
MRI_CLASSICAL = {"tv": [{"lam": v} for v in (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)]}


def key(line: dict) -> str:
    return json.dumps([line["condition"], line["split"], line["seed"], line["method"], line["settings"]],
                      sort_keys=True)


def planned_runs(subjects: int, classical: dict, defaults: dict, sweeps: dict, real: tuple[str, ...] = ()):
    """(split, seed, method, settings, role) of one condition: the classical grids on both splits, the defaults
    and sweeps of the diffusion methods on the test split; ``real``: test cases (named) after the phantoms."""
    for split in ("validation", "test"):
        for seed in subject_seeds(split, subjects) + (list(real) if split == "test" else []):
            for name, grid in classical.items():
                yield from ((split, seed, name, s, "classical") for s in grid)
            if split == "test":
                for name in defaults:
                    yield split, seed, name, defaults[name], "default"
                    yield from ((split, seed, name, s, "sweep") for s in sweeps[name])


def bench(conditions, runs, make_case, score, out: Path) -> None:
    done = {key(line) for line in read_lines(out)} if out.exists() else set()
    with out.open("a") as handle:
        for condition, options in conditions:
            cached = (None, None)  # the last case built: runs come case by case
            for split, seed, name, settings, role in runs(condition):
                line = {"condition": condition, "split": split, "seed": seed, "method": name, "settings": settings}
                if key(line) in done:
                    continue
                if cached[0] != (split, seed):
                    cached = ((split, seed), make_case(seed, split, **options))
                case = cached[1]
                figures = score(case, name, settings)
                handle.write(json.dumps({**line, "role": role, **figures}) + "\n")
                handle.flush()
                print(condition, split, seed, name, settings, {k: figures[k] for k in ("nrmse", "psnr_db")
                                                                 if k in figures}, flush=True)


def main_pet(args: argparse.Namespace) -> None:
    def make_case(seed, split, level):
        if isinstance(seed, str):  # a real brain on the demo scanner (evaluation only)
            return real_brain_case(seed, level, 0)
        return simulated_pet_case(seed, args.preset, level, lesions=2, lesion_kinds="mixed", split=split)

    def score(case, name, settings):
        line, _ = run_pet(case, name, settings, args.samples, 0)
        return {k: line[k] for k in ("nrmse", "psnr_db", "seconds", "network_evaluations", *UNCERTAINTY_FIGURES)}

    if args.real and args.preset != "demo":
        raise SystemExit("--real scans the real brains on the demo scanner: use --preset demo")
    real = tuple(REAL_BRAINS) if args.real else ()
    conditions = [(f"PET {args.preset} {level}", {"level": level}) for level in args.count_levels]
    classical, sweeps = ((PET_SMALL["classical"], PET_SMALL["sweeps"]) if args.small else (PET_CLASSICAL, PET_SWEEPS))
    bench(conditions, lambda condition: planned_runs(args.subjects, classical, PET_DEFAULTS, sweeps, real),
          make_case, score, Path(args.out))


def main_mri(args: argparse.Namespace) -> None:
    def make_case(seed, split, snr, mask, acceleration):
        if seed == "twix":  # the real scan, its own noise (8 coils)
            return load_case("twix", seed, f"{mask}:{acceleration}", CENTER_FRACTION, split)
        if isinstance(seed, str):  # a real T1 slice, scanned as the phantoms are
            return scanned_mri_case(torch.as_tensor(real_t1_slice(seed)), list(REAL_T1).index(seed), coils=1,
                                    acceleration=acceleration, mask=mask, snr_db=snr)
        return simulated_mri_case(seed, coils=1, acceleration=acceleration, mask=mask, snr_db=snr, split=split)

    def score(case, name, settings):
        line = run_mri(case, name, settings, args.samples)
        return {k: line[k] for k in ("psnr_db", "ssim", "seconds", *UNCERTAINTY_FIGURES) if k in line}

    conditions = []
    for snr in args.snrs:
        for mask in args.masks:
            kind, acceleration = mask.split(":")
            value = None if snr == "none" else float(snr)
            conditions.append((f"MRI SNR {snr} {kind} R{acceleration}",
                               {"snr": value, "mask": kind, "acceleration": float(acceleration)}))

    def real(condition: str) -> tuple[str, ...]:
        """Real T1 slices in every condition, the twix scan (its own noise) with the SNR-30 conditions."""
        return (tuple(REAL_T1) + (("twix",) if " SNR 30 " in condition else ())) if args.real else ()

    bench(conditions, lambda condition: planned_runs(args.subjects, MRI_CLASSICAL, MRI_DEFAULTS, MRI_SWEEPS,
                                                     real(condition)), make_case, score, Path(args.out))


def table(paths: list[str]) -> None:
    """Per condition and method: the default's mean figure on the test subjects, the oracle's (per-case best of
    the sweep and the default), the gap, and the validation-tuned classical methods on the same test subjects."""
    lines = [line for path in paths for line in read_lines(Path(path))]
    by_condition = defaultdict(list)
    for line in lines:
        by_condition[line["condition"]].append(line)
    for condition, rows in list(by_condition.items()):  # real cases: a row of their own, classical tuned as above
        validation = [r for r in rows if r["split"] == "validation"]
        for name in sorted({r["seed"] for r in rows if isinstance(r["seed"], str)}):
            by_condition[f"{condition} {name}"] = validation + [r for r in rows if r["seed"] == name]
        by_condition[condition] = [r for r in rows if not isinstance(r["seed"], str)]
    print("| condition | method | default | oracle (per-case best) | gap | fixed (pre-wave) | tuned classical |")
    print("|---|---|---|---|---|---|---|")
    for condition, rows in by_condition.items():
        pet = condition.startswith("PET")
        figure, better = ("nrmse", min) if pet else ("psnr_db", max)
        classical = _tuned_classical(rows, figure, better)
        methods = sorted({r["method"] for r in rows if r["role"] == "default"})
        for name in methods:
            tests = [r for r in rows if r["method"] == name and r["split"] == "test"]
            seeds = sorted({r["seed"] for r in tests})
            default = [next(r[figure] for r in tests if r["seed"] == s and r["role"] == "default") for s in seeds]
            oracle = [better(r[figure] for r in tests if r["seed"] == s) for s in seeds]
            fixed_setting = {"pet-lisch": {"iterations": 3}, "pet-dds": {"lam": 0.02}, "dds": {"gamma": 10.0},
                             "score-mri": {"projection": "hard"}}[name]
            fixed = [r[figure] for r in tests if r["settings"] == fixed_setting]
            gap = (f"{100 * (np.mean(default) / np.mean(oracle) - 1):+.1f}%" if pet
                   else f"{np.mean(default) - np.mean(oracle):+.2f} dB")
            print(f"| {condition} | {name} | {np.mean(default):.4g} | {np.mean(oracle):.4g} | {gap} | "
                  f"{np.mean(fixed):.4g} | {classical} |")
    print(f"\nUncertainty of the defaults on the test cases:\n\n| condition | method | {uncertainty_header()} |")
    print("|---|---" + "|---" * len(uncertainty_header().split(" | ")) + "|")
    for condition, rows in by_condition.items():
        for name in sorted({r["method"] for r in rows if r["role"] == "default"}):
            tests = [r for r in rows if r["method"] == name and r["split"] == "test" and r["role"] == "default"]
            print(f"| {condition} | {name} | {uncertainty_cells(tests)} |")


def _tuned_classical(rows: list[dict], figure: str, better) -> str:
    """Each classical method at the setting best on the validation subjects (mean), scored on the test subjects."""
    parts = []
    for name in sorted({r["method"] for r in rows if r["role"] == "classical"}):
        validation = defaultdict(list)
        for r in rows:
            if r["method"] == name and r["split"] == "validation":
                validation[json.dumps(r["settings"], sort_keys=True)].append(r[figure])
        if not validation:
            continue
        chosen = better(validation, key=lambda s: np.mean(validation[s]))
        test = [r[figure] for r in rows if r["method"] == name and r["split"] == "test"
                and json.dumps(r["settings"], sort_keys=True) == chosen]
        if test:
            parts.append(f"{name} {np.mean(test):.4g} ({chosen})")
    return "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pet = commands.add_parser("pet")
    pet.add_argument("--count-levels", nargs="+", default=["0.1%", "1%", "10%"])
    pet.add_argument("--preset", default="demo2d", choices=("demo", "demo2d", "clinical_brain"))
    pet.add_argument("--subjects", type=int, default=3)
    pet.add_argument("--real", action="store_true", help="also the real brains (FDG, SPM12) on the demo scanner")
    pet.add_argument("--small", action="store_true", help="coarser sweeps and classical grids (PET_SMALL)")
    pet.add_argument("--samples", type=int, default=1)
    pet.add_argument("--out", required=True)
    mri = commands.add_parser("mri")
    mri.add_argument("--snrs", nargs="+", default=["none", "30", "20"])
    mri.add_argument("--masks", nargs="+", default=["random:4", "random:8"])
    mri.add_argument("--subjects", type=int, default=2)
    mri.add_argument("--real", action="store_true", help="also real T1 slices (scanned as the phantoms) and the "
                     "twix scan (with the SNR-30 conditions)")
    mri.add_argument("--samples", type=int, default=1)
    mri.add_argument("--out", required=True)
    tables = commands.add_parser("table")
    tables.add_argument("paths", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.command == "pet":
        main_pet(args)
    elif args.command == "mri":
        main_mri(args)
    else:
        table(args.paths)


if __name__ == "__main__":
    main()
