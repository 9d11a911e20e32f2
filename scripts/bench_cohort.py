"""Throughput of ``diffrecon cohort`` against a plain Python loop over the same cases (docs/cohort.md).

Makes ``--cases`` one-slice phantom cases (``diffrecon simulate``, demo2d, 10% counts), then times, each in a fresh
process and end to end (imports, Ray start-up, writing): a plain loop that loads each case and calls
:func:`diffrecon.pipeline.reconstruct_case` per method, and ``diffrecon cohort`` with 1 and 2 workers. Reports
cases per hour, the per-pair time in steady state (the work a worker did per pair, from the summary), Ray's fixed
start-up, the overhead per case against the loop, the speed-up of 2 workers and the peak memory per worker.

    OMP_NUM_THREADS=1 python scripts/bench_cohort.py --cases 8 --methods osem map-rdp pet-lisch
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SEED0 = 20001  # test-split subjects from here on


def make_cases(folder: Path, n: int) -> list[Path]:
    """``n`` simulated demo2d cases (kept between runs)."""
    from diffrecon.io.demo_cases import simulate_to_folder

    cases = []
    for seed in range(SEED0, SEED0 + n):
        case = folder / f"s{seed}"
        if not (case / "simulation.json").is_file():
            simulate_to_folder(case, seed, preset="demo2d", count_level="10%", lesions=2, noise_seed=seed)
        cases.append(case)
    return cases


def plain_loop(cases: Path, methods: list[str], out: Path) -> None:
    """The baseline: one process, one case after another, each method built for each case as a cohort worker does."""
    import torch

    from diffrecon.io.cases import load_pet_case
    from diffrecon.methods.registry import method_parameters
    from diffrecon.pipeline import method_for_case, reconstruct_case

    torch.set_num_threads(1)
    seconds, priors = [], {}  # priors loaded once, as a cohort worker does: the comparison is of Ray's overhead
    for case_dir in sorted(p for p in cases.iterdir() if p.is_dir()):
        start = time.perf_counter()
        case = load_pet_case(case_dir)
        for name in methods:
            options = {"progress": False} if "progress" in method_parameters(name) else {}
            method = method_for_case(name, case, options, priors=priors)
            reconstruct_case(case, method, out / case_dir.name / name)
        seconds.append(time.perf_counter() - start)
    (out / "seconds_per_case.json").write_text(json.dumps(seconds))


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=8, help="number of cases (default %(default)s)")
    parser.add_argument("--methods", nargs="+", default=["osem", "map-rdp"], help="methods (default osem map-rdp)")
    parser.add_argument("--work", default="bench_cohort_work", help="folder for cases and outputs")
    parser.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # the timed baseline process
    args = parser.parse_args()
    work = Path(args.work)
    if args.plain:
        plain_loop(work / "cases", args.methods, work / "plain")
        return
    if args.cases < 1:
        raise SystemExit("--cases must be >= 1")
    make_cases(work / "cases", args.cases)
    pairs = args.cases * len(args.methods)
    runs = {"plain loop": timed([sys.executable, __file__, "--plain", "--work", str(work), "--cases",
                                 str(args.cases), "--methods", *args.methods])}
    summaries = {}
    for workers in (1, 2):
        out = work / f"cohort_{workers}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        command = [sys.executable, "-m", "diffrecon", "cohort", "--cases", str(work / "cases"), "--out", str(out),
                   "--workers", str(workers), "--no-progress"]
        for name in args.methods:
            command += ["--method", name]
        runs[f"cohort, {workers} worker{'s' * (workers > 1)}"] = timed(command)
        summaries[workers] = [json.loads(path.read_text()) for path in out.glob("*/*/cohort.json")]
    plain = runs["plain loop"]
    loop_case = json.loads((work / "plain" / "seconds_per_case.json").read_text())
    plain_case = sum(loop_case[1:]) / max(1, len(loop_case) - 1)  # steady state: the first case pays for imports
    rows = sorted(summaries[1], key=lambda row: float(row["started"]))
    ray_case = (float(rows[-1]["finished"]) - float(rows[len(args.methods)]["started"])) / max(1, args.cases - 1)
    start_up = runs["cohort, 1 worker"] - ray_case * args.cases
    both = summaries[2]  # 2 workers: from the first pair's start to the last one's end, per case
    two_case = (max(float(r["finished"]) for r in both) - min(float(r["started"]) for r in both)) / args.cases
    rss = max(float(row["worker_rss_mb"]) for rows in summaries.values() for row in rows)
    print(f"{args.cases} cases x {', '.join(args.methods)} = {pairs} pairs, {os.cpu_count()} CPU cores\n")
    print("| run | wall (s) | cases/hour | vs plain loop |")
    print("|---|---|---|---|")
    for name, seconds in runs.items():
        print(f"| {name} | {seconds:.1f} | {3600 * args.cases / seconds:.0f} | {seconds / plain:.2f}x |")
    print(f"\nsteady state per case: plain loop {plain_case:.2f} s, cohort with 1 worker {ray_case:.2f} s (Ray's "
          f"overhead {100 * (ray_case - plain_case) / plain_case:+.1f}%); fixed start-up of the cohort {start_up:.1f} s; "
          f"2 workers {two_case:.2f} s per case once started (speed-up {ray_case / two_case:.2f}x), "
          f"{runs['cohort, 1 worker'] / runs['cohort, 2 workers']:.2f}x end to end; "
          f"peak memory per worker {rss:.0f} MiB")
    summary = {"runs": runs, "plain_s_per_case": plain_case, "cohort_s_per_case": ray_case,
               "start_up_s": start_up, "two_workers_s_per_case": two_case, "worker_rss_mb": rss}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
