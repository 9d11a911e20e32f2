"""``diffrecon personalise`` refuses bad input in one line before registering anything (the pipeline itself is
tested in tests/test_personalise.py and through the bundle)."""
from __future__ import annotations

import numpy as np

from diffrecon.cli import main
from diffrecon.io.nifti import save_nifti


def test_refusals_name_the_problem(tmp_path, capsys):
    mr = np.ones((8, 8, 8), np.float32)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    save_nifti(tmp_path / "t1.nii.gz", mr, affine)
    common = ["personalise", "--target-mr", str(tmp_path / "t1.nii.gz"), "--out", str(tmp_path / "out")]
    assert main(common + ["--pet-grid", "demo", "--subjects", str(tmp_path / "none")]) == 2
    assert "subjects folder" in capsys.readouterr().err
    far = affine.copy()
    far[:3, 3] = 500.0
    save_nifti(tmp_path / "grid.nii.gz", mr, far)
    (tmp_path / "subjects" / "a").mkdir(parents=True)
    save_nifti(tmp_path / "subjects" / "a" / "mr.nii.gz", mr, affine)
    save_nifti(tmp_path / "subjects" / "a" / "pet.nii.gz", mr, affine)
    assert main(common + ["--pet-grid", str(tmp_path / "grid.nii.gz"), "--subjects", str(tmp_path / "subjects")]) == 2
    error = capsys.readouterr().err
    assert "target: the MR and the PET fields of view overlap by 0%" in error
    assert not (tmp_path / "out").exists()
