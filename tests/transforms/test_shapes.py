"""Training-slice augmentations beyond the phantoms (RandShapesd, RandAxialEdged)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.transforms import RandAxialEdged, RandShapesd, random_shapes_image


def _slice() -> torch.Tensor:
    image = torch.zeros(1, 40, 48)
    image[0, 10:30, 12:36] = 2.5
    return image


def test_random_objects_vary_are_non_negative_and_sit_inside_the_field_of_view():
    rng = np.random.RandomState(0)
    images = [random_shapes_image((40, 48), rng) for _ in range(20)]
    for image in images:
        assert image.shape == (40, 48) and image.dtype == np.float32 and image.min() >= 0 and image.max() > 0
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert border.max() < 0.05 * image.max()  # an object on a background, as the head in a slice
    assert min(np.abs(a - b).max() for a, b in zip(images, images[1:])) > 0


def test_cut_objects_reach_the_image_edge_and_the_probability_is_checked():
    rng = np.random.RandomState(0)
    for _ in range(10):
        image = random_shapes_image((40, 48), rng, cut=True)
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        level = np.median(image[image > 0.05 * image.max()])
        assert image.min() >= 0 and border.max() > 0.2 * level  # the field of view ends inside the object
    transform = RandShapesd("image", prob=1.0, cut_prob=1.0).set_random_state(2)
    out = transform({"image": _slice()})["image"][0]
    assert float(torch.cat([out[0], out[-1], out[:, 0], out[:, -1]]).max()) > 0
    with pytest.raises(InputError, match="cut_prob"):
        RandShapesd("image", cut_prob=1.5)


def test_replaced_slices_keep_shape_type_and_foreground_mean():
    transform = RandShapesd("image", prob=1.0).set_random_state(1)
    for _ in range(10):
        out = transform({"image": _slice(), "label": 3})["image"]
        assert isinstance(out, torch.Tensor) and out.shape == (1, 40, 48) and out.min() >= 0
        assert not torch.equal(out, _slice())
        foreground = out[out > 0.05 * out.max()]
        assert float(foreground.mean()) == pytest.approx(2.5, rel=1e-4)


def test_probability_zero_keeps_the_slice_and_a_seed_repeats_the_draw():
    original = _slice()
    assert torch.equal(RandShapesd("image", prob=0.0)({"image": original})["image"], original)
    first = RandShapesd("image", prob=0.5).set_random_state(7)
    second = RandShapesd("image", prob=0.5).set_random_state(7)
    draws = [(first({"image": _slice()})["image"], second({"image": _slice()})["image"]) for _ in range(8)]
    assert all(torch.equal(a, b) for a, b in draws)
    assert 0 < sum(not torch.equal(a, _slice()) for a, _ in draws) < 8


def test_a_volume_is_refused_with_where_to_place_the_transform():
    with pytest.raises(ValueError, match="after the slicer"):
        RandShapesd("image", prob=1.0)({"image": torch.ones(1, 8, 8, 8)})


def test_hot_spot_levels_widen_the_dynamic_range_and_are_checked():
    def peak_over_mean(levels):
        rng = np.random.RandomState(3)
        images = [random_shapes_image((48, 48), rng, levels) for _ in range(40)]
        return np.mean([image.max() / image[image > 0.05 * image.max()].mean() for image in images])

    assert peak_over_mean((4.0, 8.0)) > 1.3 * peak_over_mean((0.0, 3.0))
    with pytest.raises(InputError, match="spot_levels"):
        RandShapesd("image", spot_levels=(8.0, 4.0))


def test_axial_edge_zeroes_one_side_of_the_slice_and_keeps_the_rest():
    image = torch.zeros(1, 10, 40)
    image[0, 2:8, 5:35] = 1.0 + torch.arange(30.0) / 30  # foreground from z = 5 to 34
    transform = RandAxialEdged("image", prob=1.0, keep_range=(0.5, 0.5)).set_random_state(0)
    sides = set()
    for _ in range(12):
        out = transform({"image": image})["image"]
        kept = torch.nonzero(out[0].sum(0)).flatten()
        assert kept.numel() in (15, 16) and torch.equal(out[0][:, kept], image[0][:, kept])
        sides.add(int(kept[0]) == 5)
    assert sides == {True, False}  # cut from above and from below
    assert torch.equal(RandAxialEdged("image", prob=0.0)({"image": image})["image"], image)
    with pytest.raises(ValueError, match="after the slicer"):
        RandAxialEdged("image", prob=1.0)({"image": torch.ones(1, 4, 4, 4)})
