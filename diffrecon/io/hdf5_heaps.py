"""Checks of an HDF5 file's global heap before its variable-length data is read.

Variable-length fields (ISMRMRD's acquisition data and trajectory, variable-length strings) are stored in global
heap collections. libhdf5 walks a collection's object headers when it loads it, and a corrupt header can stop
that walk from advancing: a free-space object of size 0 in a collection makes the read loop forever inside
libhdf5 (HDF5 2.0.0 here), where no Python timeout or signal reaches it; an object that runs past its collection
is refused by libhdf5 itself, but only once it is read. :func:`check_variable_length_heaps` walks the same
headers in Python, from the raw bytes of the file, before any variable-length element is read, and refuses a
collection that libhdf5 could not walk to its end.
"""
from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from diffrecon.checks import InputError

_SIGNATURE = b"GCOL"
_MAX_COLLECTIONS = 1 << 20  # more distinct collections than this in one file's checked datasets: refused


def check_variable_length_heaps(path: str | Path, datasets: Iterable[str], name: str) -> None:
    """Raise :class:`InputError` (naming the file as ``name``) if a variable-length element of one of ``datasets``
    points into a global heap collection that libhdf5 cannot walk, or to an object that is missing from it or too
    small for the element. Reads only raw bytes (the chunk index and the collections), never an element through
    libhdf5's type conversion, so it cannot hang where the read would.

    Datasets that are missing, of fixed-size types, compact or filtered (compressed chunks cannot be parsed
    without decompressing them) are left to the read itself.

    Args:
        path: the HDF5 file.
        datasets: dataset paths inside it, e.g. ``["dataset/xml", "dataset/data"]``.
        name: how the file is named in error messages, e.g. ``"kspace file 'scan.h5'"``.
    """
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except Exception:  # not HDF5 or unreadable: the read that follows names the problem
        return
    with handle, open(path, "rb") as raw:
        file_size = path.stat().st_size
        sizeof_addr, sizeof_size = handle.id.get_create_plist().get_sizes()
        references: list[tuple[int, int, int, int, str]] = []  # length, heap address, object index, base size, dataset
        for key in datasets:
            try:
                dataset = handle.get(key)
            except Exception:  # a broken link or object header: left to the read
                continue
            if not isinstance(dataset, h5py.Dataset):
                continue
            layout = _disk_layout(dataset.id.get_type(), sizeof_addr)
            if layout is None or not layout[1]:
                continue
            record, fields = layout
            for chunk in _raw_elements(dataset, raw, file_size, record, name, key):
                for start in range(0, len(chunk), record):
                    for offset, base in fields:
                        at = start + offset
                        length, = struct.unpack_from("<I", chunk, at)
                        address = int.from_bytes(chunk[at + 4:at + 4 + sizeof_addr], "little")
                        index, = struct.unpack_from("<I", chunk, at + 4 + sizeof_addr)
                        if length:
                            references.append((length, address, index, base, key))
        collections: dict[int, dict[int, int]] = {}
        for length, address, index, base, key in references:
            if address not in collections:
                if len(collections) >= _MAX_COLLECTIONS:
                    raise InputError(f"{name}: dataset '{key}' points into more than {_MAX_COLLECTIONS} global heap "
                                     "collections; expected an intact HDF5 file")
                collections[address] = _walk_collection(raw, file_size, address, sizeof_size, name, key)
            size = collections[address].get(index)
            if size is None or size < length * base:
                found = "is missing" if size is None else f"holds {size} bytes, not {length * base}"
                raise InputError(f"{name}: dataset '{key}': variable-length object {index} of the global heap "
                                 f"collection at byte {address} {found}; expected an intact HDF5 file")


