"""One MRI benchmark run: a method on a case and its figures as one JSON line (scripts/bench_mri.py,
scripts/check_coil_maps.py); the cases: phantoms, the real twix scan, real T1 images."""
from __future__ import annotations

import functools
import resource
import time

import numpy as np
import torch

from diffrecon.benchmarks.real_data import BRAINS_T1, MR_GRID, SPM_T1, TWIX, centred_source, per_slice_max
from diffrecon.benchmarks.records import resolved_settings, steering_figures, uncertainty_figures
from diffrecon.io.cases import load_mri_case
from diffrecon.io.demo_cases import scanned_mri_case, simulated_mri_case
from diffrecon.metrics import nrmse, psnr, ssim
from diffrecon.pipeline import method_for_case

REAL_T1 = {"spm12_t1": SPM_T1, "brains_test": BRAINS_T1["BRAINS T1 test (real, 4 mm)"],
           "brains_test2": BRAINS_T1["BRAINS T1 test2 (real, 4 mm)"]}  # evaluation only, never tuned on
FIGURES = ("psnr_db", "ssim", "nrmse", "network_evaluations", "network_images", "seconds", "seconds_network",
           "seconds_physics", "seconds_gradient")



def load_case(source: str, seed: int | str, mask: str, center_fraction: float, split: str, slices: int = 1):
    kind, _, acceleration = mask.partition(":")
    if source == "twix":
        return load_mri_case(TWIX, layout="cyx", readout_oversampling=2, mask=kind, acceleration=float(acceleration),
                             center_fraction=center_fraction, seed=0)
    if source == "real":
        return scanned_mri_case(real_t1_slice(seed), list(REAL_T1).index(seed), mask=kind,
                                acceleration=float(acceleration), center_fraction=center_fraction)
    return simulated_mri_case(seed, mask=kind, acceleration=float(acceleration), center_fraction=center_fraction,
                              split=split, slices=slices)


@functools.cache
def real_t1_slice(name: str) -> np.ndarray:
    """The central axial slice of real T1 volume ``name`` of ``REAL_T1`` on the prior's grid (read once per
    run, whatever the number of masks)."""
    return centred_source(REAL_T1[name], name, MR_GRID, per_slice_max).volume[..., MR_GRID.shape[2] // 2]


def run(case, name: str, settings: dict, num_samples: int, prior: str | None = None) -> dict:
    """One reconstruction of ``case`` and its figures; diffusion methods use ``prior`` (a prior bundle folder;
    default the shipped one)."""
    method = method_for_case(name, case, settings, prior)
    method.progress = False
    start = time.perf_counter()
    result = method(case.data, case.physics, num_samples=1 if method.deterministic else num_samples,
                    generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
    image = result.mean.abs().cpu().numpy()
    reference = np.asarray(case.reference)
    report = result.report
    return {"method": name, "settings": settings, "resolved": resolved_settings(name, settings),
            "num_samples": num_samples,
            "psnr_db": psnr(image, reference), "ssim": ssim(image, reference), "nrmse": nrmse(image, reference),
            "seconds": seconds, "network_evaluations": report.get("network_evaluations", 0),
            "network_images": report.get("network_images", 0), "seconds_network": report.get("seconds_network", 0.0),
            "seconds_physics": report.get("seconds_physics", 0.0),
            "seconds_gradient": report.get("seconds_gradient", 0.0), "data_residual": report.get("data_residual"),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "variant": report.get("variant"), **steering_figures(report), **uncertainty_figures(result, case)}
