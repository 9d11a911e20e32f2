"""Global heap checks before variable-length HDF5 data is read: a collection libhdf5 would walk forever (a
free-space object of size 0, a size that overflows its arithmetic) or a missing object is refused, naming the file
and dataset; intact files pass. The corrupt files are never read through libhdf5 here (with the free space of
size 0, HDF5 2.0.0's read loops forever)."""
from __future__ import annotations

import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from diffrecon.checks import InputError
from diffrecon.io.hdf5_heaps import check_variable_length_heaps

NAME = "kspace file 'scan.h5'"


def _collections(path: Path) -> list[tuple[int, list[tuple[int, int, int]]]]:
    """(address, [(object header address, index, size), ...]) of each global heap collection of the file."""
    raw = path.read_bytes()
    found = []
    at = raw.find(b"GCOL")
    while at >= 0:
        size = int.from_bytes(raw[at + 8:at + 16], "little")
        objects, spot = [], at + 16
        while spot + 16 <= at + size:
            index, = struct.unpack_from("<H", raw, spot)
            length = int.from_bytes(raw[spot + 8:spot + 16], "little")
            objects.append((spot, index, length))
            spot += 16 + -(-length // 8) * 8 if index else length
            if not index:
                break
        found.append((at, objects))
        at = raw.find(b"GCOL", at + 4)
    return found


def _patch(path: Path, at: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[at:at + len(data)] = data
    path.write_bytes(bytes(raw))


@pytest.fixture
def acquisitions(tmp_path) -> Path:
    """An ISMRMRD-like file: an XML string (variable-length, contiguous) and chunked records with a fixed header and
    variable-length trajectory and data fields, as ismrmrd.Dataset writes them."""
    record = np.dtype([("head", [("scan_counter", "<u4"), ("number_of_samples", "<u2")]),
                       ("traj", h5py.vlen_dtype(np.float32)), ("data", h5py.vlen_dtype(np.float32))])
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("dataset/xml", data=["<ismrmrdHeader/>"], dtype=h5py.string_dtype())
        data = handle.create_dataset("dataset/data", shape=(3,), maxshape=(None,), chunks=(1,), dtype=record)
        for i in range(3):
            data[i] = ((i, 4), np.zeros(0, np.float32), np.arange(8, dtype=np.float32) + i)
    return path


def test_intact_files_pass_and_are_still_readable(acquisitions):
    check_variable_length_heaps(acquisitions, ["dataset/xml", "dataset/data", "dataset/missing"], NAME)
    with h5py.File(acquisitions, "r") as handle:
        assert handle["dataset/data"][2]["data"][0] == 2 and handle["dataset/xml"][0] == b"<ismrmrdHeader/>"


@pytest.mark.parametrize("size", [0, 2 ** 64 - 1], ids=["free space of size 0", "size past the collection"])
def test_a_collection_libhdf5_cannot_walk_is_refused(acquisitions, size):
    address, objects = _collections(acquisitions)[-1]
    free = next(spot for spot, index, _ in objects if index == 0)
    _patch(acquisitions, free + 8, size.to_bytes(8, "little"))  # the free-space object's size
    with pytest.raises(InputError, match=rf"^{NAME}: dataset 'dataset/\w+' points into a corrupt global heap "
                                         rf"collection at byte {address} \(object 0 at byte {free} declares {size} "
                                         "bytes"):
        check_variable_length_heaps(acquisitions, ["dataset/xml", "dataset/data"], NAME)


def test_the_corrupt_collection_of_the_fuzzed_ismrmrd_file_is_refused(acquisitions):
    """scripts/fuzz_readers.py ismrmrd case 900 (seed 0): 37 bytes of 0xff over the end of the last data object and
    the free-space header of a collection; reading its acquisitions hung inside libhdf5."""
    address, objects = _collections(acquisitions)[-1]
    free = next(spot for spot, index, _ in objects if index == 0)
    _patch(acquisitions, free - 12, b"\xff" * 37)
    with pytest.raises(InputError, match=rf"corrupt global heap collection at byte {address} \(object 65535"):
        check_variable_length_heaps(acquisitions, ["dataset/xml", "dataset/data"], NAME)


def test_a_missing_object_is_refused(acquisitions):
    _, objects = _collections(acquisitions)[-1]
    spot, index, _ = next(o for o in objects if o[2] == 32)  # a data field: 8 float32 values
    _patch(acquisitions, spot, struct.pack("<H", 77))
    with pytest.raises(InputError, match=rf"dataset 'dataset/data': variable-length object {index} of the global "
                                         r"heap collection at byte \d+ is missing"):
        check_variable_length_heaps(acquisitions, ["dataset/data"], NAME)


def test_fields_after_a_variable_length_string_are_found_where_the_file_stores_them(tmp_path):
    """A variable-length string takes 8 bytes in memory and 16 in the file: the members after it move."""
    record = np.dtype([("s", h5py.string_dtype()), ("n", "<i4"), ("v", h5py.vlen_dtype(np.float32))])
    path = tmp_path / "mixed.h5"
    with h5py.File(path, "w") as handle:
        for layout in ("contiguous", "chunked"):
            data = handle.create_dataset(layout, shape=(2,), dtype=record, chunks=(1,) if layout == "chunked" else None)
            data[0] = ("abc", 1, np.arange(5, dtype=np.float32))
            data[1] = ("de", 2, np.arange(3, dtype=np.float32))
    check_variable_length_heaps(path, ["contiguous", "chunked"], NAME)
    for layout in ("contiguous", "chunked"):
        with h5py.File(path, "r") as handle:
            element = handle[layout][0]
        assert element["s"] == b"abc" and list(element["v"]) == [0, 1, 2, 3, 4]
    address, objects = _collections(path)[0]
    spot, index, _ = next(o for o in objects if o[2] == 20)  # the 5 floats of element 0's "v"
    _patch(path, spot, struct.pack("<H", 77))
    with pytest.raises(InputError, match=rf"variable-length object {index} of the global heap collection at byte "
                                         rf"{address} is missing"):
        check_variable_length_heaps(path, ["contiguous", "chunked"], NAME)


def test_files_without_variable_length_data_or_not_hdf5_are_left_to_the_read(tmp_path):
    with h5py.File(tmp_path / "fixed.h5", "w") as handle:
        handle["kspace"] = np.ones((2, 4), np.complex64)
    check_variable_length_heaps(tmp_path / "fixed.h5", ["kspace"], NAME)
    (tmp_path / "text.h5").write_text("not HDF5")
    check_variable_length_heaps(tmp_path / "text.h5", ["dataset/data"], NAME)
