"""Benchmark personalised PET priors: for each target phantom (3 lesions, hot and cold, which no other subject
has), the personalised prior built from training-split subjects registered through their MR
(:func:`diffrecon.personalise.personalise`), then every configuration of ``--runs`` with the generic prior, the
personalised prior (``"prior": "personalised"`` in a run's settings) or none (classical methods). One JSON line
per reconstruction (resumable), then a table. Priors are kept in ``--work`` per target and personalisation
settings, so reruns and new runs reuse them.

Tune on the validation split, report the test split:

    python scripts/bench_personalised.py --split validation --targets 2 --out tune.jsonl --work bench_work \\
        --runs '[["bowsher", {"beta": 0.05}], ["pet-dds", {"steps": 5, "warm_start": 0.3, "prior": "personalised"}]]'
    python scripts/bench_personalised.py --split test --targets 3 --out bench.jsonl --work bench_work --runs ...

``--registration-check FOLDER`` instead registers real images (``../shared/data``: the SPM12 T1 template to
the SPM12 single-subject T1 with the PET template carried along, and the BRAINS T1 and T2 scans) and writes
their similarity before and after with overlay PNGs to FOLDER.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from diffrecon.benchmarks.pet import FIGURES, run
from diffrecon.benchmarks.records import done_runs, is_done, read_lines, uncertainty_cells, uncertainty_header
from diffrecon.data.splits import subject_seeds
from diffrecon.io.demo_cases import phantom_subject_folders, simulated_pet_case
from diffrecon.personalise import personalise
from diffrecon.registration.images import Image, read_image
from diffrecon.registration.pseudo_pet import Target, find_subjects

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("validation", "test"), help="validation to tune, test to report")
    parser.add_argument("--targets", type=int, default=3, help="first subjects of the split")
    parser.add_argument("--subjects", type=int, default=8, help="training-split subjects registered to each target")
    parser.add_argument("--preset", default="demo", choices=("demo",))
    parser.add_argument("--count-level", default="1%")
    parser.add_argument("--personalisation", default="{}", help="JSON settings of personalise() (epochs, "
                                                                "learning_rate, mixtures, orientations, ...)")
    parser.add_argument("--runs", default="[]", help="JSON list of [method, settings] pairs; settings may hold "
                                                     "\"prior\": \"personalised\" or \"generic\"")
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="registration processes")
    parser.add_argument("--work", default="bench_personalised_work", help="folder for subjects and priors")
    parser.add_argument("--out", help="JSON lines file (appended; done configurations skipped)")
    parser.add_argument("--figure", help="PNG: the first target's reference and the mean images of every run")
    parser.add_argument("--registration-check", help="register the real images instead, figures to this folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.registration_check:
        print(json.dumps(registration_check(Path(args.registration_check)), indent=1))
        return
    if not (args.split and args.out):
        parser.error("--split and --out are needed for the benchmark")
    work, out = Path(args.work), Path(args.out)
    personalisation = {"workers": args.workers, "threads": args.threads, **json.loads(args.personalisation)}
    subjects = find_subjects(phantom_subject_folders(work / "subjects", subject_seeds("train", args.subjects),
                                                     args.preset))
    done = done_runs(read_lines(out))
    shown: dict[str, np.ndarray] = {}  # the first target's images, for --figure
    first = subject_seeds(args.split, 1)[0]
    for seed in subject_seeds(args.split, args.targets):
        case = simulated_pet_case(seed, args.preset, args.count_level, lesions=3, lesion_kinds="mixed",
                                  split=args.split)
        tag = hashlib.sha256(json.dumps([args.subjects, personalisation], sort_keys=True).encode()).hexdigest()[:10]
        prior_dir, build_seconds = None, 0.0
        for name, settings in json.loads(args.runs):
            settings = dict(settings)
            which = settings.pop("prior", "generic")
            key = json.dumps([args.preset, args.count_level, seed, name, settings, which,
                              tag if which == "personalised" else "", args.num_samples])
            if is_done(done, key, name, settings):
                continue
            prior = None
            if which == "personalised":
                if prior_dir is None:
                    start = time.perf_counter()
                    prior_dir = personalise(target_of(case), subjects, work / "priors" / f"{seed}_{tag}",
                                            progress=False, **personalisation)
                    build_seconds = time.perf_counter() - start
                prior = prior_dir
            line, image = run(case, name, settings, args.num_samples, 0, prior)
            if args.figure and seed == first:
                shown.setdefault("reference", np.asarray(case.reference))
                shown[f"{name} ({which})" if name.startswith("pet-") else name] = image
            line.update(key=key, seed=seed, prior=which, personalisation=personalisation if prior else None,
                        prior_build_seconds=build_seconds if prior else 0.0)
            with out.open("a") as stream:
                stream.write(json.dumps(line) + "\n")
            print(f"{seed} {name} {settings} {which}: NRMSE {line['nrmse']:.4f} CRC hot "
                  f"{line['crc_hot_lesions']:.2f} cold {line['crc_cold_lesions']:.2f} ({line['seconds']:.1f} s)",
                  flush=True)
    print(summarise(read_lines(out)))
    if args.figure and shown:
        from diffrecon.io.figures import save_panel

        save_panel(args.figure, shown, f"{args.split} subject {first}, {args.count_level} counts: mean images",
                   cmap="gray_r")


def target_of(case) -> Target:
    """The target of a phantom case: its T1 and labels on the PET grid, the PET grid itself."""
    return Target(Image(case.images["mr"], case.affine, None, "target MR"),
                  Image(np.zeros(case.physics.grid.shape, np.float32), case.affine, None, "target PET grid"),
                  Image(case.images["labels"].astype(np.float32), case.affine, None, "target labels"))


def summarise(lines: list[dict]) -> str:
    """Markdown table of mean figures per (method, settings, prior), best NRMSE first."""
    groups: dict[str, list[dict]] = {}
    for line in lines:
        key = json.loads(line["key"])
        groups.setdefault(json.dumps([key[3], key[4], key[5]]), []).append(line)
    rows = ["| method, settings, prior | n | NRMSE | PSNR | SSIM | CRC hot | CRC cold | WM CoV | NFE | s | prior build s | "
            f"{uncertainty_header()} |", "|---" * (11 + len(uncertainty_header().split(" | "))) + "|"]
    for group, members in sorted(groups.items(), key=lambda item: np.mean([m["nrmse"] for m in item[1]])):
        mean = {k: float(np.nanmean([m.get(k) or 0.0 for m in members])) for k in FIGURES}
        build = np.mean([m.get("prior_build_seconds", 0.0) for m in members])
        rows.append(f"| {group} | {len(members)} | {mean['nrmse']:.4f} | {mean['psnr_db']:.2f} | {mean['ssim']:.3f} | "
                    f"{mean['crc_hot_lesions']:.2f} | {mean['crc_cold_lesions']:.2f} | {mean['white_matter_cov']:.3f} | "
                    f"{mean['network_evaluations']:.0f} | {mean['seconds']:.1f} | {build:.0f} | "
                    f"{uncertainty_cells(members)} |")
    return "\n".join(rows)


def registration_check(folder: Path) -> dict[str, dict]:
    """Register the real image pairs of ``../shared/data`` (MR to MR) and report similarity before and after;
    the SPM12 PET template is carried onto the single subject as a pseudo-PET image would be."""
    from diffrecon.registration.qc import save_overlay
    from diffrecon.registration.register import register, resample, warp

    spm, brains = SHARED / "spm12_templates_mr_pet", SHARED / "sirf_registration_t1t2"
    pairs = [("spm12 T1 template -> single-subject T1", spm / "single_subj_T1.nii", spm / "T1.nii", "SyNRA"),
             ("BRAINS T1 year 2 -> year 1", brains / "test.nii.gz", brains / "test2.nii.gz", "Rigid"),
             ("BRAINS T1 year 2 -> year 1", brains / "test.nii.gz", brains / "test2.nii.gz", "SyNRA"),
             ("BRAINS T2 -> T1 (multimodal)", brains / "test.nii.gz", brains / "standard.nii.gz", "SyNRA")]
    report = {}
    for label, fixed_path, moving_path, transform in pairs:
        fixed, moving = read_image(fixed_path, "fixed"), read_image(moving_path, "moving")
        label = f"{label} ({transform})"
        slug = "".join(c if c.isalnum() else "_" for c in label)[:50]
        registration = register(fixed, moving, folder / slug, transform)
        save_overlay(folder / f"{slug}.png", fixed.array, resample(moving, fixed), warp(moving, registration, fixed),
                     f"{label}: correlation {registration.before['correlation']:.3f} -> "
                     f"{registration.after['correlation']:.3f}")
        report[label] = {"before": registration.before, "after": registration.after,
                         "passes_qc": registration.improved, "seconds": registration.seconds}
        if "spm12" in label:
            pet = read_image(spm / "PET.nii", "SPM12 PET template")
            pseudo = warp(pet, registration, fixed)
            save_overlay(folder / "spm12_pseudo_pet.png", fixed.array, resample(pet, fixed), pseudo,
                         "SPM12 PET template on the single-subject T1 (magenta) before / after")
    (folder / "registration_check.json").write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
