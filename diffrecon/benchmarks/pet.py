"""One PET benchmark run: a method on a case and its figures as one JSON line (scripts/bench_pet.py,
scripts/bench_personalised.py), the real brains scanned on the demo scanner, and the markdown table of such lines
(scripts/bench_pet.py, scripts/bench_table.py)."""
from __future__ import annotations

import json
import resource
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_fill_holes

from diffrecon.benchmarks.real_data import fdg_source, spm_pet_source, t1_on_grid
from diffrecon.benchmarks.records import (resolved_settings, steering_figures, uncertainty_cells, uncertainty_figures,
                                          uncertainty_header)
from diffrecon.checks import check_choice
from diffrecon.data.phantoms import MU_SOFT_TISSUE, make_subject
from diffrecon.io.demo_cases import scanned_pet_case
from diffrecon.metrics import bias_and_variance, nrmse, phantom_metrics, psnr, ssim
from diffrecon.physics.geometry import get_preset
from diffrecon.pipeline import method_for_case

# out-of-family brains (diffrecon.benchmarks.real_data; evaluation only, never trained on)
REAL_BRAINS = {"fdg_sts001": fdg_source, "spm12_pet": spm_pet_source}
FIGURES = ("nrmse", "psnr_db", "ssim", "crc_hot_lesions", "crc_cold_lesions", "white_matter_cov", "seconds",
           "seconds_network", "seconds_physics", "seconds_gradient", "network_evaluations")


def run(case, name: str, settings: dict, num_samples: int, seed: int, prior: str | Path | None = None
        ) -> tuple[dict, np.ndarray]:
    """One reconstruction of ``case`` and its figures; diffusion methods use ``prior`` (a prior bundle; default
    the shipped one). With an MR-conditioned prior the case's T1 is given to the method (MR guidance) unless the
    settings name ``mr`` themselves (``{"mr": null}``: the prior's unconditional score)."""
    method = method_for_case(name, case, settings, prior, mr=False if "mr" in settings else None)
    method.progress = False
    start = time.perf_counter()
    result = method(case.data, case.physics, num_samples=1 if method.deterministic else num_samples,
                    generator=torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - start
    image = result.mean.cpu().numpy()
    report = result.report
    truth = np.asarray(case.reference)
    figures = (phantom_metrics(image, truth, case.images["labels"], case.images["lesions"],
                               case.images["white_matter"]) if "labels" in case.images else
               {"psnr_db": psnr(image, truth), "ssim": ssim(image, truth),
                "nrmse": nrmse(image, truth, case.images["brain"])})
    line = {"method": name, "settings": settings, "resolved": resolved_settings(name, settings),
            "num_samples": num_samples, **figures,
            "seconds": seconds, "network_evaluations": report.get("network_evaluations", 0),
            "seconds_network": report.get("seconds_network", 0.0), "seconds_physics": report.get("seconds_physics"),
            "seconds_gradient": report.get("seconds_gradient", 0.0),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "log_likelihood": float(np.mean(report.get("final_log_likelihood") or report["log_likelihood"][-1:])),
            **{k: report[k] for k in ("likelihood_steps", "capped_steps") if k in report}, **steering_figures(report),
            **uncertainty_figures(result, case)}
    return line, image


def real_brain_case(name: str, count_level: str, noise_seed: int, preset: str = "demo"):
    """A real brain PET volume of ``REAL_BRAINS`` on the demo grid (as scripts/check_prior_generalisation.py
    places it) scanned on the demo scanner, or with ``preset`` "demo2d" its axial slice with the most scored
    voxels scanned on the demo2d scanner (the same in-plane grid); μ-map: water in the head. Its "brain" image
    holds the scored voxels (the FDG series: its brain slices only); its "mr" image the T1 where one exists in
    the same coordinates (the SPM12 template pair)."""
    check_choice("preset", preset, ("demo", "demo2d"))
    source = REAL_BRAINS[name]()
    images = {"brain": source.scored, "mr": t1_on_grid(source)}
    volume = source.volume
    if preset == "demo2d":
        plane = int(np.argmax(source.scored.sum(axis=(0, 1))))
        volume = volume[..., plane:plane + 1]
        images = {key: None if image is None else image[..., plane:plane + 1] for key, image in images.items()}
    head = np.stack([binary_fill_holes(plane) for plane in np.moveaxis(volume > 0.02, 2, 0)], axis=2)
    mu_map = np.where(head, MU_SOFT_TISSUE, 0.0).astype(np.float32)
    return scanned_pet_case(volume, mu_map, preset, count_level, noise_seed=noise_seed,
                            images={key: image for key, image in images.items() if image is not None},
                            info={"source": source.name})


def summarise(lines: list[dict]) -> str:
    """Markdown table of mean figures per configuration (best NRMSE first), with bias and variance across noise
    realisations where images were kept."""
    groups: dict[str, list[dict]] = {}
    for line in lines:
        key = json.loads(line["key"])
        groups.setdefault(json.dumps([key[0], key[1], key[4], key[5], key[6], *key[7:]]), []).append(line)
    rows = ["| preset, counts, method, settings, samples | n | NRMSE | PSNR | SSIM | CRC hot | CRC cold | WM CoV | "
            f"bias | variance | NFE | s (network, physics) | {uncertainty_header()} |",
            "|---" * (12 + len(uncertainty_header().split(" | "))) + "|"]
    for group, members in sorted(groups.items(), key=lambda item: np.mean([m["nrmse"] for m in item[1]])):
        mean = {k: float(np.nanmean([(m[k] or 0.0) if k in m else np.nan for m in members])) for k in FIGURES}
        bias, variance = bias_variance(members)
        rows.append(f"| {group} | {len(members)} | {mean['nrmse']:.4f} | {mean['psnr_db']:.2f} | {mean['ssim']:.3f} | "
                    f"{mean['crc_hot_lesions']:.2f} | {mean['crc_cold_lesions']:.2f} | "
                    f"{mean['white_matter_cov']:.3f} | {bias} | {variance} | {mean['network_evaluations']:.0f} | "
                    f"{mean['seconds']:.1f} ({mean['seconds_network']:.1f}, {mean['seconds_physics']:.1f}) | "
                    f"{uncertainty_cells(members)} |")
    return "\n".join(rows)


def bias_variance(members: list[dict]) -> tuple[str, str]:
    """Relative bias and variance (:func:`diffrecon.metrics.bias_and_variance`) over the noise realisations of
    each subject, averaged over subjects; '-' without kept images or with one realisation."""
    by_subject: dict[int, list[np.ndarray]] = {}
    for member in members:
        if "image" in member and Path(member["image"]).is_file():
            by_subject.setdefault(member["seed"], []).append(np.load(member["image"]).astype(np.float32))
    pairs = []
    for seed, images in by_subject.items():
        if len(images) > 1:
            subject = make_subject(seed, get_preset(json.loads(members[0]["key"])[0]).grid, lesions=3,
                                   lesion_kinds="mixed")
            brain = np.isin(subject.labels, [1, 2, 3])
            pairs.append(bias_and_variance(np.stack(images), subject.fdg, brain))
    if not pairs:
        return "-", "-"
    return f"{np.mean([p[0] for p in pairs]):.3f}", f"{np.mean([p[1] for p in pairs]):.4f}"
