#!/usr/bin/env bash
# The MRI evaluation of docs/mri_diffusion.md: test-split phantoms and the real twix scan, settings tuned on
# validation slices (scripts/bench_mri.py --split validation, docs/mri_diffusion.md). Resumable: rerun to finish.
#   OMP_NUM_THREADS=1 nice -n 5 bash scripts/bench_mri_all.sh docs/mri_bench    (in the environment with diffrecon)
set -euo pipefail
out=${1:-docs/mri_bench}
mkdir -p "$out"
bench="python scripts/bench_mri.py --split test --out $out/bench_mri.jsonl"
# classical baselines (TV at the λ tuned per mask) and DDS (posterior mean of 4 samples) on 5 subjects x 4 masks and the twix scan
$bench --subjects 5 --masks random:4 random:8 gaussian2d:8 poisson:8 --twix 4 8 --num-samples 4 --runs '[
  ["zero-filled", {}], ["cg-sense", {}], ["tv", {"lam": 0.003}], ["tv", {"lam": 0.005}],
  ["dds", {"warm_start": null}], ["dds", {"steps": 20, "warm_start": null}], ["dds", {"steps": 25, "warm_start": 0.5}],
  ["dds", {"phase_correction": false, "warm_start": null}]]'
# DDS at its default warm start (since 2026-12-05; the runs above start from noise, the default before: the lines of
# docs/mri_bench/bench_mri.jsonl that gave no warm_start ran so)
python scripts/bench_mri.py --split test --out "$out/bench_mri_warm.jsonl" --subjects 5 \
  --masks random:4 random:8 gaussian2d:8 poisson:8 --twix 4 8 --num-samples 4 --runs '[["dds", {"warm_start": 0.35}]]'
# Score-MRI (hybrid at its default; SSOS) on 3 subjects, 1D masks, the 2D masks and the twix scan
$bench --subjects 3 --masks random:4 random:8 gaussian2d:8 poisson:8 --twix 4 --num-samples 2 --runs '[["score-mri", {}]]'
$bench --subjects 3 --masks random:4 --num-samples 1 --runs '[["score-mri", {"variant": "ssos", "steps": 50, "warm_start": null}]]'
# PSNR against NFE: one subject, one sample each (its own file: the curve is drawn from every line of it)
python scripts/bench_mri.py --split test --out "$out/bench_mri_curve_warm.jsonl" --subjects 1 --masks random:4 \
  --num-samples 1 --curve "$out/psnr_nfe.png" --runs '[
  ["dds", {"steps": 5, "warm_start": null}], ["dds", {"steps": 10, "warm_start": null}],
  ["dds", {"steps": 20, "warm_start": null}], ["dds", {"steps": 50, "warm_start": null}],
  ["dds", {"steps": 100, "warm_start": null}],
  ["dds", {"steps": 5, "warm_start": 0.35}], ["dds", {"steps": 10, "warm_start": 0.35}],
  ["dds", {"steps": 20, "warm_start": 0.35}], ["dds", {"steps": 50, "warm_start": 0.35}],
  ["dds", {"steps": 100, "warm_start": 0.35}],
  ["dds", {"steps": 5, "warm_start": 0.5}], ["dds", {"steps": 10, "warm_start": 0.5}], ["dds", {"steps": 20, "warm_start": 0.5}],
  ["score-mri", {"steps": 10, "warm_start": null}], ["score-mri", {"steps": 30, "warm_start": null}],
  ["score-mri", {"steps": 100, "warm_start": null}], ["score-mri", {"steps": 10, "warm_start": 0.5}],
  ["score-mri", {"steps": 30, "warm_start": 0.5}], ["score-mri", {"steps": 60, "warm_start": 0.5}]]'
