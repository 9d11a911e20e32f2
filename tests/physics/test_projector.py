from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.physics.geometry import ImageGrid, ScannerGeometry, get_preset
from diffrecon.physics.projector import PETProjector
from tests.physics.pet_fixtures import cylinder, tiny_grid, tiny_scanner


def _dot_test(projector: PETProjector, batch: int = 2) -> float:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(batch, *projector.grid.shape, generator=generator)
    y = torch.rand(batch, *projector.sinogram_shape(), generator=generator)
    ax_y = (projector.forward(x).double() * y.double()).sum()
    x_aty = (x.double() * projector.adjoint(y).double()).sum()
    return abs(ax_y - x_aty).item() / abs(ax_y).item()


@pytest.mark.parametrize("max_ring_difference,span", [(0, 1), (3, 1), (7, 1), (7, 3), (7, 15)])
def test_adjoint_dot_product_3d(max_ring_difference, span):
    projector = PETProjector(tiny_scanner(max_ring_difference, span), tiny_grid())
    assert _dot_test(projector) < 1e-4


def test_adjoint_dot_product_2d_one_ring():
    projector = PETProjector(tiny_scanner(0, n_rings=1), tiny_grid(nz=1))
    assert projector.sinogram_shape() == (1, 16, 24)
    assert _dot_test(projector) < 1e-4


def test_gaussian_blob_projects_to_its_analytic_line_integrals():
    grid = ImageGrid((64, 64, 1), (1.5, 1.5, 3.0))
    scanner = ScannerGeometry(150.0, 128, 1, 3.0, n_views=12, n_bins=40, bin_size_mm=2.0)
    sigma, centre = 8.0, (6.0, -4.5)  # mm, off-centre so every view differs
    x, y = np.meshgrid(grid.axis_mm(0), grid.axis_mm(1), indexing="ij")
    blob = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma ** 2))
    projection = PETProjector(scanner, grid).forward(torch.tensor(blob[:, :, None], dtype=torch.float32))[0]
    phi = scanner.view_angles[:, None]
    offset = scanner.bin_centres_mm[None, :] - (centre[0] * np.cos(phi) + centre[1] * np.sin(phi))
    analytic = np.sqrt(2 * np.pi) * sigma * np.exp(-offset ** 2 / (2 * sigma ** 2))
    np.testing.assert_allclose(projection.numpy(), analytic, atol=0.01 * analytic.max())


def test_oblique_lines_are_longer_by_the_tilt():
    scanner = tiny_scanner(max_ring_difference=4)
    grid = tiny_grid()
    projection = PETProjector(scanner, grid).forward(cylinder(grid, 15.0))
    pairs = scanner.ring_pairs
    centre_bin = scanner.n_bins // 2
    direct = projection[pairs[:, 1] == pairs[:, 0]].mean()
    for diff in (1, 3):
        # ring pairs symmetric about the centre stay inside the cylinder
        index = np.flatnonzero((pairs[:, 1] - pairs[:, 0] == diff) & (pairs.sum(1) == scanner.n_rings - 1))
        oblique = projection[index[0], :, centre_bin].mean() / projection[pairs[:, 1] == pairs[:, 0]][:, :, centre_bin].mean()
        tilt = diff * scanner.ring_spacing_mm / (2 * np.sqrt(scanner.ring_radius_mm ** 2 - scanner.bin_centres_mm[centre_bin] ** 2))
        assert oblique.item() == pytest.approx(np.sqrt(1 + tilt ** 2), rel=0.02)
    assert direct > 0


def test_view_subsets_and_batches_match_full_projection():
    projector = PETProjector(tiny_scanner(2), tiny_grid(), views_per_chunk=5)
    x = torch.rand(3, *projector.grid.shape)
    full = projector.forward(x)
    views = [1, 5, 9, 13]
    torch.testing.assert_close(projector.forward(x, views), full[:, :, views], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(projector.forward(x[1]), full[1], rtol=1e-5, atol=1e-5)
    y = torch.rand(3, *projector.sinogram_shape(views))
    padded = torch.zeros(3, *projector.sinogram_shape())
    padded[:, :, views] = y
    torch.testing.assert_close(projector.adjoint(y, views), projector.adjoint(padded), rtol=1e-5, atol=1e-4)


def test_span_compression_sums_ring_pairs():
    span1 = PETProjector(tiny_scanner(7, 1), tiny_grid())
    span3 = PETProjector(tiny_scanner(7, 3), tiny_grid())
    x = torch.rand(*span1.grid.shape)
    expected = torch.zeros(span3.sinogram_shape()).index_add_(0, torch.as_tensor(span3.scanner.span_index), span1.forward(x))
    torch.testing.assert_close(span3.forward(x), expected, rtol=1e-5, atol=1e-4)


def test_stir_style_span_layout_matches_siemens_mmr():
    scanner = get_preset("clinical_brain").scanner
    assert scanner.n_sinograms_compressed == 837  # the Siemens mMR span-11 sinogram count


def test_bad_images_are_refused():
    """Shapes are checked at every projection; values (NaN) where data enter a reconstruction, once
    (tests/physics/test_pet_model.py), since a check of values synchronises a GPU at every call."""
    projector = PETProjector(tiny_scanner(1), tiny_grid())
    with pytest.raises(InputError, match="image has shape"):
        projector.forward(torch.zeros(16, 16, 7))


def test_bad_sinogram_and_views_are_refused():
    projector = PETProjector(tiny_scanner(1), tiny_grid())
    with pytest.raises(InputError, match="sinogram has shape"):
        projector.adjoint(torch.zeros(5, 16, 24))
    with pytest.raises(InputError, match="views"):
        projector.forward(torch.zeros(16, 16, 8), views=[16])


def test_image_larger_than_the_ring_is_refused():
    with pytest.raises(InputError, match="grid"):
        PETProjector(tiny_scanner(0), ImageGrid((64, 64, 8), (3.0, 3.0, 3.0)))


def test_unknown_preset_and_bad_geometry_are_refused():
    with pytest.raises(InputError, match="unknown preset 'petmr'"):
        get_preset("petmr")
    with pytest.raises(InputError, match="span"):
        tiny_scanner(3, span=2)
    with pytest.raises(InputError, match="max_ring_difference"):
        tiny_scanner(8)
