"""Training augmentations of the PET priors: resolution (RandResolution) and background halo (RandHalo)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.transforms import RandHalo, RandHalod, RandResolution, RandResolutiond, gaussian_blur


def _impulse(size: int = 33) -> np.ndarray:
    image = np.zeros((1, size, size, size), np.float32)
    image[0, size // 2, size // 2, size // 2] = 1.0
    return image


def test_gaussian_blur_has_the_asked_width_in_mm_and_keeps_the_type():
    voxel = (3.0, 2.0, 3.0)
    blurred = gaussian_blur(_impulse(), 9.0, voxel)
    assert isinstance(blurred, np.ndarray) and blurred.sum() == pytest.approx(1.0, rel=1e-4)
    for axis, size in enumerate(voxel):  # standard deviation of the profile along each axis, in mm
        profile = blurred[0].sum(axis=tuple(a for a in range(3) if a != axis))
        positions = (np.arange(len(profile)) - len(profile) // 2) * size
        assert np.sqrt((profile * positions ** 2).sum()) == pytest.approx(9.0 / np.sqrt(8 * np.log(2)), rel=0.02)
    as_tensor = gaussian_blur(torch.from_numpy(_impulse(9)), 6.0, voxel)
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.shape == (1, 9, 9, 9)
    with pytest.raises(InputError, match="voxel_size_mm"):
        gaussian_blur(_impulse(9), 6.0, (3.0, 3.0))


def test_rand_resolution_draws_widths_in_range_and_identity_at_zero():
    transform = RandResolution((4.0, 10.0), (3.0, 3.0, 3.0)).set_random_state(0)
    widths = []
    for _ in range(50):
        transform.randomize()
        widths.append(transform.fwhm_mm)
    assert 4.0 <= min(widths) < 5.0 and 9.0 < max(widths) <= 10.0
    image = np.random.default_rng(0).random((1, 8, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(RandResolution((0.0, 0.0))(image), image)
    np.testing.assert_array_equal(RandResolution((5.0, 8.0), prob=0.0)(image), image)
    with pytest.raises(InputError, match="fwhm_range_mm"):
        RandResolution((8.0, 4.0))


def test_rand_halo_adds_a_broad_low_background():
    image = np.zeros((1, 24, 24, 24), np.float32)
    image[0, 8:16, 8:16, 8:16] = 1.0
    transform = RandHalo(level_range=(0.1, 0.2), fwhm_range_mm=(20.0, 30.0)).set_random_state(1)
    out = transform(image)
    added = out - image
    assert 0.1 <= transform.level <= 0.2 and 20.0 <= transform.fwhm_mm <= 30.0
    assert added.min() >= 0 and added[0, 4, 12, 12] > 0.01  # around the object, not only on it
    assert added.max() <= transform.level + 1e-6
    np.testing.assert_array_equal(RandHalo(prob=0.0)(image), image)
    with pytest.raises(InputError, match="level_range"):
        RandHalo(level_range=(-0.1, 0.2))


@pytest.mark.parametrize("transform", [RandResolutiond(["a", "b"], (3.0, 12.0)),
                                       RandHalod(["a", "b"], (0.05, 0.3), (10.0, 40.0))])
def test_dictionary_forms_apply_one_draw_to_every_key(transform):
    image = np.random.default_rng(0).random((1, 12, 12, 12)).astype(np.float32)
    transform.set_random_state(0)
    outputs = [transform({"a": image, "b": 2 * image}) for _ in range(3)]
    for out in outputs:  # both transforms are linear: the same draw keeps b = 2 a
        np.testing.assert_allclose(out["b"], 2 * out["a"], rtol=1e-5)
    assert not np.allclose(outputs[0]["a"], outputs[1]["a"])
    again = transform.set_random_state(0)({"a": image, "b": 2 * image})
    np.testing.assert_array_equal(again["a"], outputs[0]["a"])
