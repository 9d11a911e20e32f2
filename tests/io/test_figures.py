from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from diffrecon.io.figures import VIEWS, save_panel, save_samples


def test_save_samples_writes_array_and_png_grid(tmp_path):
    samples = torch.rand(10, 16, 12)
    path = save_samples(tmp_path / "new", "axial", samples, columns=4)
    assert path == tmp_path / "new/axial_samples.png"
    rows, cols = plt.imread(path).shape[:2]
    assert abs(cols / rows - (4 * 2.6 + 0.8) / (2.6 + 0.6)) < 0.05  # one row of the first 4 samples, a colour bar
    np.testing.assert_array_equal(np.load(tmp_path / "new/axial_samples.npy"), samples.numpy())


def panel(monkeypatch, tmp_path, columns, **options) -> Figure:
    """The figure :func:`save_panel` draws (also written to a PNG)."""
    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda figure, *args, **kwargs: (drawn.append(figure),
                                                                            save(figure, *args, **kwargs)))
    path = save_panel(tmp_path / "panel.png", columns, **options)
    assert plt.imread(path).size > 0
    return drawn[0]


def colour_bars(figure: Figure) -> list:
    return [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]


def test_volume_panel_has_view_labels_and_a_colour_bar_per_scale(monkeypatch, tmp_path):
    """Images share one scale and colour bar in the image's units; the error (symmetric) and the std (its own
    range, which is far below the images') get one each; the rows are labelled by view."""
    rng = np.random.default_rng(0)
    reference = rng.uniform(0, 10, (12, 14, 10)).astype(np.float32)
    columns = {"reference": reference, "osem": reference + 1, "error": rng.normal(0, 2, reference.shape),
               "std": rng.uniform(0, 0.1, reference.shape)}
    figure = panel(monkeypatch, tmp_path, columns, signed={"error"}, own_scale={"std"}, cmap="hot",
                   quantity="activity (a.u.)", vmax=10.0)
    bars = colour_bars(figure)
    assert [bar.get_ylabel() for bar in bars] == ["activity (a.u.)"] * 3
    images, error, std = (bar.get_ylim() for bar in bars)
    assert images == (0.0, 10.0)
    assert error[0] == -error[1] == pytest.approx(-np.abs(columns["error"]).max())
    assert std == pytest.approx((0.0, np.percentile(columns["std"], 99.5)))
    grid = [ax for ax in figure.axes if ax not in bars]
    assert [ax.get_ylabel() for ax in grid[::4]] == list(VIEWS)  # first column, row by row
    assert {ax.images[0].get_cmap().name for ax in grid[:2]} == {"hot"}


def test_a_column_with_its_own_scale_can_name_its_own_quantity(monkeypatch, tmp_path):
    """A z-score map's colour bar is in standard deviations, not in the images' units."""
    rng = np.random.default_rng(0)
    columns = {"mean": rng.uniform(0, 5, (8, 6)), "std": rng.uniform(0, 1, (8, 6)), "z-score": rng.normal(0, 1, (8, 6))}
    figure = panel(monkeypatch, tmp_path, columns, signed={"z-score"}, own_scale={"std"},
                   quantity="activity (a.u.)", quantities={"z-score": "(truth − mean) / std", "mean": "ignored"})
    assert [bar.get_ylabel() for bar in colour_bars(figure)] == ["activity (a.u.)"] * 2 + ["(truth − mean) / std"]


def test_slice_panel_has_no_view_labels(monkeypatch, tmp_path):
    figure = panel(monkeypatch, tmp_path, {"a": np.ones((8, 6)), "b": np.zeros((8, 6))},
                   quantity="magnitude (a.u.)")
    assert [bar.get_ylabel() for bar in colour_bars(figure)] == ["magnitude (a.u.)"]
    assert {ax.get_ylabel() for ax in figure.axes if ax not in colour_bars(figure)} == {""}
