"""A site's training pairs: simulated case folders and folders of named files are read as pairs on one grid;
an unpaired case and a mismatched reference are refused naming the case."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from diffrecon.checks import InputError
from diffrecon.io.demo_cases import simulate_to_folder
from diffrecon.io.pairs import load_pet_pairs, split_pairs


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("simulated")
    for seed in (0, 1):
        simulate_to_folder(root / f"case{seed}", seed, preset="demo2d", split="train", count_level="10%")
    return root


def _named_files(case, out):
    """The simulated case as a folder of named files: sinogram, factors and reference.nii.gz."""
    out.mkdir(parents=True)
    for name in ("sinogram", "multiplicative", "additive"):
        shutil.copy(case / f"{name}.npz", out / f"{name}.npz")
    shutil.copy(case / "fdg.nii.gz", out / "reference.nii.gz")
    return out


def test_simulated_folders_and_named_files_are_read_as_pairs(simulated, tmp_path):
    root = tmp_path / "pairs"
    shutil.copytree(simulated / "case0", root / "a_simulated")
    _named_files(simulated / "case1", root / "b_named")
    pairs = load_pet_pairs(root)
    assert [p["name"] for p in pairs] == ["a_simulated", "b_named"] and [p["index"] for p in pairs] == [0, 1]
    truth = np.asarray(nib.load(simulated / "case1" / "fdg.nii.gz").get_fdata(), dtype=np.float32)
    assert np.allclose(pairs[1]["image"].numpy(), truth.reshape(pairs[1]["image"].shape), atol=1e-5)
    assert pairs[1]["sinogram"].shape == pairs[1]["physics"].data_shape
    train, validation = split_pairs(pairs, 1)
    assert [p["name"] for p in train] == ["a_simulated"] and validation[0]["index"] == 0
    with pytest.raises(InputError, match="n_val is 2; expected 0 to 1 validation pairs of the 2 given"):
        split_pairs(pairs, 2)


def test_unpaired_and_mismatched_cases_and_empty_folders_are_refused_by_name(simulated, tmp_path):
    unpaired = _named_files(simulated / "case0", tmp_path / "unpaired" / "c1")
    (unpaired / "reference.nii.gz").unlink()
    with pytest.raises(InputError, match="pair c1: unpaired: no reference file"):
        load_pet_pairs(tmp_path / "unpaired")
    mismatched = _named_files(simulated / "case0", tmp_path / "mismatched" / "c2")
    image = nib.load(mismatched / "reference.nii.gz")
    nib.save(nib.Nifti1Image(10 * image.get_fdata(), image.affine), mismatched / "reference.nii.gz")
    with pytest.raises(InputError, match=r"pair c2: mismatched: .* expects .* counts, 1\d\.?\d* times the"):
        load_pet_pairs(tmp_path / "mismatched")
    with pytest.raises(InputError, match="holds no case folders"):
        load_pet_pairs(tmp_path / "mismatched" / "c2")


def test_pairs_of_two_scanners_are_refused(simulated, tmp_path):
    """One h-network set is trained per scanner and grid: a folder mixing demo2d and demo cases is refused."""
    root = tmp_path / "mixed"
    shutil.copytree(simulated / "case0", root / "a_demo2d")
    simulate_to_folder(root / "b_demo", 1, preset="demo", split="train", count_level="10%")
    with pytest.raises(InputError, match=r"mixes scanners or grids .*'demo'.*'demo2d'|mixes scanners or grids .*'demo2d'.*'demo'"):
        load_pet_pairs(root)
