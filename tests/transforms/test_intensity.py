from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.transforms import (EmissionNormalize, EmissionNormalized, MagnitudeNormalize, RandIntensityFactord,
                                  emission_mean)


def test_emission_normalisation_and_inverse():
    image = np.zeros((1, 8, 8, 4), np.float32)
    image[0, 2:6, 2:6] = 4.0
    image[0, 3, 3] = 8.0
    transform = EmissionNormalize(threshold=0.05)
    out = transform(image)
    assert out[out > 0].mean() == pytest.approx(1.0)
    np.testing.assert_allclose(transform.inverse(out), image)
    d = EmissionNormalized("image")({"image": torch.as_tensor(image)})
    assert d["image_scale"] == pytest.approx(emission_mean(image))
    with pytest.raises(InputError, match="no positive voxel"):
        emission_mean(np.zeros((4, 4)))
    with pytest.raises(InputError, match="NaN"):
        emission_mean(np.full((4, 4), np.nan))


def test_random_factor_range_and_same_factor_for_all_keys():
    transform = RandIntensityFactord(["a", "b"], factor_range=(0.5, 1.5)).set_random_state(0)
    factors = []
    for _ in range(200):
        out = transform({"a": np.ones(3), "b": 2 * np.ones(3)})
        assert out["b"][0] == pytest.approx(2 * out["a"][0])
        factors.append(out["a"][0])
    assert 0.5 <= min(factors) < 0.6 and 1.4 < max(factors) <= 1.5
    with pytest.raises(InputError, match="factor_range"):
        RandIntensityFactord("a", factor_range=(1.5, 0.5))


def test_magnitude_scaled_to_unit_range():
    image = torch.complex(torch.tensor([3.0, 0.0]), torch.tensor([4.0, -1.0]))
    torch.testing.assert_close(MagnitudeNormalize()(image), torch.tensor([1.0, 0.2]))
    with pytest.raises(InputError, match="all zero"):
        MagnitudeNormalize()(np.zeros(4))
