"""Sinogram files: STIR Interfile read/write (real STIR demo data + synthetic multi-segment), .npz, NIfTI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.io.interfile import parse_interfile_header, read_interfile_sinogram, segment_sizes
from diffrecon.io.sinogram import load_sinogram, save_sinogram, sidecar_path
from diffrecon.physics.geometry import ScannerGeometry

SMALL = ScannerGeometry(ring_radius_mm=100.0, n_detectors_per_ring=12, n_rings=8, ring_spacing_mm=4.0, n_views=6,
                        n_bins=5, bin_size_mm=4.0, max_ring_difference=5, span=3, name="small")


@pytest.fixture
def stir_demo(shared_data):
    header = shared_data / "stir_recon_demo_sino" / "smalllong.hs"
    if not header.is_file():
        pytest.skip(f"{header} not found")
    return header


def _encoded(scanner: ScannerGeometry) -> np.ndarray:
    """Every entry distinct: 1000 * sinogram + 10 * view + bin."""
    s, v, b = np.meshgrid(*map(np.arange, scanner.data_shape), indexing="ij")
    return (1000 * s + 10 * v + b).astype(np.float32)


def test_stir_demo_geometry_and_data(stir_demo):
    sinogram, scanner = load_sinogram(stir_demo)
    assert (scanner.n_rings, scanner.n_detectors_per_ring, scanner.n_views, scanner.n_bins) == (14, 112, 64, 75)
    assert scanner.ring_radius_mm == pytest.approx(300.0 + 7.0)  # inner radius + depth of interaction
    assert scanner.ring_spacing_mm == pytest.approx(6.54) and scanner.bin_size_mm == pytest.approx(3.0)
    assert scanner.segments == [(-8, 8)] and scanner.max_ring_difference == 8
    assert sinogram.shape == scanner.data_shape == (27, 64, 75) and sinogram.dtype == np.float32
    assert np.isfinite(sinogram).all()
    # this simulated STIR file holds small negative values (SOURCE.txt: values -0.38..6.16), not counts
    assert sinogram.min() == pytest.approx(-0.3848, abs=1e-3) and sinogram.max() == pytest.approx(6.1606, abs=1e-3)
    raw = np.fromfile(stir_demo.with_suffix(".s"), dtype="<f4")
    assert sinogram.sum(dtype=np.float64) == pytest.approx(raw.sum(dtype=np.float64), rel=1e-12)


def test_stir_demo_views_and_axial_positions_are_not_swapped(stir_demo):
    """In a parallel-beam sinogram every view sees the whole object: the sum over bins is nearly view-independent."""
    sinogram, _ = load_sinogram(stir_demo)
    per_view = sinogram.sum(axis=2)  # (axial, view)
    central = per_view[5:22]
    assert (central.std(axis=1) / central.mean(axis=1)).max() < 0.05
    swapped = sinogram.reshape(64, 27, 75).sum(axis=2)[:, 5:22]  # the other reading of the same bytes
    assert (swapped.std(axis=0) / swapped.mean(axis=0)).min() > 0.05


def test_stir_demo_round_trip_is_bit_identical(stir_demo, tmp_path):
    sinogram, scanner = load_sinogram(stir_demo)
    out = save_sinogram(tmp_path / "copy.hs", sinogram, scanner)
    again, scanner_again = load_sinogram(out)
    assert np.array_equal(again, sinogram) and scanner_again == scanner
    keys = parse_interfile_header(out)
    original = parse_interfile_header(stir_demo)
    for key in ("matrix size[2]", "minimum ring difference per segment", "maximum ring difference per segment",
                "matrix axis label[2]", "matrix axis label[3]"):
        assert keys[key].replace(" ", "") == original[key].replace(" ", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.hs", "copy.s"]  # no temporary leftovers


@pytest.mark.parametrize("storage_order", ["by_view", "by_sinogram"])
def test_multi_segment_file_layout_follows_stir(tmp_path, storage_order):
    """Span 3, ring difference <= 5: segments stored 0, +1, -1, +2, -2 as STIR writes; blocks by view or sinogram."""
    sinogram = _encoded(SMALL)
    path = save_sinogram(tmp_path / "s.hs", torch.from_numpy(sinogram), SMALL, storage_order=storage_order)
    keys = parse_interfile_header(path)
    assert SMALL.segments == [(-1, 1), (-4, -2), (2, 4), (-5, -5), (5, 5)]
    assert keys["minimum ring difference per segment"] == "{ -1, 2, -4, 5, -5}"
    assert keys["maximum ring difference per segment"] == "{ 1, 4, -2, 5, -5}"
    sizes = segment_sizes(SMALL)
    assert sizes == [15, 11, 11, 3, 3] and sum(sizes) == SMALL.data_shape[0]
    raw = np.fromfile(path.with_suffix(".s"), dtype="<f4")
    first_oblique = raw[15 * 6 * 5:(15 + 11) * 6 * 5]  # second stored block is our segment (2, 4), rows 26..36
    expected = sinogram[26:37]
    if storage_order == "by_view":
        expected = expected.transpose(1, 0, 2)
    assert np.array_equal(first_oblique, expected.ravel())
    again, scanner = load_sinogram(path)
    assert np.array_equal(again, sinogram) and scanner == SMALL


def test_hand_written_header_big_endian_int_offset_scale(tmp_path):
    """Case, '!' and '_' in keys are free; int16 big-endian data after a 16-byte offset, times a scale factor."""
    scanner = ScannerGeometry(ring_radius_mm=60.0, n_detectors_per_ring=8, n_rings=3, ring_spacing_mm=5.0, n_views=4,
                              n_bins=3, bin_size_mm=10.0, max_ring_difference=1)
    counts = np.arange(7 * 4 * 3, dtype=np.int16).reshape(7, 4, 3)  # our order: d=0 (3), d=-1 (2), d=+1 (2)
    stored = np.concatenate([counts[0:3], counts[5:7], counts[3:5]])  # file order: 0, +1, -1; by sinogram
    (tmp_path / "h.dat").write_bytes(b"\0" * 16 + stored.astype(">i2").tobytes())
    (tmp_path / "h.hs").write_text("""!INTERFILE :=
