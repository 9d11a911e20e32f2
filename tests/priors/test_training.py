from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.priors import ContinuousPrepareBatch, FixedNoisePrepareBatch


def test_fixed_noise_is_reproducible_per_item():
    prepare = FixedNoisePrepareBatch(1000, timesteps=[10, 500], seed=3)
    batch = {"image": torch.rand(3, 1, 4, 4), "index": torch.tensor([0, 1, 2])}
    _, target1, _, kwargs1 = prepare(batch)
    _, target2, _, kwargs2 = prepare({"image": batch["image"][1:], "index": torch.tensor([1, 2])})
    torch.testing.assert_close(target1[1:], target2)
    assert kwargs1["timesteps"].tolist() == [10.0, 500.0, 10.0]
    with pytest.raises(InputError, match="'index'"):
        prepare({"image": batch["image"]})
    with pytest.raises(InputError, match="timesteps"):
        FixedNoisePrepareBatch(1000, timesteps=[1000])


def test_continuous_times_cover_the_range():
    t = ContinuousPrepareBatch(1000).get_timesteps(torch.zeros(4000, 1))
    assert t.min() >= 0 and t.max() <= 999 and t.dtype.is_floating_point
    assert (t != t.round()).any() and t.mean().item() == pytest.approx(499.5, abs=15)
