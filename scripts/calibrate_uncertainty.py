"""Calibrate a diffusion method's posterior std on phantoms: draw samples on validation (fit) and test (report)
subjects, then measure coverage before and after the recalibration factor fitted on validation only.

PET methods: phantoms with three mixed lesions scanned on ``--preset`` at a count level (``--level 1%``). MRI
methods: the central T1 slice of the phantoms (128 x 128, 8 coils, 30 dB, as ``scripts/bench_mri.py``) under a
random-line mask of acceleration R (``--level R4``). One .npz of magnitude samples per case.

Step 1 (resumable: a case whose samples file exists is skipped)::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/calibrate_uncertainty.py sample --method pet-dds \\
        --preset demo2d --level 1% --split validation --subjects 40 --num-samples 16 --folder calib
    OMP_NUM_THREADS=1 nice -n 10 python scripts/calibrate_uncertainty.py sample --method dds \\
        --level R4 --split validation --subjects 12 --num-samples 16 --folder calib

Step 2 (fit c on the validation files, report coverage on the test files; JSON + calibration curve)::

    python scripts/calibrate_uncertainty.py analyse --folder calib --method pet-dds --preset demo2d \\
        --levels 1% 10% --out docs/figures/calibration_pet_dds
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffrecon.checks import InputError
from diffrecon.data.phantoms import make_subject
from diffrecon.data.splits import subject_seeds
from diffrecon.io.demo_cases import simulated_mri_case, simulated_pet_case
from diffrecon.methods import build_method
from diffrecon.methods.registry import get_method
from diffrecon.physics.geometry import ImageGrid, get_preset
from diffrecon.physics.pet_simulation import trues_per_direct_plane
from diffrecon.pipeline import method_inputs
from diffrecon.uncertainty import (calibration_curve, coverage, fit_std_calibration, lesion_report,
                                   posterior_summary, quantile_coverage, z_scores)


MRI_GRID = ImageGrid((128, 128, 1), (1.5, 1.5, 1.5))
"""The grid of :func:`simulated_mri_case`'s single slice (its brain mask is the phantom's on this grid)."""


def modality_of(method: str) -> str:
    """"PT" or "MR": the modality of a registered method."""
    return get_method(method).modality


def acceleration(level: str) -> float:
    """The acceleration of an MRI level "R<number>" (e.g. "R4")."""
    try:
        value = float(level[1:]) if level[:1].upper() == "R" else float("nan")
    except ValueError:
        value = float("nan")
    if not value >= 1.0:
        raise InputError(f"level {level!r} is not an MRI acceleration; expected R<number> >= 1, e.g. R4")
    return value


def check_level(method: str, level: str) -> None:
    """Refuse a level that does not fit the method's modality (before any work)."""
    if modality_of(method) == "MR":
        acceleration(level)
    else:
        trues_per_direct_plane(level)


def case_file(folder: Path, method: str, preset: str, level: str, seed: int) -> Path:
    """Where the samples of one case are kept."""
    where = "mri128" if modality_of(method) == "MR" else preset
    return folder / f"{method}_{where}_{level.replace('%', 'pct')}_{seed}.npz"


def make_case(method: str, seed: int, preset: str, level: str, split: str):
    """The benchmark's phantom case: PET with three lesions, hot and cold, noise realisation 0; MRI the central T1
    slice under random lines of acceleration ``level``."""
    if modality_of(method) == "MR":
        return simulated_mri_case(seed, acceleration=acceleration(level), mask="random", split=split)
    return simulated_pet_case(seed, preset, level, lesions=3, lesion_kinds="mixed", noise_seed=0, split=split)


def brain_mask(method: str, seed: int, preset: str, split: str) -> np.ndarray:
    """The subject's brain (tissue labels 1-3) on the case's grid: where coverage is measured."""
    if modality_of(method) == "MR":
        return np.isin(make_subject(seed, MRI_GRID, split=split).labels[..., 0], [1, 2, 3])
    subject = make_subject(seed, get_preset(preset).grid, lesions=3, lesion_kinds="mixed", split=split)
    return np.isin(subject.labels, [1, 2, 3])


