"""One reconstruction from a loaded case to files: the method's inputs taken from the case, the call, the
comparison images and the writers. ``diffrecon recon`` and the method bundles both run it, so they reconstruct
and write the same way; each adds its own export (command-line options or ``export_result`` in a config).
``diffrecon demo`` (:func:`run_demo`) reconstructs the bundles' built-in PET case with three methods the same way."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffrecon.checks import InputError
from diffrecon.io.cases import Case
from diffrecon.io.figures import PET_COLORMAPS
from diffrecon.io.results import metrics_table, save_reconstruction
from diffrecon.methods import Method, Reconstruction, build_method
from diffrecon.methods.registry import METHODS, method_parameters, required_inputs

DEFAULT_PRIORS = {"PT": "pet_fdg_prior", "MR": "mr_t1_prior"}
DEFAULT_CORRECTION = "pet_deft"  # PET-DEFT's shipped h-networks
BUNDLE_INPUTS = ("prior", "correction")  # required inputs loaded from bundles (with defaults), not from the case
# RDP strength for the demo's activity units at 1% counts, chosen on training subjects 0 and 1 with
# `python scripts/tune_demo_rdp.py --count-level 1% --betas 0.1 0.3 1 4 16`: lowest brain NRMSE (0.222 vs
# OSEM 0.234) with lower white-matter noise (CoV 0.190 vs 0.219; rerun 2026-12-02 after the BSREM preconditioner
# fix, β 0.1 / 1: NRMSE 0.222 / 0.252).
DEMO_RDP_BETA = 0.3
CMAPS = {"PT": "gray_r", "MR": "gray"}  # PET activity dark on white, as read on PET workstations
QUANTITIES = {"PT": "activity (a.u.)", "MR": "magnitude (a.u.)"}  # the panels' colour-bar labels


def pet_case(sinogram: str | Path | None = None, *, demo: dict[str, Any] | None = None,
             device: str | torch.device = "cpu", **files: Any) -> Case:
    """The PET case of a bundle run: the user's (``sinogram`` and the ``files`` of
    :func:`diffrecon.io.cases.load_pet_case`: multiplicative, additive, mu_map, grid, psf_fwhm, and the images
    reference and mr), or, when ``sinogram`` is None, the built-in phantom case with the ``demo`` settings
    (:func:`diffrecon.io.demo_cases.simulated_pet_case`)."""
    from diffrecon.io.demo_cases import simulated_pet_case
    from diffrecon.io.cases import load_pet_case

    if sinogram is None:
        return simulated_pet_case(**(demo or {}), device=device)
    images = {key: files.pop(key) for key in ("reference", "mr") if files.get(key)}
    files = {key: value for key, value in files.items() if key not in ("reference", "mr")}
    return load_pet_case(sinogram, images=images, device=device, **files)


def mri_case(kspace: str | Path | None = None, *, demo: dict[str, Any] | None = None,
             device: str | torch.device = "cpu", **options: Any) -> Case:
    """The MRI case of a bundle run: the user's k-space with the ``options`` of
    :func:`diffrecon.io.cases.load_mri_case` (layout, readout_oversampling, slice_index, mask, acceleration,
    center_fraction, seed), or, when ``kspace`` is None, the built-in phantom case with the ``demo`` settings
    (:func:`diffrecon.io.demo_cases.simulated_mri_case`)."""
    from diffrecon.io.demo_cases import simulated_mri_case
    from diffrecon.io.cases import load_mri_case

    if kspace is None:
        return simulated_mri_case(**(demo or {}), device=device)
    return load_mri_case(kspace, device=device, **{key: value for key, value in options.items() if value is not None})


def method_inputs(name: str, case: Case, prior: str | Path | None = None,
                  priors: dict[tuple, Any] | None = None, correction: str | Path | None = None,
                  mr: bool | None = None) -> dict[str, Any]:
    """The inputs method ``name`` requires, from the case: ``prior`` from a prior bundle (name or folder;
    default the modality's shipped one) fitted to the case's grid, ``correction`` (PET-DEFT's h-networks) from a
    bundle or a training run's export folder (default the shipped ``pet_deft``; "none": no correction, the prior
    alone), others from the case's images (e.g. ``mr``).
    ``priors`` caches fitted priors (by bundle, schedule, image shape and device) across calls, so a process that
    reconstructs many cases (a cohort worker) loads each prior once.
    ``mr``: for a method that takes an MR optionally (the MR guidance of the PET diffusion methods), whether to give
    it the case's ``mr`` image: True (refused if the case has none, or later by the method if its prior is
    unconditional), False, or None: when the prior is conditioned on one and the case has one.

    Raises:
        InputError: an input the case does not have (named), or a prior bundle of another modality.
    """
    from diffrecon.methods.registry import get_method
    from diffrecon.priors.bundle import fit_prior

    modality = METHODS[name].modality
    inputs = {}
    for key in required_inputs(name):
        if key == "prior":
            bundle = prior or DEFAULT_PRIORS.get(modality)
            if bundle is None:
                raise InputError(f"method {name!r} needs a prior; no default prior bundle for modality {modality}")
            kind = get_method(name).schedule_kind.kind
            cache = {} if priors is None else priors  # SCD adapts its prior: one entry per method, not shared
            cache_key = (str(bundle), kind, tuple(case.physics.image_shape), str(case.data.device), name)
            if cache_key not in cache:
                cache[cache_key] = fit_prior(bundle, case.physics, kind, case.data.device, modality=modality,
                                             method_name=name)
            inputs[key] = cache[cache_key]
        elif key == "correction":
            from diffrecon.priors.correction import load_correction

            inputs[key] = None if str(correction).lower() == "none" else load_correction(
                correction or DEFAULT_CORRECTION, inputs["prior"], case.data.device)
        elif key in case.images:
            inputs[key] = case.images[key]
        else:
            raise InputError(f"method {name!r} needs the image {key!r}, which the case does not have")
    if "mr" not in inputs and "mr" in method_parameters(name) and mr is not False:
        conditioned = getattr(inputs.get("prior"), "condition_channels", 0) > 0
        if mr and "mr" not in case.images:
            raise InputError(f"method {name!r}: an MR was asked for, but the case has none")
        if "mr" in case.images and (mr or conditioned):
            inputs["mr"] = case.images["mr"]
    return inputs


def method_for_case(name: str, case: Case, options: dict[str, Any], prior: str | Path | None = None,
                    priors: dict[tuple, Any] | None = None, mr: bool | None = None) -> Method:
    """Method ``name`` built from the caller's ``options`` and the inputs it needs (:func:`method_inputs`): a bundle
    an option names (PET-DEFT's ``correction``) is loaded there and replaces the option."""
    inputs = method_inputs(name, case, prior, priors, correction=options.get("correction"), mr=mr)
    return build_method(name, **{**options, **inputs})


def comparisons(case: Case, method: Method) -> dict[str, torch.Tensor]:
    """Images shown and scored beside the method's: zero-filled for MRI methods, OSEM for diffusion PET."""
    if method.modality == "MR" and method.name != "zero-filled":
        return {"zero-filled": build_method("zero-filled")(case.data, case.physics).mean}
    if method.modality == "PT" and not method.deterministic:
        return {"osem": build_method("osem", progress=False)(case.data, case.physics).mean}
    return {}


def check_colormap(colormap: str | None, modality: str) -> str:
    """The panel's colour map: ``colormap`` (PET: one of :data:`PET_COLORMAPS`) or the modality's default.

    Raises:
        InputError: another colour map, or one given for MRI (magnitude images are shown in grey).
    """
    if colormap is None:
        return CMAPS[modality]
    if modality != "PT":
        raise InputError(f"colormap {colormap!r} is for PET images; MRI magnitude images are shown in grey")
    if colormap not in PET_COLORMAPS:
        raise InputError(f"colormap {colormap!r}; expected one of {', '.join(PET_COLORMAPS)}")
    return colormap


def lesion_inputs(case: Case) -> dict[str, Any]:
    """The masks a phantom case gives the uncertainty figures (:func:`diffrecon.uncertainty.uncertainty_metrics`):
    the brain (tissue labels 1-3), its lesions and the lesion-free white matter they are compared against; none
    for a case without labels (the object mask is used then)."""
    images = case.images
    if "labels" not in images:
        return {"mask": images["brain"]} if "brain" in images else {}
    shape = np.shape(images["labels"])
    lesions = np.asarray(images.get("lesions", np.zeros((0, *shape))), dtype=bool).reshape(-1, *shape)
    inputs: dict[str, Any] = {"mask": np.isin(images["labels"], [1, 2, 3])}
    if len(lesions) and "white_matter" in images:
        inputs.update(lesion_masks=lesions,
                      background_mask=(np.asarray(images["white_matter"]) > 0.9) & ~lesions.any(axis=0))
    return inputs


def reconstruct_case(case: Case, method: Method, out: str | Path, *, num_samples: int = 1,
                     seed: int = 0, colormap: str | None = None) -> tuple[Reconstruction, dict[str, Any]]:
    """Reconstruct ``case`` with ``method`` (samples drawn from ``seed``) and write the result to ``out``
    (:func:`diffrecon.io.results.save_reconstruction`; the panel in ``colormap``, default the modality's:
    :func:`check_colormap`); returns the result and the report as written."""
    cmap = check_colormap(colormap, method.modality)
    generator = torch.Generator(case.data.device).manual_seed(int(seed))
    result = method(case.data, case.physics, num_samples=num_samples, generator=generator)
    written = save_reconstruction(out, method.name, result.mean, case.affine, {**result.report, **case.info},
                                  std=result.std, samples=result.samples, reference=case.reference,
                                  comparisons=comparisons(case, method), cmap=cmap,
                                  quantity=QUANTITIES[method.modality], physics=case.physics,
                                  **lesion_inputs(case))
    return result, written


def run_demo(out: str | Path, *, seed: int | None = None, count_level: str = "1%", preset: str = "demo",
             device: str | torch.device = "cpu", colormap: str = "gray_r") -> dict[str, dict[str, float]]:
    """``diffrecon demo``: a test-split phantom subject (three hot lesions) scanned on ``preset`` at
    ``count_level`` (the built-in case of the bundles, :func:`pet_case`), reconstructed with OSEM, MAP-EM with the
    relative difference prior and PET-LiSch at its defaults; NIfTI volumes, a PNG panel (in ``colormap``, one
    of :data:`PET_COLORMAPS`) and a metrics table (markdown and JSON) written to ``out``. Returns the metrics by
    method."""
    import json

    from diffrecon.checks import check_device, check_output_dir
    from diffrecon.data.splits import subject_seeds
    from diffrecon.io.figures import save_panel
    from diffrecon.io.nifti import save_nifti
    from diffrecon.metrics import phantom_metrics
    from diffrecon.physics.pet_simulation import trues_per_direct_plane

    trues_per_direct_plane(count_level)  # validate before any work
    check_colormap(colormap, "PT")
    check_device("--device", device)
    out = check_output_dir("--out", out)
    seed = subject_seeds("test", 1)[0] if seed is None else int(seed)
    case = pet_case(demo={"seed": seed, "preset": preset, "count_level": count_level, "lesions": 3,
                          "lesion_kinds": "hot", "noise_seed": seed}, device=device)
    grid, scanner = case.physics.grid, case.physics.projector.scanner
    print(f"[1/3] phantom subject {seed} on a {grid.shape} grid of {grid.voxel_size_mm[0]} mm voxels, {count_level} "
          f"counts on the {preset} scanner ({scanner.n_rings} rings, {scanner.n_sinograms} sinograms x "
          f"{scanner.n_views} views x {scanner.n_bins} bins)")
    print("[2/3] reconstructing")
    methods = {"OSEM": build_method("osem", iterations=4, subsets=8),
               "MAP-RDP": build_method("map-rdp", beta=DEMO_RDP_BETA, iterations=10, subsets=8),
               # its defaults, tuned on validation subjects (docs/pet_diffusion.md): K = 3 OSEM iterations
               # over 8 subsets, warm start, 8 NFE
               "PET-LiSch": method_for_case("pet-lisch", case, {})}
    results, timings = {}, {}
    for name, method in methods.items():
        result = method(case.data, case.physics, generator=torch.Generator(device).manual_seed(seed))
        results[name], timings[name] = result.mean.cpu().numpy(), result.report["seconds"]
        print(f"      {name}: {timings[name]:.1f} s")

    print("[3/3] writing results")
    truth, lesions = case.reference, case.images["lesions"]
    rows = {}
    for name, image in results.items():
        metrics = phantom_metrics(image, truth, case.images["labels"], lesions, case.images["white_matter"])
        metrics.pop("crc_cold_lesions")  # the demo's lesions are all hot
        rows[name] = {**metrics, "seconds": timings[name]}
        save_nifti(out / f"{name.lower().replace('-', '_')}.nii.gz", image, case.affine)
    for name, image in (("truth_fdg", truth), ("mu_map", case.images["mu_map"]), ("t1", case.images["mr"])):
        save_nifti(out / f"{name}.nii.gz", image, case.affine)
    save_panel(out / "panel.png", {"ground truth": truth, **results, "PET-LiSch - truth": results["PET-LiSch"] - truth},
               title=f"diffrecon demo: subject {seed}, {count_level} counts", signed={"PET-LiSch - truth"},
               cmap=colormap, quantity=QUANTITIES["PT"],
               centre=tuple(int(c) for c in np.argwhere(lesions[0]).mean(axis=0).round()),
               annotations={name: f"PSNR {row['psnr_db']:.1f} dB, SSIM {row['ssim']:.3f}" for name, row in rows.items()})
    (out / "metrics.json").write_text(json.dumps(rows, indent=2))
    table = metrics_table(rows, headers={"nrmse": "NRMSE (brain)"})
    (out / "metrics.md").write_text(table + "\n")
    print(table)
    print(f"results in {out.resolve()}: panel.png, metrics.md, *.nii.gz")
    return rows
