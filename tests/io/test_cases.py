"""Loading whole cases: a simulate folder in one call equals the same case from its files; factors, μ-maps and
grids are checked and named; single-coil k-space has no coil axis, so its reference fits the image."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.io.cases import load_mri_case, load_pet_case
from diffrecon.io.nifti import save_nifti
from diffrecon.io.sinogram import save_sinogram
from diffrecon.methods.mri_classical import CGSENSE, ZeroFilled
from diffrecon.physics.geometry import get_preset
from diffrecon.physics.pet import attenuation_factors


@pytest.fixture(scope="module")
def simulated(demo2d_case):
    return demo2d_case


def test_a_simulated_folder_loads_with_one_call(simulated):
    case = load_pet_case(simulated)
    explicit = load_pet_case(simulated / "sinogram.npz", multiplicative=simulated / "multiplicative.npz",
                             additive=simulated / "additive.npz", grid="demo2d", psf_fwhm=4.5,
                             images={"reference": simulated / "fdg.nii.gz", "mr": simulated / "t1.nii.gz"})
    torch.testing.assert_close(case.data, explicit.data)
    torch.testing.assert_close(case.physics.multiplicative, explicit.physics.multiplicative)
    assert case.physics.psf is not None and case.physics.psf.fwhm_mm == (4.5, 4.5, 4.5)
    np.testing.assert_allclose(case.affine, get_preset("demo2d").grid.affine)
    np.testing.assert_array_equal(case.reference, explicit.reference)
    assert set(case.images) == {"mr"}
    image = torch.as_tensor(case.reference)
    torch.testing.assert_close(case.physics.A(image), case.physics.linear(image[None])[0])


def test_mu_map_attenuation_is_multiplied_in(simulated):
    mu = np.zeros(get_preset("demo2d").grid.shape, dtype=np.float32)
    mu[20:40, 20:50] = 0.0096
    save_nifti(simulated / "mu.nii.gz", mu, get_preset("demo2d").grid.affine)
    plain = load_pet_case(simulated / "sinogram.npz", multiplicative=simulated / "multiplicative.npz")
    with_mu = load_pet_case(simulated / "sinogram.npz", multiplicative=simulated / "multiplicative.npz",
                            mu_map=simulated / "mu.nii.gz")
    expected = plain.physics.multiplicative * attenuation_factors(plain.physics.projector, torch.as_tensor(mu))
    torch.testing.assert_close(with_mu.physics.multiplicative, expected)


def test_bad_pet_inputs_are_named(simulated, tmp_path):
    names = {"mu_map": "--mu-map", "multiplicative": "--multiplicative", "sinogram": "--sinogram"}
    _save_singular_nifti(tmp_path / "flat.nii.gz", (64, 72, 1))
    with pytest.raises(InputError, match="--mu-map: its affine is singular"):
        load_pet_case(simulated, mu_map=tmp_path / "flat.nii.gz", names=names)
    save_sinogram(tmp_path / "zeros.npz", np.zeros(get_preset("demo2d").scanner.data_shape, np.float32),
                  get_preset("demo2d").scanner)
    with pytest.raises(InputError, match="--sinogram holds no counts"):
        load_pet_case(tmp_path / "zeros.npz", names=names)
    with pytest.raises(InputError, match="multiplicative factors are all zero"):
        load_pet_case(simulated, multiplicative=tmp_path / "zeros.npz", names=names)
    save_sinogram(tmp_path / "other.npz", np.ones(get_preset("demo").scanner.data_shape, np.float32),
                  get_preset("demo").scanner)
    with pytest.raises(InputError, match="--multiplicative: its scanner geometry differs"):
        load_pet_case(simulated, multiplicative=tmp_path / "other.npz", names=names)
    with pytest.raises(InputError, match="simulation.json"):
        load_pet_case(tmp_path, names=names)


def _save_singular_nifti(path, shape):
    """A NIfTI whose sform squashes z to a plane (nibabel refuses to write such an affine directly)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.float32)
    header["srow_x"], header["srow_y"], header["srow_z"] = [3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0, 0]
    header["sform_code"], header["qform_code"] = 1, 0
    nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), None, header=header), path)


