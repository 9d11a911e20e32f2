from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.priors import FixedNoisePrepareBatch


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
