"""PNG panels for users: columns of images side by side, three orthogonal views for volumes, grids of samples."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported where needed: the command line reads PET_COLORMAPS without loading torch
    import torch


def orthogonal_views(volume: np.ndarray, centre: tuple[int, int, int] | None = None) -> list[np.ndarray]:
    """Axial, coronal and sagittal slices of an (x, y, z) RAS volume, oriented for display (anterior/superior up)."""
    volume = np.asarray(volume)
    cx, cy, cz = centre if centre is not None else tuple(n // 2 for n in volume.shape[:3])
    axial = volume[:, :, cz].T[::-1]  # rows: y (anterior at top), columns: x
    coronal = volume[:, cy, :].T[::-1]  # rows: z (superior at top), columns: x
    sagittal = volume[cx, :, :].T[::-1]  # rows: z, columns: y
    return [axial, coronal, sagittal]


VIEWS = ("axial", "coronal", "sagittal")  # the rows of a volume's panel, as orthogonal_views returns them
PET_COLORMAPS = ("gray_r", "hot")  # inverted grey or hot, as PET viewers offer


def save_panel(path: str | Path, columns: Mapping[str, np.ndarray], title: str = "",
               annotations: Mapping[str, str] | None = None, signed: set[str] | frozenset[str] = frozenset(),
               vmax: float | None = None, cmap: str = "gray",
               centre: tuple[int, int, int] | None = None, quantity: str = "intensity (a.u.)",
               own_scale: set[str] | frozenset[str] = frozenset(), quantities: Mapping[str, str] | None = None
               ) -> Path:
    """Save a grid: one column per named image; 2D images give one row, 3D volumes three orthogonal rows
    labelled by view. Every scale has a colour bar labelled ``quantity``, so values can be read off the panel.

    Args:
        path: output PNG path.
        columns: column title -> 2D (x, y) image or 3D (x, y, z) volume; all 2D or all 3D (a volume with one
            slice counts as 2D).
        title: figure title.
        annotations: column title -> text printed under that column (e.g. "PSNR 31.2 dB").
        signed: columns drawn with a symmetric diverging colour map and a colour bar each (differences, errors).
        vmax: shared upper display limit of the other columns (default: 99.5th percentile of the first column,
            so a few hot voxels do not wash out the rest); they share one colour bar.
        cmap: matplotlib colour map of the unsigned columns.
        centre: voxel where the three orthogonal views of volumes cross (default: the volume centre).
        quantity: what the values are, with their units (e.g. "activity (a.u.)"), the colour bars' label.
        own_scale: unsigned columns on their own scale from 0 with a colour bar each (a standard deviation,
            invisible on the images' scale).
        quantities: column title -> its colour bar's label where it is not ``quantity`` (e.g. a z-score map's,
            in standard deviations); for a column with its own colour bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    arrays = {name: np.squeeze(np.asarray(image, dtype=np.float32)) for name, image in columns.items()}
    first = next(iter(arrays.values()))
    rows = ([orthogonal_views(a, centre) for a in arrays.values()] if first.ndim == 3
            else [[a.T[::-1]] for a in arrays.values()])
    n_rows, n_cols = len(rows[0]), len(arrays)
    shared = [name for name in arrays if name not in signed and name not in own_scale]
    shared_columns = [col for col, name in enumerate(arrays) if name in shared]
    n_bars = (1 if shared else 0) + n_cols - len(shared)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.6 * n_cols + 0.8 * n_bars, 2.6 * n_rows + 0.6),
                             squeeze=False, layout="constrained")
    shared_limit = (float(np.percentile(first, 99.5)) if vmax is None else vmax) or 1.0
    limits = {}  # name -> (vmin, vmax)
    for name, array in arrays.items():
        if name in signed:
            limit = float(np.abs(array).max()) or 1.0
            limits[name] = (-limit, limit)
        else:
            limits[name] = (0.0, (float(np.percentile(array, 99.5)) or 1.0) if name in own_scale else shared_limit)
    for col, (name, views) in enumerate(zip(arrays, rows)):
        for row, view in enumerate(views):
            ax = axes[row, col]
            shown = ax.imshow(view, cmap="RdBu_r" if name in signed else cmap, vmin=limits[name][0],
                              vmax=limits[name][1])
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0 and first.ndim == 3:
                ax.set_ylabel(VIEWS[row], fontsize=9)
            if row == n_rows - 1 and annotations and name in annotations:
                ax.set_xlabel(annotations[name], fontsize=8)
        if name not in shared or name == shared[-1]:  # a colour bar right of each scale's columns
            bar_columns = shared_columns if name in shared else [col]
            bar = fig.colorbar(shown, ax=axes[:, bar_columns].ravel().tolist(), shrink=0.8, aspect=30)
            bar.set_label(quantity if name in shared else (quantities or {}).get(name, quantity), fontsize=8)
            bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_sample_grid(path: str | Path, samples: torch.Tensor | np.ndarray, title: str, columns: int = 8) -> Path:
    """Save the first ``columns`` 2D samples (n, rows, cols) side by side as a PNG, on one grey scale (up to
    the 99.5th percentile of the shown samples)."""
    import torch

    shown = np.asarray(torch.as_tensor(samples).detach().cpu(), dtype=np.float32)[:columns]
    return save_panel(path, {f"sample {i + 1}": image for i, image in enumerate(shown)}, title=title,
                      vmax=float(np.percentile(shown, 99.5)))


def save_samples(output_dir: str | Path, name: str, samples: torch.Tensor | np.ndarray, columns: int = 8) -> Path:
    """Save 2D samples (n, rows, cols) as ``<name>_samples.npy`` and a PNG grid ``<name>_samples.png``
    (:func:`save_sample_grid`); returns the PNG path."""
    import torch

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    samples = np.asarray(torch.as_tensor(samples).detach().cpu(), dtype=np.float32)
    np.save(output_dir / f"{name}_samples.npy", samples)
    return save_sample_grid(output_dir / f"{name}_samples.png", samples, f"{name}: unconditional samples", columns)
