"""The command line and a three-line Python script reconstruct the same case through the same functions
(docs/methods.md shows both), so their results are identical."""
from __future__ import annotations

import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.io.cases import load_pet_case
from diffrecon.io.nifti import load_nifti
from diffrecon.methods import build_method


@pytest.fixture(scope="module")
def case_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("entry")
    assert main(["simulate", "--out", str(out), "--seed", "20003", "--preset", "demo2d", "--count-level", "10%",
                 "--lesions", "1"]) == 0
    return out


def test_cli_and_python_give_the_same_image(case_folder, tmp_path):
    assert main(["recon", "--method", "map-rdp", "--beta", "0.3", "--sinogram", str(case_folder),
                 "--out", str(tmp_path)]) == 0
    from_cli, affine = load_nifti(tmp_path / "map-rdp.nii.gz")

    case = load_pet_case(case_folder)  # the three lines of docs/methods.md
    result = build_method("map-rdp", beta=0.3)(case.data, case.physics)
    np.testing.assert_array_equal(result.mean.numpy(), from_cli)
    np.testing.assert_array_equal(case.affine, affine)