def test_single_coil_kspace_reconstructs_with_its_reference(tmp_path):
    y, x = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 32))
    image = (np.exp(-(x - 0.2) ** 2 * 4 - (y + 0.1) ** 2 * 6) + 0.3 * (x ** 2 + y ** 2 < 0.5)).astype(np.float32)
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image), norm="ortho")).astype(np.complex64)
    assert np.all(kspace != 0)
    np.save(tmp_path / "single.npy", kspace.T)  # stored as (y, x)
    case = load_mri_case(tmp_path / "single.npy", layout="yx", acceleration=2, mask="equispaced",
                         center_fraction=0.25)
    assert case.data.shape == (32, 24) and case.physics.n_coils == 1 and case.info["n_coils"] == 1
    zero_filled = ZeroFilled()(case.data, case.physics).mean
    assert zero_filled.shape == case.reference.shape == (32, 24)
    np.testing.assert_allclose(case.reference.numpy(), image, atol=1e-5)
    full = load_mri_case(tmp_path / "single.npy", layout="yx")  # as measured: fully sampled, no reference
    assert full.reference is None and full.info["acceleration"] == 1.0
    np.testing.assert_allclose(CGSENSE(1)(full.data, full.physics).mean.abs().numpy(), image, atol=1e-4)


def test_a_given_mask_file_is_used_and_checked(tmp_path):
    kspace = np.ones((2, 16, 16), np.complex64)
    np.save(tmp_path / "k.npy", kspace)
    mask = np.zeros((16, 16))
    mask[:, ::2] = 1
    mask[:, 6:10] = 1
    np.save(tmp_path / "mask.npy", mask)
    case = load_mri_case(tmp_path / "k.npy", mask=tmp_path / "mask.npy", coil_maps=torch.ones(2, 16, 16,
                                                                                              dtype=torch.complex64))
    assert torch.equal(case.physics.mask, torch.as_tensor(mask).bool()) and case.info["acceleration"] == pytest.approx(1.6)
    np.save(tmp_path / "small.npy", mask[:8])
    with pytest.raises(InputError, match="--mask .* has shape \\(8, 16\\); expected the k-space's spatial shape"):
        load_mri_case(tmp_path / "k.npy", mask=tmp_path / "small.npy", names={"mask": "--mask"})


def test_images_on_different_dicom_frames_of_reference_are_refused_first(simulated, shared_data, tmp_path):
    """A T1 series of another session (another frame-of-reference UID) beside the session's PET series: refused,
    naming both, before the sinogram is read; the same T1 on the PET's frame passes that check."""
    import shutil

    import pydicom

    from diffrecon.io.volumes import check_one_frame, frame_of_reference

    pet, mr = shared_data / "mirp_sts001" / "PET_cropped", tmp_path / "mr_other_session"
    shutil.copytree(shared_data / "mirp_sts001" / "MR_T1", mr)
    check_one_frame({"--reference": pet, "--mr": mr, "--mu-map": None})
    for path in mr.iterdir():
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.save_as(path)
    assert frame_of_reference(mr) == "1.2.826.0.1.3680043.8.498.1" and frame_of_reference(simulated / "t1.nii.gz") is None
    with pytest.raises(InputError, match=r"--reference and --mr are DICOM series on different frames of reference"):
        load_pet_case(tmp_path / "not_read.npz", images={"reference": pet, "mr": mr},
                      names={"reference": "--reference", "mr": "--mr"})


def test_an_image_off_the_grid_is_resampled_and_the_case_says_so(simulated, tmp_path):
    t1 = nib.load(simulated / "t1.nii.gz")
    on_grid = load_pet_case(simulated)
    assert "resampled" not in on_grid.info
    shifted = t1.affine.copy()
    shifted[:2, 3] += 1.5  # half a voxel off the grid in-plane, in the same patient coordinates
    nib.save(nib.Nifti1Image(t1.get_fdata().astype(np.float32), shifted), tmp_path / "t1_shifted.nii.gz")
    case = load_pet_case(simulated, images={"mr": tmp_path / "t1_shifted.nii.gz"}, names={"mr": "--mr"})
    assert case.info["resampled"]["--mr"].startswith("resampled from shape (64, 72, 1), voxels (3.0, 3.0, 3.0) mm")
    assert case.images["mr"].shape == on_grid.images["mr"].shape


def test_an_image_too_small_to_score_is_refused_before_the_scan():
    with pytest.raises(InputError, match=r"--image has shape \(6, 6\); expected at least 11 voxels per in-plane side"):
        load_mri_case(image=np.ones((6, 6), np.float32), acceleration=1.2, names={"image": "--image"})