def sample(args: argparse.Namespace) -> None:
    """Draw ``--num-samples`` samples per subject and keep them (float32) with the truth."""
    check_level(args.method, args.level)
    torch.set_num_threads(1)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    for seed in subject_seeds(args.split, args.subjects, args.start):
        path = case_file(folder, args.method, args.preset, args.level, seed)
        if path.is_file():
            continue
        case = make_case(args.method, seed, args.preset, args.level, args.split)
        method = build_method(args.method, **method_inputs(args.method, case))
        method.progress = False
        start = time.perf_counter()
        result = method(case.data, case.physics, num_samples=args.num_samples,
                        generator=torch.Generator().manual_seed(seed))
        seconds = time.perf_counter() - start
        partial = path.with_suffix(".partial.npz")
        samples = result.samples.abs() if result.samples.is_complex() else result.samples  # MRI: magnitudes
        np.savez_compressed(partial, samples=samples.cpu().numpy().astype(np.float32),
                            truth=np.asarray(case.reference, dtype=np.float32), seed=seed, split=args.split,
                            seconds=seconds, description=result.report["description"])
        partial.replace(path)
        print(f"{args.split} {seed}: {seconds:.1f} s", flush=True)


def load_cases(folder: Path, method: str, preset: str, level: str, split: str) -> list[dict]:
    """The kept samples of ``split`` with the truth and the brain mask of each subject."""
    cases = []
    for path in sorted(folder.glob(case_file(folder, method, preset, level, 0).name.replace("_0.npz", "_*.npz"))):
        if path.name.endswith(".partial.npz"):
            continue
        data = np.load(path)
        if str(data["split"]) != split:
            continue
        seed = int(data["seed"])
        cases.append({"seed": seed, "samples": data["samples"], "reference": data["truth"],
                      "mask": brain_mask(method, seed, preset, split)})
    return cases


def summarised(cases: list[dict], num_samples: int) -> list[dict]:
    """Each case's mean and std from its first ``num_samples`` samples."""
    out = []
    for case in cases:
        summary = posterior_summary(case["samples"][:num_samples])
        out.append({**case, "mean": summary.mean, "std": summary.std, "samples": case["samples"][:num_samples]})
    return out


def coverage_figures(cases: list[dict], factor: float = 1.0) -> dict[str, float]:
    """Mean over cases of the coverage at 1 and 2 std (std × ``factor``), mean |z| and 90% quantile coverage."""
    rows = []
    for case in cases:
        std = factor * case["std"]
        covered = coverage(case["reference"], case["mean"], std, (1.0, 2.0), case["mask"])
        z = np.abs(z_scores(case["reference"], case["mean"], std))[case["mask"]].mean()
        rows.append([covered[1.0], covered[2.0], z,
                     quantile_coverage(case["reference"], case["samples"], (0.9,), case["mask"])[0.9]])
    keys = ("coverage_1std", "coverage_2std", "mean_abs_z", "quantile_coverage_90")
    return dict(zip(keys, (float(v) for v in np.mean(rows, axis=0))))


def analyse(args: argparse.Namespace) -> None:
    """Fit on validation, report on test, per level; the factor of each level tried at the others; the sample
    count the estimate needs; null-space fractions and (PET) lesion verdicts; a calibration-curve figure."""
    for level in args.levels:
        check_level(args.method, level)
    mri = modality_of(args.method) == "MR"
    folder, out = Path(args.folder), Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {"method": args.method, "preset": "mri128" if mri else args.preset, "target": args.target,
                     "k": 2.0, "levels": {}}
    loaded = {level: {split: load_cases(folder, args.method, args.preset, level, split)
                      for split in ("validation", "test")} for level in args.levels}
    factors = {}
    for level, splits in loaded.items():
        validation, test = summarised(splits["validation"], args.num_samples), summarised(splits["test"],
                                                                                          args.num_samples)
        calibration = fit_std_calibration(validation, args.target, 2.0,
                                          f"{level} random lines" if mri else f"{args.preset} {level}")
        factors[level] = calibration.factor
        entry = {"validation_cases": len(validation), "test_cases": len(test),
                 "validation_seeds": [c["seed"] for c in validation], "test_seeds": [c["seed"] for c in test],
                 "factor": calibration.factor, "voxels": calibration.voxels,
                 "test_before": coverage_figures(test), "test_after": coverage_figures(test, calibration.factor),
                 "curve_before": calibration_curve_mean(test, 1.0),
                 "curve_after": calibration_curve_mean(test, calibration.factor), "by_samples": {}}
        for n in (2, 4, 8, 16):
            if n > args.num_samples:
                continue
            fitted = fit_std_calibration(summarised(splits["validation"], n), args.target, 2.0).factor
            few = summarised(splits["test"], n)
            entry["by_samples"][n] = {"factor": fitted, "before": coverage_figures(few)["coverage_2std"],
                                      "after": coverage_figures(few, fitted)["coverage_2std"]}
        entry["hallucination"] = hallucination_figures(splits["test"], args, level, calibration.factor)
        results["levels"][level] = entry
        print(f"{level}: c = {calibration.factor:.3f}; test 2-std coverage {entry['test_before']['coverage_2std']:.3f}"
              f" -> {entry['test_after']['coverage_2std']:.3f}", flush=True)
    results["transfer"] = {f"{fit} -> {level}": coverage_figures(summarised(loaded[level]["test"], args.num_samples),
                                                                 factor)["coverage_2std"]
                           for fit, factor in factors.items() for level in loaded}
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    plot_curves(results, out.with_suffix(".png"))
    print(json.dumps(results["transfer"], indent=2))


