from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from diffrecon.checks import InputError
from diffrecon.data import phantoms
from diffrecon.data.phantoms import (LABELS, MU_BONE, MU_SOFT_TISSUE, _random_diffeomorphism, make_subject)
from diffrecon.data.splits import check_split, subject_seeds
from diffrecon.io.demo_cases import save_subject
from diffrecon.io.nifti import load_nifti
from diffrecon.physics.geometry import ImageGrid

SMALL = ImageGrid((40, 48, 40), (4.5, 4.5, 4.5))


@pytest.fixture(scope="module")
def subject():
    return make_subject(7, SMALL, lesions=2, lesion_kinds="mixed", split="train")


def test_same_seed_same_subject_other_seed_differs(subject):
    again = make_subject(7, SMALL, lesions=2)
    other = make_subject(8, SMALL, lesions=2)
    for name in ("t1", "fdg", "amyloid", "mu_map", "labels", "lesion_masks"):
        assert np.array_equal(getattr(subject, name), getattr(again, name)), name
    assert not np.array_equal(subject.fdg, other.fdg)


def test_warp_is_invertible():
    rng = np.random.default_rng(0)
    displacement = _random_diffeomorphism(rng, SMALL)
    assert 1.0 < np.abs(displacement).max() < 10.0  # a few mm
    spacing = SMALL.voxel_size_mm
    jacobian = np.empty((3, 3, *SMALL.shape))
    for i in range(3):
        for j in range(3):
            jacobian[i, j] = (i == j) + np.gradient(displacement[i], spacing[j], axis=j)
    determinant = np.linalg.det(np.moveaxis(jacobian, (0, 1), (-2, -1)))
    assert determinant.min() > 0


def test_tissue_activities_follow_the_documented_ratios(subject):
    pure_grey = subject.grey_matter > 0.9
    pure_white = subject.white_matter > 0.9
    lesion_free = ~subject.lesion_masks.any(0)
    ratio = subject.fdg[pure_grey & lesion_free].mean() / subject.fdg[pure_white & lesion_free].mean()
    assert 2.7 < ratio < 4.1  # FDG grey:white 3-4 (partial volume lowers it slightly)
    amyloid_ratio = subject.amyloid[pure_grey & lesion_free].mean() / subject.amyloid[pure_white & lesion_free].mean()
    assert (amyloid_ratio > 0.85) == subject.amyloid_positive
    assert subject.fdg.min() >= 0 and subject.amyloid.min() >= 0


def test_lesions_inside_the_brain_hot_hotter_cold_colder(subject):
    brain = np.isin(subject.labels, [LABELS["csf"], LABELS["grey_matter"], LABELS["white_matter"]])
    background = brain & ~subject.lesion_masks.any(0)
    assert subject.lesion_kinds == ["hot", "cold"]
    for mask, kind in zip(subject.lesion_masks, subject.lesion_kinds):
        assert mask.sum() > 3
        assert brain[mask].all()
        contrast = subject.fdg[mask].mean() / subject.fdg[background].mean()
        assert contrast > 1.5 if kind == "hot" else contrast < 0.7


def test_mu_map_physical_values_and_skull_shell(subject):
    np.testing.assert_allclose(np.unique(subject.mu_map), [0.0, MU_SOFT_TISSUE, MU_BONE], rtol=1e-6)
    skull = subject.labels == LABELS["skull"]
    brain = subject.labels == LABELS["grey_matter"]
    assert skull.sum() > 100
    # the skull encloses the brain: filling the skull's holes covers the brain
    assert ndimage.binary_fill_holes(skull | brain | (subject.labels == LABELS["csf"]) |
                                     (subject.labels == LABELS["white_matter"]))[brain].all()


@pytest.mark.parametrize("seed", [20002, 20006])  # vertex in the top slice when centred on the whole mask
def test_default_grid_covers_cerebrum_and_cerebellum_of_the_largest_subjects(seed, monkeypatch):
    monkeypatch.setattr(phantoms, "SCALE_RANGE", (phantoms.SCALE_RANGE[1],) * 2)
    subject = make_subject(seed, split="test")
    brain = np.isin(subject.labels, [LABELS["grey_matter"], LABELS["white_matter"]])
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        profile = brain.any(axis=other)
        assert not profile[-1], f"brain touches the grid's upper edge along axis {axis}"
        assert axis == 2 or not profile[0], f"brain touches the grid's lower edge along axis {axis}"
    # only the brainstem, which the template itself cuts, may reach the lowest slice
    assert brain[:, :, 0].any(axis=1).sum() * phantoms.default_grid().voxel_size_mm[0] < phantoms.BRAINSTEM_WIDTH_MM


def test_nifti_round_trip_keeps_affine(subject, tmp_path):
    written = save_subject(subject, tmp_path)
    assert {p.name for p in written} >= {"fdg.nii.gz", "mu_map.nii.gz", "t1.nii.gz", "lesion_masks.nii.gz"}
    data, affine = load_nifti(tmp_path / "fdg.nii.gz")
    np.testing.assert_allclose(affine, SMALL.affine)
    np.testing.assert_allclose(data, subject.fdg)


def test_splits_are_enforced():
    assert subject_seeds("train", 3) == [0, 1, 2]
    assert subject_seeds("test", 2)[0] == 20000
    with pytest.raises(InputError, match="seed 20000 is a test subject"):
        make_subject(20000, SMALL, split="train")
    with pytest.raises(InputError, match="seed 5 is a train subject"):
        check_split(5, "test")
    with pytest.raises(InputError, match="unknown split"):
        subject_seeds("holdout", 1)


def test_bad_subject_requests():
    with pytest.raises(InputError, match="lesions must be an integer >= 0"):
        make_subject(1, SMALL, lesions=-1)
    with pytest.raises(InputError, match="seed must be an integer >= 0"):
        make_subject(-3, SMALL)
    with pytest.raises(InputError, match="lesion_kinds"):
        make_subject(1, SMALL, lesions=1, lesion_kinds="warm")
