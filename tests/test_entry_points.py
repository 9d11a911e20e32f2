"""The command line and a three-line Python script reconstruct the same case through the same functions
(docs/methods.md shows both), so their results are identical."""
from __future__ import annotations

import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.io.cases import load_pet_case
from diffrecon.io.nifti import load_nifti
from diffrecon.methods import build_method


def test_cli_and_python_give_the_same_image(demo2d_case, tmp_path):
    case_folder = demo2d_case
    assert main(["recon", "--method", "map-rdp", "--beta", "0.3", "--sinogram", str(case_folder),
                 "--out", str(tmp_path)]) == 0
    from_cli, affine = load_nifti(tmp_path / "map-rdp.nii.gz")

    case = load_pet_case(case_folder)  # the three lines of docs/methods.md
    result = build_method("map-rdp", beta=0.3)(case.data, case.physics)
    np.testing.assert_array_equal(result.mean.numpy(), from_cli)
    np.testing.assert_array_equal(case.affine, affine)
