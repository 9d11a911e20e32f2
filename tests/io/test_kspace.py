"""k-space readers: NumPy layouts, fastMRI HDF5 (written here in fastMRI's layout), real ISMRMRD HDF5, errors."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.io.kspace import read_kspace

FASTMRI_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><experimentalConditions><H1resonanceFrequency_Hz>63500000
</H1resonanceFrequency_Hz></experimentalConditions><encoding><encodedSpace><matrixSize><x>16</x><y>6</y><z>1</z>
</matrixSize><fieldOfView_mm><x>320</x><y>120</y><z>4</z></fieldOfView_mm></encodedSpace><reconSpace><matrixSize>
<x>8</x><y>6</y><z>1</z></matrixSize><fieldOfView_mm><x>160</x><y>120</y><z>4</z></fieldOfView_mm></reconSpace>
<encodingLimits></encodingLimits><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"""


def _complex(*shape: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_numpy_layout_reorders_to_coil_x_y(tmp_path):
    array = _complex(2, 6, 10)  # (coil, line, column) as Siemens stores it
    np.save(tmp_path / "k.npy", array)
    data = read_kspace(tmp_path / "k.npy", layout="cyx")
    assert data.kspace.shape == (2, 10, 6) and data.ndim == 2
    assert torch.equal(data.kspace[1, 3, 4], torch.as_tensor(array[1, 4, 3]))
    single = read_kspace(tmp_path / "k.npy", layout="bxy")
    assert single.kspace.shape == (2, 1, 6, 10)


def test_npz_and_measured_mask(tmp_path):
    array = _complex(3, 8, 8)
    array[:, :, ::2] = 0
    np.savez(tmp_path / "k.npz", kspace=array)
    data = read_kspace(tmp_path / "k.npz")
    assert data.mask.shape == (8, 8) and data.mask.sum() == 32 and not data.mask[:, 0].any()


def test_real_arrays_bad_layouts_nan_and_broken_files_are_named(tmp_path):
    np.save(tmp_path / "real.npy", np.ones((2, 4, 4), dtype=np.float32))
    with pytest.raises(InputError, match="holds real float32 data; expected complex"):
        read_kspace(tmp_path / "real.npy")
    np.save(tmp_path / "k.npy", _complex(2, 4, 4))
    with pytest.raises(InputError, match=r"^layout 'cx' does not describe the shape \(2, 4, 4\) of kspace file"):
        read_kspace(tmp_path / "k.npy", layout="cx")
    bad = _complex(2, 4, 4)
    bad[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(InputError, match="NaN/Inf"):
        read_kspace(tmp_path / "nan.npy")
    (tmp_path / "k.npy").write_bytes((tmp_path / "k.npy").read_bytes()[:100])
    with pytest.raises(InputError, match="cannot be read"):
        read_kspace(tmp_path / "k.npy")
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5"):
        read_kspace(tmp_path / "broken.h5")
    with pytest.raises(InputError, match="does not exist"):
        read_kspace(tmp_path / "missing.h5")


@pytest.mark.parametrize("coils", [0, 3])
def test_fastmri_single_and_multicoil(tmp_path, coils):
    shape = (2, coils, 16, 6) if coils else (2, 16, 6)
    array = _complex(*shape)
    with h5py.File(tmp_path / "file.h5", "w") as handle:
        handle["kspace"] = array
        handle["reconstruction_rss"] = np.ones((2, 8, 6), dtype=np.float32)
        handle["ismrmrd_header"] = FASTMRI_HEADER
        handle.attrs["acquisition"] = "CORPD_FBK"
    data = read_kspace(tmp_path / "file.h5")
    assert data.source == "fastmri" and data.kspace.shape == (2, max(coils, 1), 16, 6)
    assert data.readout_oversampling == 2 and data.voxel_size_mm == (20.0, 20.0, 4.0)
    assert data.reference.shape == (2, 8, 6) and data.header["acquisition"] == "CORPD_FBK"


def test_ismrmrd_grappa_file(shared_data):
    data = read_kspace(shared_data / "sirf_mr_grappa" / "grappa2_1rep.h5")
    assert data.source == "ismrmrd" and data.kspace.shape == (4, 256, 256)
    lines = data.mask[0]
    assert torch.equal(data.mask, lines.expand(256, 256))  # whole readout lines
    # GRAPPA R=2 with embedded calibration: every other line plus a block of ACS lines (142 of 256).
    assert int(lines.sum()) == 142 and lines[::2].all()
    assert data.voxel_size_mm == (1.0, 1.0, 5.0) and data.readout_oversampling == 1
    # its one noise measurement (4 coils x 256 samples) gives the noise level; the operator of the case carries it
    assert data.noise_sigma == pytest.approx(0.0727, rel=0.01)
    from diffrecon.io.cases import load_mri_case
    case = load_mri_case(shared_data / "sirf_mr_grappa" / "grappa2_1rep.h5")
    assert case.physics.noise_sigma == data.noise_sigma and case.physics.to("cpu").noise_sigma == data.noise_sigma


def test_hdf5_without_kspace_is_named(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["image"] = np.ones(3)
    with pytest.raises(InputError, match="neither fastMRI 'kspace' nor ISMRMRD 'dataset'"):
        read_kspace(tmp_path / "other.h5")


def test_siemens_twix_file_equals_its_numpy_export(shared_data):
    folder = shared_data / "twix_gre_siemens"
    data = read_kspace(folder / "gre.dat")
    exported = read_kspace(folder / "gre_kspace_cha_lin_col.npy", layout="cyx")  # twixtools' own array, saved
    assert data.source == "twix" and data.ndim == 2 and data.kspace.shape == (2, 320, 160)
    assert torch.equal(data.kspace, exported.kspace)
    # 200 mm field of view over 160 samples after the 2x readout oversampling, 4 mm slice
    assert data.readout_oversampling == 2 and data.voxel_size_mm == (1.25, 1.25, 4.0)


@pytest.mark.parametrize("cut", ["empty", "text", "header only", "truncated"])
def test_broken_twix_files_are_named(shared_data, tmp_path, cut):
    original = (shared_data / "twix_gre_siemens" / "gre.dat").read_bytes()
    content = {"empty": b"", "text": b"not a scan\n" * 20, "header only": original[:20000],
               "truncated": original[:len(original) - 5000]}[cut]
    path = tmp_path / "meas.dat"
    path.write_bytes(content)
    with pytest.raises(InputError, match=f"kspace file '{path}'.*expected a complete"):
        read_kspace(path)


def test_ismrmrd_file_with_a_corrupt_global_heap_is_refused_before_the_read_that_would_hang(tmp_path):
    """scripts/fuzz_readers.py's ismrmrd case 900 (seed 0) hung inside libhdf5: 37 bytes of 0xff over the object
    headers of the global heap collection holding acquisition data sent libhdf5's walk of the collection onto a
    free-space object of size 0, where it never advances. The collections are now walked first, in Python."""
    import ismrmrd

    path = tmp_path / "scan.h5"
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header(FASTMRI_HEADER)
    for line in range(6):
        acquisition = ismrmrd.Acquisition.from_array(_complex(2, 16))
        acquisition.idx.kspace_encode_step_1 = line
        dataset.append_acquisition(acquisition)
    dataset.close()
    raw = bytearray(path.read_bytes())
    heap = raw.rfind(b"GCOL")
    spot = heap + 16
    while int.from_bytes(raw[spot:spot + 2], "little"):  # to the collection's free-space object (index 0)
        spot += 16 + -(-int.from_bytes(raw[spot + 8:spot + 16], "little") // 8) * 8
    raw[spot + 8:spot + 16] = bytes(8)  # its size 0: libhdf5 would loop on it forever
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=rf"kspace file '{path}': dataset 'dataset/\w+' points into a corrupt global "
                                         rf"heap collection at byte {heap}"):
        read_kspace(path)