def calibration_curve_mean(cases: list[dict], factor: float) -> dict[str, list[float]]:
    """The calibration curve (Gaussian and quantile intervals) averaged over the cases."""
    curves = [calibration_curve(c["reference"], c["mean"], factor * c["std"], c["samples"], mask=c["mask"])
              for c in cases]
    return {key: [float(v) for v in np.mean([curve[key] for curve in curves], axis=0)] for key in curves[0]}


def hallucination_figures(cases: list[dict], args: argparse.Namespace, level: str, factor: float
                          ) -> dict[str, float]:
    """Null-space fraction of the mean's error over the brain and, for PET, mean CRC of hot and cold lesions
    (mixed: lesions 0 and 2 hot, 1 cold) and lesion verdicts (summed) over the test cases; invented with the raw
    and the calibrated std."""
    from diffrecon.pipeline import lesion_inputs
    from diffrecon.uncertainty import uncertainty_metrics

    rows = []
    for case in cases:
        scanned = make_case(args.method, case["seed"], args.preset, level, "test")
        inputs = {"mask": case["mask"], **lesion_inputs(scanned)}
        row = uncertainty_metrics(case["reference"], case["samples"].mean(0), None, case["samples"],
                                  scanned.physics, **inputs)
        if "lesion_masks" in inputs:
            calibrated = lesion_report(case["samples"], case["reference"], inputs["lesion_masks"],
                                       inputs["background_mask"], inputs["mask"], std_factor=factor)
            row.update(lesions_invented_calibrated=len(calibrated.invented),
                       crc=[v.crc_mean for v in calibrated.lesions])
        rows.append(row)
    figures = {"null_space_fraction": float(np.mean([r["null_space_fraction"] for r in rows]))}
    if rows and all("crc" in r for r in rows):
        crcs = np.array([r["crc"] for r in rows])
        figures.update(crc_hot_mean=float(crcs[:, 0::2].mean()), crc_cold_mean=float(crcs[:, 1::2].mean()),
                       **{key: int(sum(r[key] for r in rows)) for key in (
                           "lesions_recovered", "lesions_erased", "lesions_invented", "lesions_invented_calibrated")})
    return figures


def plot_curves(results: dict, path: Path) -> None:
    """Nominal against empirical coverage of mean ± k std on the test phantoms, before and after calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="calibrated")
    for level, entry in results["levels"].items():
        nominal = entry["curve_before"]["nominal"]
        line, = ax.plot(nominal, entry["curve_before"]["gaussian"], "o--", ms=3, label=f"{level}: sample std")
        ax.plot(nominal, entry["curve_after"]["gaussian"], "o-", ms=3, color=line.get_color(),
                label=f"{level}: x{entry['factor']:.2f} (fitted on validation)")
    ax.set_xlabel("nominal coverage of mean ± k std")
    ax.set_ylabel("empirical coverage (test phantoms, brain)")
    ax.set_title(f"{results['method']} on {results['preset']}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    step = commands.add_parser("sample", help="draw and keep posterior samples per subject")
    step.add_argument("--method", default="pet-dds")
    step.add_argument("--preset", default="demo2d", choices=("demo", "demo2d"), help="PET scanner")
    step.add_argument("--level", default="1%", help="PET: count level (1%%, 10%%); MRI: acceleration of random "
                      "lines (R4, R8)")
    step.add_argument("--split", required=True, choices=("validation", "test"))
    step.add_argument("--subjects", type=int, default=20)
    step.add_argument("--start", type=int, default=0, help="skip this many subjects of the split")
    step.add_argument("--num-samples", type=int, default=16)
    step.add_argument("--folder", required=True)
    step.set_defaults(func=sample)
    step = commands.add_parser("analyse", help="fit on validation, report on test")
    step.add_argument("--method", default="pet-dds")
    step.add_argument("--preset", default="demo2d", choices=("demo", "demo2d"), help="PET scanner")
    step.add_argument("--levels", nargs="+", default=["1%"], help="as sample's --level, one or more")
    step.add_argument("--num-samples", type=int, default=16, help="samples per case used for mean and std")
    step.add_argument("--target", type=float, default=0.95)
    step.add_argument("--folder", required=True)
    step.add_argument("--out", required=True, help="path stem: <out>.json and <out>.png")
    step.set_defaults(func=analyse)
    args = parser.parse_args()
    try:
        args.func(args)
    except InputError as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
