"""Registration with ANTs (real runs on tiny phantom volumes): a known synthetic warp is recovered, the cache
returns finished registrations, the pseudo-PET set leaves out failed registrations and resumes, and MR/PET pairs
on different frames of reference are refused."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy import ndimage

from diffrecon.checks import InputError
from diffrecon.data.phantoms import _random_diffeomorphism, make_subject
from diffrecon.io.dicom_read import load_dicom_series
from diffrecon.io.dicom_write import write_dicom_series
from diffrecon.io.nifti import save_nifti
from diffrecon.physics.geometry import ImageGrid
from diffrecon.registration.images import Image, check_same_frame, from_ants, read_image, to_ants
from diffrecon.registration.pseudo_pet import Target, build_pseudo_pet_set, find_subjects, mixture_images
from diffrecon.registration.register import register, warp

GRID = ImageGrid((40, 46, 38), (4.0, 4.0, 4.0))


@pytest.fixture(scope="module")
def phantoms():
    return {seed: make_subject(seed, GRID) for seed in (0, 1, 20000)}


def image(array, affine, name="image"):
    return Image(np.asarray(array, dtype=np.float32), affine, None, name)


def test_ants_conversion_keeps_voxels_and_world_coordinates():
    affine = np.array([[0, -2.0, 0, 30], [3.0, 0, 0, -40], [0, 0, 2.5, 10], [0, 0, 0, 1]])
    array = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    back, back_affine = from_ants(to_ants(image(array, affine)))
    np.testing.assert_array_equal(back, array)
    np.testing.assert_allclose(back_affine, affine, atol=1e-9)


def test_a_known_smooth_warp_is_recovered_to_below_one_voxel(phantoms, tmp_path):
    fixed = phantoms[20000].t1
    rng = np.random.default_rng(3)
    displacement = _random_diffeomorphism(rng, GRID, amplitude_mm=20.0) / 4.0  # voxels
    identity = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in GRID.shape], indexing="ij"))
    moving = ndimage.map_coordinates(fixed, identity + displacement, order=1)  # moving(x) = fixed(x + u(x))
    registration = register(image(fixed, GRID.affine), image(moving, GRID.affine), tmp_path / "reg", "SyNRA")
    # W(y): the moving-image voxel that fixed voxel y maps to, by warping the moving grid's coordinates
    mapped = np.stack([warp(image(c, GRID.affine), registration, image(fixed, GRID.affine)) for c in identity])
    found = np.stack([ndimage.map_coordinates(m, identity + displacement, order=1) for m in mapped])
    brain = ndimage.binary_erosion(phantoms[20000].labels[...] > 0, iterations=2)
    error = np.linalg.norm(found - identity, axis=0)[brain].mean()
    initial = np.linalg.norm(displacement, axis=0)[brain].mean()
    assert initial > 1.0, "the test warp must move the brain by more than a voxel"
    assert error < 1.0, f"mean displacement error {error:.2f} voxels (warp {initial:.2f} voxels)"
    assert registration.improved


def test_register_returns_the_cached_registration_and_redoes_it_for_new_settings(phantoms, tmp_path):
    fixed, moving = image(phantoms[20000].t1, GRID.affine), image(phantoms[0].t1, GRID.affine)
    first = register(fixed, moving, tmp_path / "reg", "Affine")
    stamp = os.stat(tmp_path / "reg" / "registration.json").st_mtime_ns
    again = register(fixed, moving, tmp_path / "reg", "Affine")
    assert again == first and os.stat(tmp_path / "reg" / "registration.json").st_mtime_ns == stamp
    rigid = register(fixed, moving, tmp_path / "reg", "Rigid")
    assert rigid.settings["transform"] == "Rigid" and rigid.key != first.key


def write_subject(folder, subject, mr=None):
    folder.mkdir(parents=True, exist_ok=True)
    save_nifti(folder / "mr.nii.gz", subject.t1 if mr is None else mr, GRID.affine)
    save_nifti(folder / "pet.nii.gz", subject.fdg, GRID.affine)
    save_nifti(folder / "labels.nii.gz", subject.labels.astype(np.float32), GRID.affine)


def target_of(subject):
    return Target(image(subject.t1, GRID.affine, "target MR"), image(subject.fdg, GRID.affine, "target PET"),
                  image(subject.labels, GRID.affine, "target labels"))


def test_pseudo_pet_set_leaves_out_failed_registrations_and_resumes(phantoms, tmp_path):
    write_subject(tmp_path / "subjects" / "a", phantoms[0])
    write_subject(tmp_path / "subjects" / "b", phantoms[1], mr=np.zeros(GRID.shape, np.float32))  # fails
    target, subjects = target_of(phantoms[20000]), find_subjects(tmp_path / "subjects")
    record = build_pseudo_pet_set(target, subjects, tmp_path / "set", transform="SyNRA", mixtures=2, progress=False)
    assert record["accepted"] == ["a"] and "registration failed" in record["rejected"]["b"]
    assert sorted(record["images"]) == ["a.nii.gz", "mixture_000.nii.gz", "mixture_001.nii.gz"]
    quality = json.loads((tmp_path / "set" / "qc.json").read_text())[0]
    assert quality["after"]["correlation"] > quality["before"]["correlation"]
    assert quality["dice_after"] > quality["dice_before"]
    assert (tmp_path / "set" / "qc" / "a.png").is_file()
    warped = read_image(tmp_path / "set" / "images" / "a.nii.gz", "pseudo-PET").array
    truth = phantoms[20000].fdg
    assert np.corrcoef(warped.ravel(), truth.ravel())[0, 1] > np.corrcoef(phantoms[0].fdg.ravel(), truth.ravel())[0, 1]

    # an interrupted run (set record missing) resumes from the cached registration
    stamp = os.stat(tmp_path / "set" / "registrations" / "a" / "registration.json").st_mtime_ns
    (tmp_path / "set" / "set.json").unlink()
    again = build_pseudo_pet_set(target, subjects, tmp_path / "set", transform="SyNRA", mixtures=2, progress=False)
    assert again["images"] == record["images"]
    assert os.stat(tmp_path / "set" / "registrations" / "a" / "registration.json").st_mtime_ns == stamp

    with pytest.raises(InputError, match="no registration to the target MR passed quality control"):
        build_pseudo_pet_set(target, subjects[1:], tmp_path / "none", progress=False)


def test_mixtures_are_convex_sums_of_normalised_images_deterministic_by_seed():
    images = [np.full((4, 4, 2), value, np.float32) for value in (1.0, 2.0, 5.0)]
    first = mixture_images(images, 3, (2, 3), seed=7)
    assert [m for _, m in first] == [m for _, m in mixture_images(images, 3, (2, 3), seed=7)]
    for array, members in first:
        assert 2 <= len(members) <= 3
        np.testing.assert_allclose(array, 1.0, rtol=1e-5)  # each normalised image is 1; weights sum to 1


def test_subject_folders_and_set_sizes_are_checked_before_registering(phantoms, tmp_path):
    write_subject(tmp_path / "subjects" / "a", phantoms[0])
    target = target_of(phantoms[20000])
    with pytest.raises(InputError, match="unknown transform 'BSpline'"):
        build_pseudo_pet_set(target, find_subjects(tmp_path / "subjects"), tmp_path / "s", transform="BSpline")
    with pytest.raises(InputError, match="size is 3 but only 1 subject"):
        build_pseudo_pet_set(target, find_subjects(tmp_path / "subjects"), tmp_path / "s", size=3, progress=False)
    (tmp_path / "subjects" / "b").mkdir()
    save_nifti(tmp_path / "subjects" / "b" / "mr.nii.gz", phantoms[1].t1, GRID.affine)
    with pytest.raises(InputError, match="subject b .* has no pet image"):
        find_subjects(tmp_path / "subjects")
    (tmp_path / "subjects" / "b" / "pet.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="subject b PET"):
        build_pseudo_pet_set(target, find_subjects(tmp_path / "subjects"), tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists()


def test_mr_and_pet_on_different_frames_of_reference_are_refused(phantoms, tmp_path):
    subject = phantoms[0]
    shifted = GRID.affine.copy()
    shifted[:3, 3] += 400.0  # another scanner's coordinates
    with pytest.raises(InputError, match="overlap by 0%.*frame of reference"):
        check_same_frame(image(subject.t1, GRID.affine, "MR"), image(subject.fdg, shifted, "PET"), "subject x")
    mr = write_dicom_series(subject.t1, GRID.affine, tmp_path / "mr", modality="MR", method_description="T1")
    mr_volume = load_dicom_series(tmp_path / "mr")
    write_dicom_series(subject.fdg, GRID.affine, tmp_path / "pet", modality="PT", method_description="FDG",
                       source=mr_volume)  # joins the MR's study and frame
    write_dicom_series(subject.fdg, GRID.affine, tmp_path / "other", modality="PT", method_description="FDG")
    check_same_frame(read_image(tmp_path / "mr", "MR"), read_image(tmp_path / "pet", "PET"), "subject x")
    with pytest.raises(InputError, match="different frames of reference"):
        check_same_frame(read_image(tmp_path / "mr", "MR"), read_image(tmp_path / "other", "PET"), "subject x")
    assert mr.frame_of_reference_uid


def test_subjects_may_be_given_as_dicom_series_folders(phantoms, tmp_path):
    subject = phantoms[0]
    folder = tmp_path / "subjects" / "dicom_subject"
    write_dicom_series(subject.t1, GRID.affine, folder / "mr", modality="MR", method_description="T1")
    write_dicom_series(subject.fdg, GRID.affine, folder / "pet", modality="PT", method_description="FDG",
                       source=load_dicom_series(folder / "mr"))
    (found,) = find_subjects(tmp_path / "subjects")
    mr, pet, labels = found.read()
    assert labels is None and mr.frame_of_reference == pet.frame_of_reference
    np.testing.assert_allclose(mr.affine, GRID.affine, atol=1e-3)
    np.testing.assert_allclose(pet.array, subject.fdg, rtol=1e-3, atol=1e-3 * subject.fdg.max())
