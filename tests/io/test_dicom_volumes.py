"""load_volume (NIfTI or DICOM folder) and resample_to_grid: the mirp PET/MR pair on one grid."""
from __future__ import annotations

import numpy as np
import pytest

from diffrecon.checks import InputError
from diffrecon.io.nifti import save_nifti
from diffrecon.io.volumes import load_on_grid, load_volume, resample_to_grid


def test_nifti_and_dicom_give_the_same_volume(shared_data, tmp_path):
    folder = shared_data / "mirp_sts001" / "MR_T1"
    array, affine = load_volume(folder, "mr")
    assert array.shape == (174, 158, 59) and array.dtype == np.float32
    save_nifti(tmp_path / "mr.nii.gz", array, affine)
    again, again_affine = load_volume(tmp_path / "mr.nii.gz", "mr")
    np.testing.assert_array_equal(again, array)
    np.testing.assert_allclose(again_affine, affine, atol=1e-5)
    with pytest.raises(InputError, match="mr: series_uid, modality and suv apply to DICOM folders"):
        load_volume(tmp_path / "mr.nii.gz", "mr", suv=True)
    with pytest.raises(InputError, match="mr: file .* does not exist"):
        load_volume(tmp_path / "absent.nii.gz", "mr")


def test_pet_mr_pair_on_one_grid(shared_data):
    pet, pet_affine = load_volume(shared_data / "mirp_sts001" / "PET_cropped", "pet")
    mr, mr_affine = load_volume(shared_data / "mirp_sts001" / "MR_T1", "mr")
    on_pet = resample_to_grid(mr, mr_affine, pet_affine, pet.shape)
    assert on_pet.shape == pet.shape == (41, 43, 59)
    # a PET voxel centre gets the MR value interpolated (by hand, trilinear) at the same world position
    for index in [(20, 21, 30), (5, 10, 3), (35, 30, 50)]:
        position = np.linalg.solve(mr_affine, pet_affine @ [*index, 1])[:3]
        base, frac = np.floor(position).astype(int), position - np.floor(position)
        expected = sum(mr[tuple(base + corner)] * np.prod(np.where(corner, frac, 1 - frac))
                       for corner in map(np.array, np.ndindex(2, 2, 2)))
        assert on_pet[index] == pytest.approx(expected, rel=1e-4)
    inside = on_pet[on_pet > 0]
    assert inside.size > 0.5 * on_pet.size and inside.mean() == pytest.approx(mr[mr > 0].mean(), rel=0.5)


def test_resample_identity_and_shift():
    array = np.random.default_rng(1).random((6, 5, 4)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(resample_to_grid(array, affine, affine, array.shape), array, atol=1e-6)
    shifted = affine.copy()
    shifted[:3, 3] = [2.0, 0.0, 0.0]  # target voxel i sits on source voxel i + 1
    np.testing.assert_allclose(resample_to_grid(array, affine, shifted, (5, 5, 4)), array[1:], atol=1e-6)
    with pytest.raises(InputError, match="target_shape"):
        resample_to_grid(array, affine, affine, (0, 5, 4))
    with pytest.raises(InputError, match="singular"):
        resample_to_grid(array, np.zeros((4, 4)), affine, (6, 5, 4))


def test_load_on_grid_keeps_resamples_or_refuses(tmp_path):
    """An image on the grid comes back as it is; one on a finer grid in the same coordinates is resampled (a
    linear ramp exactly); one elsewhere in patient space is refused, naming the parameter."""
    grid_affine, shape = np.diag([4.0, 4.0, 4.0, 1.0]), (6, 5, 4)
    centres = np.stack(np.meshgrid(*[np.arange(n) * 4.0 for n in shape], indexing="ij"))
    ramp = (centres[0] + 2 * centres[1] - centres[2]).astype(np.float32)
    save_nifti(tmp_path / "on.nii.gz", ramp, grid_affine)
    assert load_on_grid(tmp_path / "on.nii.gz", "--mr", grid_affine, shape)[1] is None  # as it is: no note
    np.testing.assert_array_equal(load_on_grid(tmp_path / "on.nii.gz", "--mr", grid_affine, shape)[0], ramp)
    fine = np.stack(np.meshgrid(*[np.arange(2 * n) * 2.0 for n in shape], indexing="ij"))
    save_nifti(tmp_path / "fine.nii.gz", (fine[0] + 2 * fine[1] - fine[2]).astype(np.float32),
               np.diag([2.0, 2.0, 2.0, 1.0]))
    resampled, note = load_on_grid(tmp_path / "fine.nii.gz", "--mr", grid_affine, shape)
    np.testing.assert_allclose(resampled, ramp, atol=1e-4)
    assert note.startswith("resampled from shape (12, 10, 8), voxels (2.0, 2.0, 2.0) mm, onto the reconstruction grid")
    far = np.diag([2.0, 2.0, 2.0, 1.0])
    far[:3, 3] = 500.0
    save_nifti(tmp_path / "far.nii.gz", ramp, far)
    with pytest.raises(InputError, match=r"--mr \(shape \(6, 5, 4\), voxels \(2.0, 2.0, 2.0\) mm\) covers 0% of the "
                                         r"reconstruction grid"):
        load_on_grid(tmp_path / "far.nii.gz", "--mr", grid_affine, shape)