def _disk_layout(tid: Any, sizeof_addr: int) -> tuple[int, list[tuple[int, int]]] | None:
    """The size of one element of HDF5 type ``tid`` as stored in the file and, for each variable-length field,
    (its byte offset in the stored element, bytes per element of its sequence); None for a type not parsed here
    (arrays of variable-length types).

    ``tid`` is a dataset's type as libhdf5 hands it out, laid out in memory: a variable-length field takes 16 bytes
    there (8 for a string) and ``4 + sizeof_addr + 4`` in the file (length, heap collection address, object index),
    and compound members after it move by the difference, as libhdf5 moves them between the two layouts."""
    import h5py

    kind = tid.get_class()
    stored = 4 + sizeof_addr + 4
    if kind == h5py.h5t.VLEN:
        return stored, [(0, tid.get_super().get_size())]
    if kind == h5py.h5t.STRING and tid.is_variable_str():
        return stored, [(0, 1)]
    if kind == h5py.h5t.COMPOUND:
        fields: list[tuple[int, int]] = []
        shift = 0
        members = sorted(range(tid.get_nmembers()), key=tid.get_member_offset)
        for i in members:
            member = tid.get_member_type(i)
            inner = _disk_layout(member, sizeof_addr)
            if inner is None:
                return None
            offset = tid.get_member_offset(i) - shift
            fields += [(offset + at, base) for at, base in inner[1]]
            shift += member.get_size() - inner[0]
        return tid.get_size() - shift, fields
    if kind == h5py.h5t.ARRAY and _disk_layout(tid.get_super(), sizeof_addr) != (tid.get_super().get_size(), []):
        return None
    return tid.get_size(), []


def _raw_elements(dataset: Any, raw, file_size: int, record: int, name: str, key: str) -> Iterable[bytes]:
    """The dataset's stored bytes, chunk by chunk (one piece for contiguous storage), as written in the file; a
    piece whose size is not the one its elements need (``record`` bytes each) is left to the read."""
    import h5py

    plist = dataset.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        offset, size = dataset.id.get_offset(), dataset.id.get_storage_size()
        if offset is not None and size and size == dataset.size * record:
            yield _read(raw, file_size, offset, size, name, key)
        return
    if layout != h5py.h5d.CHUNKED or plist.get_nfilters():
        return
    expected = record * int(np.prod(dataset.chunks))
    spots: list[tuple[int, int]] = []
    try:
        try:
            dataset.id.chunk_iter(lambda info: spots.append((info.byte_offset, info.size)))
        except AttributeError:  # HDF5 before 1.12.3: one chunk at a time
            spots = [(info.byte_offset, info.size) for info in map(dataset.id.get_chunk_info,
                                                                    range(dataset.id.get_num_chunks()))]
    except Exception:  # a corrupt chunk index: the read names it
        return
    for offset, size in spots:
        if offset is not None and size == expected:
            yield _read(raw, file_size, offset, size, name, key)


def _read(raw, file_size: int, offset: int, size: int, name: str, key: str) -> bytes:
    if offset + size > file_size:
        raise InputError(f"{name}: dataset '{key}' stores {size} bytes at byte {offset}, past the end of the "
                         f"{file_size}-byte file; expected a complete file")
    raw.seek(offset)
    return raw.read(size)


def _walk_collection(raw, file_size: int, address: int, sizeof_size: int, name: str, key: str) -> dict[int, int]:
    """Walk the global heap collection at ``address`` as libhdf5 does when it loads it; returns object index ->
    size, or raises where libhdf5 would loop forever or read past the collection."""
    def corrupt(what: str) -> InputError:
        return InputError(f"{name}: dataset '{key}' points into a corrupt global heap collection at byte {address} "
                          f"({what}); expected an intact HDF5 file")

    header = 8 + sizeof_size  # signature, version, 3 reserved bytes, collection size
    object_header = 8 + sizeof_size  # index, reference count, 4 reserved bytes, object size
    if address + header > file_size:
        raise corrupt(f"its header lies past the end of the {file_size}-byte file")
    raw.seek(address)
    head = raw.read(header)
    if head[:4] != _SIGNATURE or head[4] != 1:
        raise corrupt("no GCOL version 1 signature")
    size = int.from_bytes(head[8:header], "little")
    if size < header or address + size > file_size:
        raise corrupt(f"declared size {size} bytes; the file ends {file_size - address} bytes after it starts")
    body = head + raw.read(size - header)
    objects: dict[int, int] = {}
    at = header
    while at < size:
        if at + object_header > size:  # a tail too small for an object header is free space
            break
        index, = struct.unpack_from("<H", body, at)
        length = int.from_bytes(body[at + 8:at + object_header], "little")
        # an object's storage is its header and its data padded to 8 bytes; the free-space object (index 0) gives
        # its whole size, header included
        need = object_header + -(-length // 8) * 8 if index else length
        if need < object_header or at + need > size:
            raise corrupt(f"object {index} at byte {address + at} declares {length} bytes, "
                          f"{size - at} are left in the collection")
        if index:
            objects[index] = length
        at += need
    return objects
