from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from diffrecon.io.figures import save_samples


def test_save_samples_writes_array_and_png_grid(tmp_path):
    samples = torch.rand(10, 16, 12)
    path = save_samples(tmp_path / "new", "axial", samples, columns=4)
    assert path == tmp_path / "new/axial_samples.png"
    rows, cols = plt.imread(path).shape[:2]
    assert abs(cols / rows - (4 * 2.6) / (2.6 + 0.6)) < 0.05  # one row of the first 4 samples
    np.testing.assert_array_equal(np.load(tmp_path / "new/axial_samples.npy"), samples.numpy())
