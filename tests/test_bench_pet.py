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
