"""The PET benchmark's real brains (diffrecon/benchmarks/pet.py): on demo2d, one slice of the demo volume."""
import numpy as np

from diffrecon.benchmarks.pet import real_brain_case


def test_real_brain_on_demo2d_is_the_slice_of_the_demo_volume_with_most_brain():
    volume = real_brain_case("fdg_sts001", "1%", 0, "demo")
    plane = real_brain_case("fdg_sts001", "1%", 0, "demo2d")
    brain = volume.images["brain"]
    best = int(np.argmax(brain.sum(axis=(0, 1))))
    assert plane.info["scanner"] == "demo2d" and np.shape(plane.reference) == (*np.shape(volume.reference)[:2], 1)
    np.testing.assert_array_equal(plane.reference[..., 0], volume.reference[..., best])
    np.testing.assert_array_equal(plane.images["brain"][..., 0], brain[..., best])
    assert plane.images["brain"].sum() > 0 and float(plane.data.sum()) > 0


def test_the_spm12_brain_comes_with_its_t1_on_the_pet_grid_and_the_patient_without():
    """The SPM12 PET template and single-subject T1 share MNI coordinates: the T1 lands on the PET's grid with
    its head where the PET's is; the FDG patient's only T1 is of the thigh, so that case has none."""
    case = real_brain_case("spm12_pet", "10%", 0, "demo2d")
    t1, brain = case.images["mr"], case.images["brain"]
    assert t1.shape == brain.shape and t1[brain].mean() > 5 * max(float(t1[~brain].mean()), 1e-6)
    assert "mr" not in real_brain_case("fdg_sts001", "10%", 0, "demo2d").images
