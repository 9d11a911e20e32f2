"""The wide phantom population the PET priors are trained on: same draws as the standard one, wider ranges."""
from __future__ import annotations

import numpy as np
import pytest

from diffrecon.checks import InputError
from diffrecon.data.datasets import phantom_items
from diffrecon.data.phantoms import FDG_ACTIVITY, FDG_ACTIVITY_WIDE, LABELS, make_subject
from diffrecon.physics.geometry import ImageGrid

SMALL = ImageGrid((40, 48, 40), (4.5, 4.5, 4.5))


def _scalp_activity(subject) -> float:
    return float(np.median(subject.fdg[subject.labels == LABELS["scalp"]]))


def test_wide_population_draws_the_same_numbers_in_wider_ranges():
    standard, wide = (make_subject(3, SMALL, population=p) for p in ("standard", "wide"))
    (low, high), (wide_low, wide_high) = FDG_ACTIVITY["scalp"], FDG_ACTIVITY_WIDE["scalp"]
    draw = (_scalp_activity(standard) - low) / (high - low)
    assert _scalp_activity(wide) == pytest.approx(wide_low + draw * (wide_high - wide_low), rel=1e-5)
    assert wide.amyloid_positive == standard.amyloid_positive
    assert not np.array_equal(wide.labels, standard.labels)  # larger warps
    with pytest.raises(InputError, match="population"):
        make_subject(3, SMALL, population="narrow")


def test_fdg_wide_phantom_items_are_cached_apart(tmp_path):
    args = {"grid_shape": SMALL.shape, "voxel_size_mm": SMALL.voxel_size_mm, "cache_dir": tmp_path}
    standard, wide = (phantom_items(1, contrast, **args)[0]["image"] for contrast in ("fdg", "fdg_wide"))
    assert standard.shape == wide.shape == (1, *SMALL.shape) and not np.array_equal(standard, wide)
    assert sorted(p.name.split("_4")[0] for p in tmp_path.glob("*.npy")) == ["fdg", "fdg_wide"]
