"""``diffrecon recon`` with MR guidance: ``--mr`` and ``--guidance`` reach PET-DDS with an MR-conditioned prior (a
tiny one in a temporary bundle copy), and bad input is refused in the command line's words before any work."""
from __future__ import annotations

import json

import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.io.nifti import save_nifti
from tests.bundles.test_bundle_files import tiny_copy


@pytest.fixture(scope="module")
def conditional_prior(tmp_path_factory):
    return tiny_copy("pet_fdg_mr_prior", tmp_path_factory.mktemp("bundles"))


def _recon(case, out, *extra: str) -> int:
    return main(["recon", "--method", "pet-dds", "--out", str(out), "--sinogram", str(case / "sinogram.npz"),
                 "--steps", "2", "--set", "progress=false", *extra])


def test_mr_and_guidance_reach_the_method(demo2d_case, conditional_prior, tmp_path):
    assert _recon(demo2d_case, tmp_path / "out", "--prior", str(conditional_prior), "--mr",
                  str(demo2d_case / "t1.nii.gz"), "--guidance", "0.5") == 0
    report = json.loads((tmp_path / "out" / "pet-dds.json").read_text())
    assert report["settings"]["guidance"] == 0.5 and report["settings"]["mr"] is True
    assert report["network_evaluations_per_step"] == 2 and report["prior"] == str(conditional_prior)


def test_bad_mr_and_guidance_are_refused(demo2d_case, conditional_prior, tmp_path, capsys):
    far = tmp_path / "far_t1.nii.gz"
    save_nifti(far, np.ones((10, 10, 1), np.float32), np.diag([1.0, 1.0, 1.0, 1.0]) + np.eye(4, k=3) * 5000)
    t1 = str(demo2d_case / "t1.nii.gz")
    cases = [
        (["--prior", str(conditional_prior), "--mr", t1, "--guidance", "-1"], "guidance must be a finite number >= 0"),
        (["--prior", str(conditional_prior), "--mr", t1, "--guidance", "nan"], "guidance must be a finite number"),
        (["--mr", t1], "mr was given, but the prior is unconditional"),
        (["--guidance", "0.5"], "guidance 0.5 > 0 needs an MR-conditioned prior"),
        (["--prior", str(conditional_prior), "--mr", str(far), "--guidance", "0.5"],
         "covers 0% of the reconstruction grid"),
    ]
    for extra, message in cases:
        assert _recon(demo2d_case, tmp_path / "out", *extra) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert main(["recon", "--method", "osem", "--out", str(tmp_path / "out"), "--sinogram",
                 str(demo2d_case / "sinogram.npz"), "--mr", t1]) == 2
    assert "--mr: method osem takes no MR image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
