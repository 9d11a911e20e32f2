"""Registration overlays for quality control: the fixed MR in green, the moving MR in magenta (grey where they
agree), before and after registration, in three orthogonal views."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from diffrecon.io.figures import orthogonal_views


def save_overlay(path: str | Path, fixed: np.ndarray, before: np.ndarray, after: np.ndarray, title: str) -> Path:
    """Save the overlay PNG of ``fixed`` with the moving image ``before`` and ``after`` registration (all three
    on the fixed grid); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.2))
    for row, (label, moving) in enumerate((("before", before), ("after", after))):
        for column, (green, magenta) in enumerate(zip(orthogonal_views(_unit(fixed)), orthogonal_views(_unit(moving)))):
            axes[row, column].imshow(np.stack([magenta, green, magenta], axis=-1), interpolation="nearest")
            axes[row, column].set_axis_off()
        axes[row, 0].set_title(f"{label} (fixed green, moving magenta)", fontsize=9, loc="left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _unit(image: np.ndarray) -> np.ndarray:
    """``image`` scaled to [0, 1] by its 99.5th percentile."""
    image = np.asarray(image, dtype=np.float32)
    top = float(np.percentile(image, 99.5)) or 1.0
    return np.clip(image / top, 0, 1)
