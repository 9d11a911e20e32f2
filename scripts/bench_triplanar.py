"""Time and peak memory of one tri-planar noise prediction (three 2D priors over every slice of a volume).

    python scripts/bench_triplanar.py --sizes 64 128 --chunk-size 16 --threads 2

Each size runs in a fresh process so its peak resident memory is its own; the networks are the PET bundle's
architecture (random weights: time and memory do not depend on the values).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def measure(size: int, chunk_size: int, threads: int, repeats: int) -> dict:
    """Run in this process: build the score, evaluate it ``repeats`` times on a size^3 volume."""
    from diffrecon.priors import DiffusionPrior, TriPlanarScore
    from diffrecon.bundle import bundle_config

    torch.set_num_threads(threads)
    parser = bundle_config("pet_fdg_prior")
    schedule = parser.get_parsed_content("schedule")
    priors = {name: DiffusionPrior(parser.get_parsed_content("network_def", lazy=False), schedule).eval()
              for name in ("axial", "coronal", "sagittal")}
    score = TriPlanarScore(priors, chunk_size=chunk_size)
    volume = torch.randn(size, size, size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            score.tweedie(volume, 500)
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"size": size, "chunk_size": chunk_size, "threads": threads, "seconds": times,
            "peak_rss_gb": peak / 2 ** 20, "added_by_evaluation_gb": (peak - before) / 2 ** 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--chunk-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size here
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.chunk_size, args.threads, args.repeats)))
        return
    print("| volume | chunk | threads | time per tri-planar evaluation (s) | peak RSS (GB) | added by evaluation (GB) |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--chunk-size", str(args.chunk_size),
                              "--threads", str(args.threads), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        print(f"| {size}^3 | {result['chunk_size']} | {result['threads']} | "
              f"{' / '.join(f'{t:.2f}' for t in result['seconds'])} | {result['peak_rss_gb']:.2f} | "
              f"{result['added_by_evaluation_gb']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
