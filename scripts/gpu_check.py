"""Run every diffusion bundle's built-in case on each device and write one JSON of wall time, network evaluations,
network and physics seconds and peak memory per (bundle, device), with the CPU / CUDA wall-time ratio where both
ran. What we run on any GPU machine we are lent:

    python scripts/gpu_check.py --out gpu_check.json                 # the bundles' own settings, CUDA and CPU
    python scripts/gpu_check.py --tiny --devices cpu --out check.json   # CI: tiny settings, so the script cannot rot

Each bundle's inference config is parsed in this process with the device (and, with ``--tiny``, a few steps, one
sample and the single-slice demo) overridden; its ``result`` is computed and its report read, with the metrics
the bundle wrote against the reference and the comparison image. Run one bundle per process
(``--bundles NAME``) for the CPU peak of that bundle alone. Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA (reset per run) and the process's peak resident set on the CPU (a
running maximum: later CPU rows are at least the earlier ones). A CPU generator drives CUDA runs too, as a user's
script would pass one (the bundles seed through the pipeline on the case's device).
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from diffrecon.bundle import bundle_config

BUNDLES = ("pet_dds", "pet_lisch", "pet_dps", "pet_naive", "pet_scd", "pet_deft", "dds_mri", "score_mri", "dps_mri",
           "naive_mri", "mri_scd")
PET_TINY = {"steps": 2, "num_samples": 1, "demo": {"seed": 20000, "preset": "demo2d", "count_level": "10%",
                                                    "lesions": 1}}
MRI_TINY = {"steps": 2, "num_samples": 1}
TINY = {name: PET_TINY if name.startswith("pet") else MRI_TINY for name in BUNDLES}


def run_bundle(name: str, device: str, settings: dict) -> dict:
    """One bundle's built-in case on ``device`` with ``settings``: its report's figures, wall time, peak memory."""
    with tempfile.TemporaryDirectory() as out:
        parser = bundle_config(name, **settings)
        parser["device"] = torch.device(device)
        parser["output_dir"] = out
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        report = parser.get_parsed_content("result").report
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2 ** 20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        wall = time.perf_counter() - start
        written = json.loads((Path(out) / f"{report['method']}.json").read_text())
    return {"bundle": name, "device": device, "wall_s": round(wall, 2), "metrics": written.get("metrics", {}),
            "network_evaluations": report["network_evaluations"], "num_samples": report["num_samples"],
            "seconds_network": round(report["seconds_network"], 2),
            "seconds_physics": round(report["seconds_physics"], 2),
            "seconds_gradient": round(report.get("seconds_gradient", 0.0), 2), "peak_memory_mb": round(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--devices", nargs="+", default=None,
                        help="devices to run on (default: cuda and cpu where CUDA is there, else cpu)")
    parser.add_argument("--bundles", nargs="+", default=list(BUNDLES), choices=BUNDLES)
    parser.add_argument("--tiny", action="store_true", help="2 steps, one sample, single-slice PET demo")
    args = parser.parse_args()
    devices = args.devices or (["cuda", "cpu"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for name in args.bundles:
        for device in devices:
            row = run_bundle(name, device, TINY[name] if args.tiny else {})
            rows.append(row)
            print(json.dumps(row), flush=True)
    walls = {(row["bundle"], row["device"]): row["wall_s"] for row in rows}
    ratios = {name: round(walls[name, "cpu"] / walls[name, "cuda"], 2) for name in args.bundles
              if (name, "cpu") in walls and (name, "cuda") in walls}
    info = {"torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "tiny": args.tiny}
    Path(args.out).write_text(json.dumps({"info": info, "runs": rows, "cpu_over_cuda_wall": ratios}, indent=1))


if __name__ == "__main__":
    main()