NAME OF DATA FILE := h.dat
imagedata byte order := BIGENDIAN
number format := signed integer
number_of_bytes_per_pixel := 2
number of dimensions := 4
matrix axis label [4] := segment
matrix size [4] := 3
Matrix Axis Label [3] := axial coordinate
!matrix size [3] := {3,2,2}
matrix axis label [2] := view
matrix size[2] := 4
matrix axis label [1] := tangential coordinate
matrix size [1] := 3
minimum ring difference per segment := {0, 1, -1}  ; comment
maximum ring difference per segment := {0, 1, -1}
number of rings := 3
number of detectors per ring := 8
inner ring diameter (cm) := 11
average depth of interaction (cm) := 0.5
distance between rings (cm) := 0.5
default bin size (cm) := 1
image scaling factor [1] := 0.5
data offset in bytes [1] := 16
!END OF INTERFILE :=
""")
    sinogram, read_scanner = read_interfile_sinogram(tmp_path / "h.hs")
    assert read_scanner == scanner
    assert np.array_equal(sinogram, counts.astype(np.float32) * 0.5)


def test_npz_and_nifti_round_trip_with_batch(tmp_path):
    batch = np.random.default_rng(0).poisson(3.0, (2, *SMALL.data_shape)).astype(np.float32)
    for name in ("b.npz", "b.nii.gz", "b.nii"):
        path = save_sinogram(tmp_path / name, batch, SMALL)
        again, scanner = load_sinogram(path)
        assert np.array_equal(again, batch) and scanner == SMALL and scanner.name == "small"
    assert sidecar_path(tmp_path / "b.nii.gz").is_file()


def _write_small(tmp_path):
    return save_sinogram(tmp_path / "s.hs", _encoded(SMALL), SMALL)


def _edit_header(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_missing_and_truncated_data_file(tmp_path):
    path = _write_small(tmp_path)
    data = path.with_suffix(".s")
    data.write_bytes(data.read_bytes()[:-8])
    with pytest.raises(InputError, match=r"s\.s.*truncated.*promises"):
        load_sinogram(path)
    data.unlink()
    with pytest.raises(InputError, match=r"data file.*s\.s.*does not exist"):
        load_sinogram(path)


@pytest.mark.parametrize("old, new, match", [
    ("!number format := float", "!number format := ASCII", "'number format'"),
    ("!number of bytes per pixel := 4", "!number of bytes per pixel := 3", "'number format'"),
    ("Number of rings := 8\n", "", "'number of rings' is missing"),
    ("!matrix size [2] := { 15, 11, 11, 3, 3}", "!matrix size [2] := { 15, 11, 11, 3, 4}", "axial positions"),
    ("View offset (degrees) := 0", "View offset (degrees) := 1.5", "'view offset"),
    ("matrix axis label [3] := view", "matrix axis label [3] := bucket", "matrix axis label"),
    ("maximum ring difference per segment := { 1, 4, -2, 5, -5}",
     "maximum ring difference per segment := { 1, 4, -2, 6, -5}", "segment table"),
    ("image scaling factor[1] := 1", "image scaling factor[1] := {1, 2}", "scale factor"),
])
def test_bad_headers_name_file_and_key(tmp_path, old, new, match):
    path = _write_small(tmp_path)
    _edit_header(path, old, new)
    with pytest.raises(InputError, match=match) as error:
        load_sinogram(path)
    assert "s.hs" in str(error.value)


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match=r"sinogram has shape \(26, 6, 5\)"):
        save_sinogram(tmp_path / "a.npz", np.zeros((26, 6, 5)), SMALL)
    with pytest.raises(InputError, match="one frame, no batch"):
        save_sinogram(tmp_path / "a.hs", np.zeros((1, *SMALL.data_shape)), SMALL)
    bad = _encoded(SMALL)
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        save_sinogram(tmp_path / "a.nii.gz", bad, SMALL)
    with pytest.raises(InputError, match="unknown sinogram file type"):
        save_sinogram(tmp_path / "a.mat", bad, SMALL)
    with pytest.raises(InputError, match="storage_order"):
        save_sinogram(tmp_path / "a.hs", _encoded(SMALL), SMALL, storage_order="by_segment")
    assert list(tmp_path.iterdir()) == []  # nothing written half-way
    save_sinogram(tmp_path / "b.nii.gz", _encoded(SMALL), SMALL)
    sidecar_path(tmp_path / "b.nii.gz").unlink()
    with pytest.raises(InputError, match=r"sidecar.*b\.json.*does not exist"):
        load_sinogram(tmp_path / "b.nii.gz")
    with pytest.raises(InputError, match=r"sinogram.*nope\.npz.*does not exist"):
        load_sinogram(tmp_path / "nope.npz")


def test_sub_sample_convention_differences_warn(tmp_path):
    path = _write_small(tmp_path)
    _edit_header(path, "applied corrections := {arc correction}", "applied corrections := {None}")
    with pytest.warns(UserWarning, match="not arc-corrected"):
        load_sinogram(path)
