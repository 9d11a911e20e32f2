"""Write a reconstruction: NIfTI mean (and std), the other images shown beside it, a JSON report with metrics
against the reference, and a PNG panel; shared by ``diffrecon recon`` and the method bundles."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diffrecon.checks import InputError
from diffrecon.io.figures import save_panel
from diffrecon.io.nifti import save_nifti


def as_volume(image: Any) -> np.ndarray:
    """A magnitude (x, y, z) numpy volume of an image tensor or array (2D images get a z axis of 1)."""
    volume = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    volume = np.abs(volume) if np.iscomplexobj(volume) else volume
    return volume[..., None] if volume.ndim == 2 else volume


def save_reconstruction(out: str | Path, name: str, mean: Any, affine: np.ndarray, report: Mapping[str, Any], *,
                        std: Any = None, samples: Any = None, reference: Any = None,
                        comparisons: Mapping[str, Any] | None = None, cmap: str = "gray",
                        title: str | None = None) -> dict[str, Any]:
    """Write ``<name>.nii.gz`` (and ``<name>_std.nii.gz``, the samples as a 4D ``<name>_samples.nii.gz``), the
    ``comparisons`` and ``reference.nii.gz``, then ``<name>.json`` (``report`` plus NRMSE/PSNR/SSIM of every
    image against the reference) and ``<name>.png``.

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
    for key, volume in volumes.items():
        save_nifti(out / f"{key}.nii.gz", volume, affine)
    report = dict(report)
    columns, annotations = dict(images), {}
    if reference is not None:
        from diffrecon.metrics import nrmse, psnr, ssim

        truth = volumes["reference"]
        report["metrics"] = {key: {"nrmse": nrmse(image, truth), "psnr_db": psnr(image, truth),
                                   "ssim": ssim(image, truth)} for key, image in images.items()}
        annotations = {key: f"PSNR {m['psnr_db']:.2f} dB  SSIM {m['ssim']:.3f}" for key, m in report["metrics"].items()}
        columns = {"reference": truth, **images, "error": images[name] - truth}
    if std is not None:
        columns["std"] = volumes[f"{name}_std"]
    partial = out / f"{name}.json.partial"
    partial.write_text(json.dumps(report, indent=2))
    partial.replace(out / f"{name}.json")
    save_panel(out / f"{name}.png", columns, title=title or str(report.get("description", name)),
               annotations=annotations, signed={"error"}, cmap=cmap,
               vmax=float(np.percentile(next(iter(columns.values())), 99.5)))
    return report
