from __future__ import annotations

import numpy as np
import pytest

from diffrecon.checks import InputError
from diffrecon.io.nifti import save_nifti
from diffrecon.data.datasets import nifti_items, phantom_items, validation_slices


def test_nifti_folder(tmp_path):
    for i in range(2):
        save_nifti(tmp_path / f"s{i}.nii.gz", np.full((8, 8, 4), i + 1, np.float32), np.eye(4))
    (tmp_path / "notes.txt").write_text("not an image")
    items = nifti_items(tmp_path)
    assert len(items) == 2 and items[1]["image"].shape == (1, 8, 8, 4) and items[1]["image"].max() == 2


def test_nifti_folder_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        nifti_items(tmp_path / "missing")
    with pytest.raises(InputError, match="holds no NIfTI"):
        nifti_items(tmp_path)
    save_nifti(tmp_path / "a.nii.gz", np.ones((8, 8, 4), np.float32), np.eye(4))
    save_nifti(tmp_path / "b.nii.gz", np.ones((8, 8, 6), np.float32), np.eye(4))
    with pytest.raises(InputError, match="mixed sizes"):
        nifti_items(tmp_path)
    (tmp_path / "b.nii.gz").write_bytes(b"truncated")
    with pytest.raises(InputError, match="b.nii.gz could not be read"):
        nifti_items(tmp_path)


def test_phantoms_train_split_and_cache(tmp_path):
    items = phantom_items(1, "fdg", grid_shape=(16, 16, 16), voxel_size_mm=(12, 12, 12), cache_dir=tmp_path)
    again = phantom_items(1, "fdg", grid_shape=(16, 16, 16), voxel_size_mm=(12, 12, 12), cache_dir=tmp_path)
    assert items[0]["image"].shape == (1, 16, 16, 16) and items[0]["image"].max() > 0
    np.testing.assert_array_equal(items[0]["image"], again[0]["image"])
    assert len(list(tmp_path.glob("fdg_16x16x16_12x12x12_0.npy"))) == 1
    with pytest.raises(InputError, match="contrast"):
        phantom_items(1, "pd")


def test_validation_slices_are_fixed_and_indexed():
    volume = np.zeros((1, 8, 8, 10), np.float32)
    volume[0, 2:6, 2:6, 2:8] = np.arange(2, 8)
    out = validation_slices([{"image": volume}] * 2, "axial", positions=(0.0, 0.5))
    assert [o["index"] for o in out] == [0, 1, 2, 3]
    assert [float(o["image"].max()) for o in out] == [2.0, 5.0, 2.0, 5.0]
