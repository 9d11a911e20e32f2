from __future__ import annotations

import numpy as np
import pytest
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, EnsureTyped

from diffrecon.checks import InputError
from diffrecon.transforms import ORIENTATIONS, RandSliced, foreground_slices, take_slice


def test_slices_follow_the_orientation_convention():
    """axial: z slices with rows x, columns y; coronal: y slices (x, z); sagittal: x slices (y, z)."""
    volume = np.random.default_rng(0).random((1, 4, 6, 8)).astype(np.float32)
    expected = {"axial": lambda i: volume[0, :, :, i], "coronal": lambda i: volume[0, :, i, :],
                "sagittal": lambda i: volume[0, i, :, :]}
    assert sorted(ORIENTATIONS) == sorted(expected)
    for orientation, axis in ORIENTATIONS.items():
        for index in range(volume.shape[1 + axis]):
            np.testing.assert_array_equal(take_slice(volume, orientation, index)[0], expected[orientation](index))
    with pytest.raises(InputError, match="unknown orientation 'transverse'"):
        take_slice(volume, "transverse", 0)


def test_random_slices_are_foreground_and_shared_by_keys():
    volume = np.zeros((1, 8, 8, 10), np.float32)
    volume[0, 2:6, 2:6, 3:7] = 1.0
    np.testing.assert_array_equal(foreground_slices(volume, "axial"), [3, 4, 5, 6])
    transform = RandSliced(["image", "label"], "axial").set_random_state(1)
    for _ in range(20):
        out = transform({"image": volume, "label": 2 * volume})
        assert out["image"].shape == (1, 8, 8) and out["image"].sum() == 16
        np.testing.assert_array_equal(out["label"], 2 * out["image"])


def test_one_slice_per_volume_keeps_the_draw_the_shipped_priors_were_trained_with():
    volume = np.zeros((1, 8, 8, 30), np.float32)
    volume[0, 2:6, 2:6, 3:27] = np.arange(3, 27)
    transform = RandSliced("image", "axial").set_random_state(5)
    drawn = [int(transform({"image": volume})["image"].max()) for _ in range(8)]
    state = np.random.RandomState(5)
    assert drawn == [int(state.choice(foreground_slices(volume, "axial"))) for _ in range(8)]


def test_several_distinct_slices_per_volume_flattened_into_the_batch():
    volume = np.zeros((1, 8, 8, 10), np.float32)
    for z in range(3, 7):
        volume[0, 2:6, 2:6, z] = z  # each foreground slice has its own value
    transform = RandSliced("image", "axial", num_slices=3).set_random_state(0)
    out = transform({"image": volume})
    assert isinstance(out, list) and len(out) == 3
    values = [float(item["image"].max()) for item in out]
    assert len(set(values)) == 3 and set(values) <= {3.0, 4.0, 5.0, 6.0}
    dataset = Dataset([{"image": volume}] * 2, transform=Compose([transform, EnsureTyped("image")]))
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (6, 1, 8, 8)
    with pytest.raises(InputError, match="num_slices must be an integer >= 1"):
        RandSliced("image", "axial", num_slices=0)


def test_bad_orientation_and_empty_volume():
    with pytest.raises(InputError, match="unknown orientation 'oblique'"):
        RandSliced("image", "oblique")
    with pytest.raises(InputError, match="no axial slice"):
        foreground_slices(np.zeros((1, 4, 4, 4)), "axial")
    with pytest.raises(InputError, match="channel-first"):
        foreground_slices(np.zeros((4, 4, 4)), "axial")
