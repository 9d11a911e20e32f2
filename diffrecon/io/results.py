"""Write a reconstruction: NIfTI mean (and std), the other images shown beside it, a JSON report with metrics
against the reference, and a PNG panel; shared by ``diffrecon recon`` and the method bundles. The metrics table
that ``diffrecon demo`` and a bundle run print is :func:`metrics_table`."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diffrecon.checks import InputError
from diffrecon.io.figures import save_panel
from diffrecon.io.nifti import save_nifti

# metric key -> (column header, value format), in the order the columns are shown
METRIC_COLUMNS = {"psnr_db": ("PSNR (dB)", "{:.2f}"), "ssim": ("SSIM", "{:.3f}"),
                  "nrmse": ("NRMSE", "{:.3f}"), "crc_hot_lesions": ("CRC (hot lesions)", "{:.2f}"),
                  "white_matter_cov": ("white-matter CoV", "{:.3f}"), "seconds": ("time (s)", "{:.1f}")}


def metrics_table(rows: Mapping[str, Mapping[str, float]], headers: Mapping[str, str] | None = None) -> str:
    """A markdown table of metrics by method (or image), one row each: the columns of :data:`METRIC_COLUMNS`
    that some row has ("-" where another lacks it), ``headers`` renaming some (e.g. {"nrmse": "NRMSE (brain)"});
    empty without rows. ``diffrecon demo`` and the bundle runs print it, so both show their numbers alike."""
    keys = [key for key in METRIC_COLUMNS if any(key in row for row in rows.values())]
    if not keys:
        return ""
    names = [(headers or {}).get(key, METRIC_COLUMNS[key][0]) for key in keys]
    lines = ["| method | " + " | ".join(names) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(METRIC_COLUMNS[key][1].format(row[key]) if key in row else "-"
                                         for key in keys) + " |" for name, row in rows.items()]
    return "\n".join(lines)


def as_volume(image: Any) -> np.ndarray:
    """A magnitude (x, y, z) numpy volume of an image tensor or array (2D images get a z axis of 1)."""
    volume = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    volume = np.abs(volume) if np.iscomplexobj(volume) else volume
    return volume[..., None] if volume.ndim == 2 else volume


def save_reconstruction(out: str | Path, name: str, mean: Any, affine: np.ndarray, report: Mapping[str, Any], *,
                        std: Any = None, samples: Any = None, reference: Any = None,
                        comparisons: Mapping[str, Any] | None = None, cmap: str = "gray",
                        quantity: str = "intensity (a.u.)", title: str | None = None, physics: Any = None,
                        mask: Any = None, lesion_masks: Any = None, background_mask: Any = None,
                        uncertainty_panel: bool = True) -> dict[str, Any]:
    """Write ``<name>.nii.gz`` (and ``<name>_std.nii.gz``, the samples as a 4D ``<name>_samples.nii.gz``), the
    ``comparisons`` and ``reference.nii.gz``, then ``<name>.json`` (``report`` plus NRMSE/PSNR/SSIM of every
    image against the reference) and ``<name>.png`` (``cmap`` and a colour bar labelled ``quantity``, the images'
    values with units; the std on its own scale).

    With a reference and a non-zero std, the result's metrics add the uncertainty figures of
    :func:`diffrecon.uncertainty.uncertainty_metrics` (coverage of mean ± 1 and 2 std and mean |z| over ``mask``,
    default the object; with ``physics`` the null-space error fraction; with ``lesion_masks`` and
    ``background_mask`` the lesions recovered, erased and invented), and ``uncertainty_panel`` writes
    ``<name>_uncertainty.png``: z-score map and, with ``physics``, the null-space (hallucination) and
    measurement-space parts of the error (:func:`uncertainty_panel_columns`).

    Images are tensors or arrays (x, y[, z]); complex ones are written as magnitudes. The JSON is written under a
    temporary name and renamed, so a complete-looking report never describes missing images.

    Returns:
        The report as written (with its metrics).
    """
    out = Path(out)
    images = {**{key: as_volume(image) for key, image in (comparisons or {}).items()}, name: as_volume(mean)}
    volumes = dict(images)
    if std is not None:
        volumes[f"{name}_std"] = as_volume(std)
    if reference is not None:
        volumes["reference"] = as_volume(reference)
    if samples is not None:  # (x, y, z, num_samples)
        volumes[f"{name}_samples"] = np.stack([as_volume(sample) for sample in samples], axis=-1)
    for key, volume in volumes.items():
        if volume.shape[:3] != images[name].shape:
            raise InputError(f"{key} has shape {volume.shape}; expected the reconstruction's {images[name].shape}")
    report = dict(report)
    columns, annotations, uncertainty = dict(images), {}, None
    if reference is not None:
        from diffrecon.metrics import nrmse, psnr, ssim

        truth = volumes["reference"]
        report["metrics"] = {key: {"nrmse": nrmse(image, truth), "psnr_db": psnr(image, truth),
                                   "ssim": ssim(image, truth)} for key, image in images.items()}
        annotations = {key: f"PSNR {m['psnr_db']:.2f} dB  SSIM {m['ssim']:.3f}" for key, m in report["metrics"].items()}
        if std is not None and float(np.max(volumes[f"{name}_std"])) > 0:
            from diffrecon.uncertainty import uncertainty_metrics

            calibration = report.get("std_calibration") or {}
            figures = uncertainty_metrics(reference, mean, std, samples, physics, mask, lesion_masks,
                                          background_mask, calibration.get("factor", 1.0))
            report["metrics"][name].update({key: value for key, value in figures.items() if value is not None})
            if uncertainty_panel:
                uncertainty = (uncertainty_panel_columns(reference, mean, std, physics, mask), _coverage_text(figures))
        columns = {"reference": truth, **images, "error": images[name] - truth}
    if std is not None:
        columns["std"] = volumes[f"{name}_std"]
    for key, volume in volumes.items():  # every figure computed: nothing fails after the first file is written
        save_nifti(out / f"{key}.nii.gz", volume, affine)
    if uncertainty is not None:
        save_panel(out / f"{name}_uncertainty.png", uncertainty[0],
                   title=f"{report.get('description', name)}: uncertainty against the reference",
                   signed={"z-score", "null-space error", "measurement-space error"}, own_scale={"std"},
                   cmap=cmap, quantity=quantity, annotations={"z-score": uncertainty[1]},
                   quantities={"z-score": "(truth − mean) / std"})
    partial = out / f"{name}.json.partial"
    partial.write_text(json.dumps(report, indent=2))
    partial.replace(out / f"{name}.json")
    save_panel(out / f"{name}.png", columns, title=title or str(report.get("description", name)),
               annotations=annotations, signed={"error"}, own_scale={"std"}, cmap=cmap, quantity=quantity,
               vmax=float(np.percentile(next(iter(columns.values())), 99.5)))
    return report


def _coverage_text(figures: Mapping[str, Any]) -> str:
    """The coverage line printed under the z-score map."""
    text = f"{figures['coverage_1std']:.0%} within 1 SD, {figures['coverage_2std']:.0%} within 2"
    fraction = figures.get("null_space_fraction")
    return text if fraction is None else f"{text}; null {fraction:.2f}"


def uncertainty_panel_columns(reference: Any, mean: Any, std: Any, physics: Any = None, mask: Any = None
                              ) -> dict[str, np.ndarray]:
    """The uncertainty panel's columns as volumes: reference, mean, std, the z-score map (truth − mean) / std
    (zero outside ``mask``, default the object) and, with ``physics``, the null-space and measurement-space parts
    of the error mean − reference (:func:`diffrecon.uncertainty.hallucination_map`; complex parts shown along
    the mean's phase)."""
    from diffrecon.uncertainty import hallucination_map, object_mask, z_scores

    z = z_scores(reference, mean, std)
    inside = object_mask(reference) if mask is None else np.asarray(mask, dtype=bool)
    columns = {"reference": as_volume(reference), "mean": as_volume(mean), "std": as_volume(std),
               "z-score": as_volume(np.where(inside, z, 0.0))}
    if physics is not None:
        import torch

        parts = hallucination_map(mean, reference, physics, mask=mask)
        phase = torch.sgn(torch.as_tensor(mean)).to(parts.null.device) if parts.null.is_complex() else None
        for key, part in (("null-space error", parts.null), ("measurement-space error", parts.measurement)):
            # complex (MRI): the part along the estimate's phase, the signed magnitude error
            columns[key] = as_volume(part if phase is None else (part * phase.conj()).real)
    return columns
