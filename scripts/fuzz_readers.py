"""Fuzz every reader a user's file meets: mutated files must give ok or an InputError naming the file.

For each reader, small valid files are written with the project's own writers (or h5py, ismrmrd, pydicom, numpy,
as the tests make them), then ``--per-reader`` mutated copies (truncations, flipped or overwritten bytes, header
fields out of range or of the wrong type, wrong dtypes and shapes, missing keys and files) are read through the
entry points users reach (:func:`diffrecon.io.cases.load_pet_case`, :func:`~diffrecon.io.cases.load_mri_case`,
:func:`~diffrecon.io.volumes.load_volume`, :func:`~diffrecon.io.dicom_read.load_dicom_series`, ...), each in a
worker process with a 10 s limit. Outcomes per reader: ok, input_error (an InputError naming the file),
unnamed_input_error (one that does not), unhandled (any other exception), timeout, crash (the worker died), and
wrote_files (anything created or changed beside the input or in the working folder). Case ``i`` of a reader is
drawn from ``--seed``, the reader's name and ``i`` alone, so one case can be replayed with ``--only``.

    python scripts/fuzz_readers.py --per-reader 1000 --seed 0 [--readers interfile dicom ...] --out report.json
"""
from __future__ import annotations

import argparse
import gzip
import json
import logging
import multiprocessing
import os
import re
import resource
import shutil
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TIMEOUT_S = 10.0
WEIRD_NUMBERS = ["0", "-1", "1", "2", "3.5", "-0", "1e9", "2147483648", "99999999999999999999", "nan", "inf", "-inf",
                 "1e308", "abc", "", "{1, 2}", "{", "}", "1,2", "0x10", "\x00", "é"]
WEIRD_JSON = [None, True, False, 0, -1, 1, 2, 3.5, 1e9, 2 ** 63, -2 ** 63, 1e308, "abc", "", "nan", [], [1, 2], {},
              {"a": 1}, float("nan"), float("inf")]
OUTCOMES = ("ok", "input_error", "unnamed_input_error", "unhandled", "timeout", "crash")


# ----------------------------------------------------------------------------------------------------------------
# generic byte mutations


def mutate_bytes(path: Path, rng: np.random.Generator) -> str:
    """Truncate, flip, overwrite, delete, insert or duplicate bytes of ``path``; returns what was done."""
    data = bytearray(path.read_bytes())
    n = len(data)
    kind = rng.choice(["truncate", "flip", "overwrite", "delete", "insert", "duplicate", "empty"],
                      p=[0.25, 0.25, 0.2, 0.1, 0.08, 0.07, 0.05])
    at = int(rng.integers(0, max(n, 1)))
    if kind == "truncate":
        data = data[:at]
        what = f"truncate to {at} of {n} bytes"
    elif kind == "flip":
        k = int(rng.integers(1, 9))
        spots = rng.integers(0, max(n, 1), k) if rng.random() < 0.5 else rng.integers(0, min(n, 512) or 1, k)
        for spot in spots:
            if n:
                data[spot] ^= 1 << int(rng.integers(0, 8))
        what = f"flip {k} bits at {sorted(int(s) for s in spots)}"
    elif kind == "overwrite":
        length = int(rng.integers(1, 64))
        fill = rng.choice(["random", "zeros", "ff", "7f"])
        chunk = {"random": rng.integers(0, 256, length, dtype=np.uint8).tobytes(), "zeros": bytes(length),
                 "ff": b"\xff" * length, "7f": b"\x7f" * length}[fill]
        data[at:at + length] = chunk
        what = f"overwrite {length} bytes at {at} with {fill}"
    elif kind == "delete":
        length = int(rng.integers(1, 256))
        del data[at:at + length]
        what = f"delete {length} bytes at {at}"
    elif kind == "insert":
        length = int(rng.integers(1, 64))
        data[at:at] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        what = f"insert {length} random bytes at {at}"
    elif kind == "duplicate":
        length = int(rng.integers(1, 512))
        data[at:at] = data[at:at + length]
        what = f"duplicate {length} bytes at {at}"
    else:
        data = bytearray()
        what = "empty file"
    path.write_bytes(bytes(data))
    return f"{path.name}: {what}"


def pick(rng: np.random.Generator, items: list):
    """One item of ``items`` (any type) drawn by ``rng``."""
    return items[int(rng.integers(0, len(items)))]


# ----------------------------------------------------------------------------------------------------------------
# JSON mutations (sinogram geometry, simulation.json)


def mutate_json_value(value, rng: np.random.Generator, depth: int = 0):
    """``value`` with one field replaced by a weird value, deleted, or the whole replaced."""
    if isinstance(value, dict) and value and rng.random() < 0.85:
        key = pick(rng, sorted(value))
        value = dict(value)
        choice = rng.random()
        if choice < 0.15:
            del value[key]
        elif choice < 0.2:
            value[key + "_x"] = pick(rng, WEIRD_JSON)
        elif choice < 0.45 and isinstance(value[key], (dict, list)):
            value[key] = mutate_json_value(value[key], rng, depth + 1)
        elif choice < 0.6 and isinstance(value[key], (int, float)) and not isinstance(value[key], bool):
            value[key] = value[key] * pick(rng, [-1, 0, 2, 1000, 1e6, 0.5, 1e-9]) + pick(rng, [0, 1, -1])
        else:
            value[key] = pick(rng, WEIRD_JSON)
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        value = list(value)
        value[int(rng.integers(0, len(value)))] = pick(rng, WEIRD_JSON)
        return value
    return pick(rng, WEIRD_JSON)


def mutate_json_file(path: Path, rng: np.random.Generator) -> str:
    """A field of the JSON file replaced by a weird value, or the text broken."""
    text = path.read_text()
    if rng.random() < 0.2:
        return mutate_bytes(path, rng)
    if rng.random() < 0.1:
        path.write_bytes(pick(rng, [b"", b"{", b"[1, 2]", b"null", b"\xff\xfe\x00", b'"text"', b"{\"a\": NaN}"]))
        return f"{path.name}: replaced by junk"
    value = mutate_json_value(json.loads(text), rng)
    path.write_text(json.dumps(value))
    return f"{path.name}: {json.dumps(value)[:160]}"


# ----------------------------------------------------------------------------------------------------------------
# NIfTI mutations: header fields by offset (NIfTI-1), data bytes, gzip stream

NIFTI_FIELDS = {  # name: (offset, struct format, count)
    "sizeof_hdr": (0, "i", 1), "dim": (40, "h", 8), "intent_code": (68, "h", 1), "datatype": (70, "h", 1),
    "bitpix": (72, "h", 1), "pixdim": (76, "f", 8), "vox_offset": (108, "f", 1), "scl_slope": (112, "f", 1),
    "scl_inter": (116, "f", 1), "xyzt_units": (123, "B", 1), "qform_code": (252, "h", 1), "sform_code": (254, "h", 1),
    "quatern": (256, "f", 6), "srow": (280, "f", 12), "magic": (344, "4s", 1),
}
INT16_VALUES = [0, -1, 1, 2, 3, 4, 7, 8, 9, 100, 1000, 32767, -32768]
DATATYPES = [0, 1, 2, 4, 8, 16, 32, 64, 128, 255, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 9999]
FLOAT_VALUES = [0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e30, 1e-30, 3.4e38, -5.5, 352.0, 1e9]


def mutate_nifti(path: Path, rng: np.random.Generator) -> str:
    """A header field of a NIfTI-1 file set out of range (through the gzip stream for .nii.gz), or its bytes."""
    gz = path.name.endswith(".gz")
    if rng.random() < 0.25:
        if gz and rng.random() < 0.5:  # corrupt the uncompressed stream, keep valid gzip
            raw = path.with_name("raw.bin")
            raw.write_bytes(gzip.decompress(path.read_bytes()))
            what = mutate_bytes(raw, rng)
            path.write_bytes(gzip.compress(raw.read_bytes()))
            raw.unlink()
            return f"{path.name} (inside gzip) {what}"
        return mutate_bytes(path, rng)
    data = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    name = pick(rng, sorted(NIFTI_FIELDS))
    offset, fmt, count = NIFTI_FIELDS[name]
    index = int(rng.integers(0, count))
    size = struct.calcsize("<" + fmt)
    if name == "magic":
        value = pick(rng, [b"n+2\x00", b"ni1\x00", b"\x00\x00\x00\x00", b"abcd"])
    elif name == "datatype":
        value = pick(rng, DATATYPES)
    elif fmt == "f":
        value = pick(rng, FLOAT_VALUES)
    elif fmt == "B":
        value = int(rng.integers(0, 256))
    elif name == "sizeof_hdr":
        value = pick(rng, [0, -1, 540, 347, 1 << 30])
    else:
        value = pick(rng, INT16_VALUES)
    struct.pack_into("<" + fmt, data, offset + index * size, value)
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    return f"{path.name}: {name}[{index}] = {value!r}"


# ----------------------------------------------------------------------------------------------------------------
# NumPy mutations (.npy header, arrays of the wrong dtype or shape, missing keys)


def weird_array(array: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """``array`` with the wrong dtype, the wrong shape or bad values."""
    kind = pick(rng, ["dtype", "shape", "values", "empty", "scalar", "object", "strings"])
    if kind == "dtype":
        dtype = pick(rng, [np.int16, np.uint8, np.float16, np.float64, np.complex64, np.complex128, np.bool_,
                           np.int64, np.float32])
        return array.astype(dtype) if not np.iscomplexobj(array) or np.issubdtype(dtype, np.complexfloating) \
            else array.real.astype(dtype), f"dtype {np.dtype(dtype)}"
    if kind == "shape":
        choice = pick(rng, ["transpose", "add axis", "drop axis", "flatten", "crop", "double"])
        if choice == "transpose":
            out = array.T
        elif choice == "add axis":
            out = array[None, ..., None] if rng.random() < 0.5 else array[None]
        elif choice == "drop axis":
            out = array.reshape(-1, *array.shape[2:]) if array.ndim > 2 else array.ravel()
        elif choice == "flatten":
            out = array.ravel()
        elif choice == "crop":
            axis = int(rng.integers(0, array.ndim))
            out = np.take(array, range(max(array.shape[axis] - 1, 0)), axis=axis)
        else:
            out = np.concatenate([array, array], axis=int(rng.integers(0, array.ndim)))
        return np.ascontiguousarray(out), f"shape {choice} -> {out.shape}"
    if kind == "values":
        out = array.copy()
        flat = out.reshape(-1)
        value = pick(rng, [np.nan, np.inf, -np.inf, -1.0, 1e38, -1e38])
        flat[rng.integers(0, flat.size, int(rng.integers(1, 5)))] = value
        return out, f"values {value}"
    if kind == "empty":
        shape = list(array.shape)
        shape[int(rng.integers(0, len(shape)))] = 0
        return np.zeros(shape, array.dtype), f"empty shape {tuple(shape)}"
    if kind == "scalar":
        return np.asarray(array.reshape(-1)[0]), "scalar"
    if kind == "object":
        return np.array([array, 1], dtype=object), "object array"
    return np.array(["a", "bc"]), "strings"


def save_npy(path: Path, array: np.ndarray) -> None:
    """Save allowing pickles (so object arrays reach the reader as users' files can)."""
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=True)


def mutate_npy(path: Path, rng: np.random.Generator) -> str:
    """A .npy file: its header text edited, its array replaced by one of the wrong kind, or its bytes."""
    choice = rng.random()
    if choice < 0.3:
        return mutate_bytes(path, rng)
    if choice < 0.6:
        data = path.read_bytes()
        end = data.index(b"\n") + 1
        header = data[10:end].decode("latin-1")
        field = pick(rng, ["descr", "fortran_order", "shape"])
        values = {"descr": ["'<f4'", "'<c8'", "'>c8'", "'|O'", "'<U4'", "'<i2'", "'|b1'", "'<c32'", "'xx'", "3"],
                  "fortran_order": ["True", "1", "'x'"],
                  "shape": ["()", "(0,)", "(2,)", "(2, 16)", "(2, 16, 33)", "(1000000000, 16, 16)", "(-1, 16, 16)",
                            "'x'", "(2, 16, 16, 1)", "(2, 2, 16, 16)"]}[field]
        value = pick(rng, values)
        header = re.sub(rf"'{field}': ([^,]+|\([^)]*\))(,|\}})", lambda m: f"'{field}': {value}{m.group(2)}", header,
                        count=1)
        body = header.rstrip("\n").rstrip()
        pad = (64 - (10 + len(body) + 1) % 64) % 64
        header = body + " " * pad + "\n"
        path.write_bytes(data[:8] + struct.pack("<H", len(header)) + header.encode("latin-1") + data[end:])
        return f"{path.name}: header {field} = {value}"
    array, what = weird_array(np.load(path), rng)
    save_npy(path, array)
    return f"{path.name}: {what}"


def mutate_npz(path: Path, rng: np.random.Generator, json_keys: tuple[str, ...] = ()) -> str:
    """An .npz archive: an array replaced, renamed or dropped, a JSON string array edited, or its bytes."""
    if rng.random() < 0.25:
        return mutate_bytes(path, rng)
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    key = pick(rng, sorted(arrays))
    choice = rng.random()
    if choice < 0.12:
        del arrays[key]
        what = f"drop {key!r}"
    elif choice < 0.2:
        arrays[key + "_"] = arrays.pop(key)
        what = f"rename {key!r}"
    elif key in json_keys and choice < 0.75:
        if rng.random() < 0.8:
            value = mutate_json_value(json.loads(str(arrays[key])), rng)
            arrays[key] = np.array(json.dumps(value))
            what = f"{key} = {json.dumps(value)[:160]}"
        else:
            arrays[key], what = pick(rng, [(np.array(3.0), "number"), (np.array(["{}", "{}"]), "two strings"),
                                           (np.array("not json"), "not json"), (np.array(b"\xff\xfe"), "bytes")])
            what = f"{key} = {what}"
    else:
        arrays[key], what = weird_array(arrays[key], rng)
        what = f"{key}: {what}"
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return f"{path.name}: {what}"


# ----------------------------------------------------------------------------------------------------------------
# Interfile


def mutate_interfile_header(path: Path, rng: np.random.Generator) -> str:
    """One line of an Interfile header: value weird or perturbed, line deleted, duplicated or its key mangled."""
    lines = path.read_text(encoding="latin-1").splitlines()
    keyed = [i for i, line in enumerate(lines) if ":=" in line]
    i = pick(rng, keyed)
    key, value = lines[i].split(":=", 1)
    choice = rng.random()
    if choice < 0.15:
        del lines[i]
        what = f"delete {key.strip()!r}"
    elif choice < 0.25:
        new = list(key)
        new[int(rng.integers(0, len(new)))] = chr(int(rng.integers(33, 126)))
        lines[i] = "".join(new) + ":=" + value
        what = f"key {key.strip()!r} -> {''.join(new).strip()!r}"
    elif choice < 0.5 and any(c.isdigit() for c in value):
        factor = pick(rng, [-1, 0, 2, 10, 1000, 10 ** 6, 10 ** 9])
        new_value = re.sub(r"-?\d+(\.\d+)?", lambda m: str(float(m.group()) * factor if m.group(1) else
                                                            int(m.group()) * factor), value,
                           count=1 if rng.random() < 0.7 else 0)
        lines[i] = key + ":= " + new_value.strip()
        what = f"{key.strip()!r} = {new_value.strip()!r}"
    else:
        if "name of data file" in key.lower() and rng.random() < 0.5:
            new_value = pick(rng, ["", ".", "..", "/", "missing.s", "../../../../etc/hostname", "/dev/zero",
                                   "s" * 300])
        elif "number format" in key.lower() and rng.random() < 0.5:
            new_value = pick(rng, ["signed integer", "unsigned integer", "ASCII", "bit", "long float", "short float"])
        elif "byte order" in key.lower():
            new_value = pick(rng, ["BIGENDIAN", "littleendian", "MIDDLE", ""])
        else:
            new_value = pick(rng, WEIRD_NUMBERS)
        if rng.random() < 0.2:
            lines.insert(i + 1, key + ":= " + new_value)
            what = f"duplicate {key.strip()!r} = {new_value!r}"
        else:
            lines[i] = key + ":= " + new_value
            what = f"{key.strip()!r} = {new_value!r}"
    path.write_bytes("\n".join(lines).encode("latin-1", "replace") + b"\n")
    return f"{path.name}: {what}"


# ----------------------------------------------------------------------------------------------------------------
# DICOM


DICOM_TAGS = {  # keyword: (VR, weird values of that VR)
    "Rows": ("US", [0, 1, 7, 9, 4096, 65535]), "Columns": ("US", [0, 1, 7, 9, 4096, 65535]),
    "BitsAllocated": ("US", [0, 1, 7, 8, 12, 32, 64]), "BitsStored": ("US", [0, 1, 7, 12, 17, 64]),
    "HighBit": ("US", [0, 7, 15, 40]), "PixelRepresentation": ("US", [0, 1, 2]),
    "SamplesPerPixel": ("US", [0, 3, 4]),
    "PhotometricInterpretation": ("CS", ["RGB", "PALETTE COLOR", "YBR_FULL", "", "MONOCHROME1"]),
    "PixelSpacing": ("DS", [["0", "0"], ["1"], ["1", "2", "3"], ["nan", "1"], ["inf", "inf"], ["-2", "2"],
                            ["1e308", "1e308"]]),
    "ImageOrientationPatient": ("DS", [["0"] * 6, ["1", "0", "0", "0", "1"], ["nan"] * 6,
                                       ["1", "0", "0", "1", "0", "0"], ["1e308", "0", "0", "0", "1", "0"]]),
    "ImagePositionPatient": ("DS", [["0", "0"], ["nan", "0", "0"], ["inf", "0", "0"], ["0", "0", "1e308"],
                                    ["0", "0", "0"]]),
    "RescaleSlope": ("DS", ["0", "-1", "nan", "inf", "1e308", ""]),
    "RescaleIntercept": ("DS", ["nan", "inf", "-1e308", ""]),
    "SliceThickness": ("DS", ["0", "-3", "nan", "inf", ""]), "SpacingBetweenSlices": ("DS", ["0", "-3", "nan"]),
    "NumberOfFrames": ("IS", ["0", "2", "-1", "", "99999"]),
    "Units": ("CS", ["", "CNTS", "BQML ", "bqml"]), "DecayCorrection": ("CS", ["", "NONE", "ADMIN", "start"]),
    "PatientWeight": ("DS", ["0", "-70", "nan", "inf", "1e308", ""]),
    "SeriesDate": ("DA", ["", "2026", "99999999", "20261340"]),
    "SeriesTime": ("TM", ["", "99", "256199", "12:00", "1"]),
    "Modality": ("CS", ["MR", "CT", "", "PT"]), "SeriesInstanceUID": ("UI", ["1.2.3", ""]),
    "SOPInstanceUID": ("UI", ["1.2.3", ""]),
}
SEQUENCE_FIELDS = {"RadionuclideTotalDose": ("DS", ["0", "-1", "nan", "inf", "1e308", ""]),
                   "RadionuclideHalfLife": ("DS", ["0", "-1", "nan", "inf", "1e-308", ""]),
                   "RadiopharmaceuticalStartDateTime": ("DT", ["", "2026", "garbage", "99999999999999",
                                                               "20261207999999"]),
                   "RadiopharmaceuticalStartTime": ("TM", ["", "99", "garbage"])}
WRONG_TYPES = ["abc", "1\\2\\3", "", "\x00\x01", "1e999"]


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.dcm"))


def mutate_dicom(folder: Path, rng: np.random.Generator) -> str:
    """One DICOM tag (or a tag of the radiopharmaceutical sequence) of one or all files set out of range, of the
    wrong type or deleted; a file's bytes; a file deleted, duplicated or junk added."""
    import pydicom
    from pydicom import config

    config.settings.writing_validation_mode = config.IGNORE
    files = _dicom_files(folder)
    choice = rng.random()
    if choice < 0.25:
        return mutate_bytes(pick(rng, files), rng)
    if choice < 0.3:
        victim = pick(rng, files)
        action = pick(rng, ["delete", "duplicate", "junk", "directory"])
        if action == "delete":
            victim.unlink()
        elif action == "duplicate":
            shutil.copy(victim, victim.with_name("copy.dcm"))
        elif action == "junk":
            (folder / "junk.dcm").write_bytes(b"DICM" * 40)
        else:
            (folder / "sub.dcm").mkdir()
        return f"{victim.name}: {action}"
    targets = files if rng.random() < 0.4 else [pick(rng, files)]
    in_sequence = rng.random() < 0.2
    keyword = pick(rng, sorted(SEQUENCE_FIELDS if in_sequence else DICOM_TAGS))
    vr, values = (SEQUENCE_FIELDS if in_sequence else DICOM_TAGS)[keyword]
    action = rng.random()
    value = pick(rng, values)
    for path in targets:
        ds = pydicom.dcmread(path)
        where = ds
        if in_sequence:
            if "RadiopharmaceuticalInformationSequence" not in ds or not len(ds.RadiopharmaceuticalInformationSequence):
                continue
            where = ds.RadiopharmaceuticalInformationSequence[0]
        if action < 0.2:
            if keyword in where:
                delattr(where, keyword)
        elif action < 0.4:
            from pydicom.datadict import tag_for_keyword
            where.add_new(tag_for_keyword(keyword), "LO", value := pick(rng, WRONG_TYPES))
        else:
            from pydicom.datadict import tag_for_keyword
            where.add_new(tag_for_keyword(keyword), vr, value)
        ds.save_as(path, enforce_file_format=False)
    how = "delete" if action < 0.2 else ("wrong type" if action < 0.4 else "set")
    return f"{len(targets)} file(s): {how} {keyword}{'' if action < 0.2 else f' = {value!r}'}"


def mutate_dicom_pixels(folder: Path, rng: np.random.Generator) -> str:
    """Pixel data of one file truncated or extended, or its transfer syntax claimed compressed."""
    import pydicom

    path = pick(rng, _dicom_files(folder))
    ds = pydicom.dcmread(path)
    action = pick(rng, ["truncate", "extend", "syntax", "odd"])
    if action == "truncate":
        ds.PixelData = ds.PixelData[:int(rng.integers(0, len(ds.PixelData)))]
    elif action == "extend":
        ds.PixelData = ds.PixelData + bytes(int(rng.integers(1, 4)) * 64)
    elif action == "syntax":
        ds.file_meta.TransferSyntaxUID = pick(rng, ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5", "1.2.3.4",
                                                    "1.2.840.10008.1.2.2"])
    else:
        ds.PixelData = ds.PixelData[:-1]
    ds.save_as(path, enforce_file_format=False)
    return f"{path.name}: pixels {action}"


# ----------------------------------------------------------------------------------------------------------------
# HDF5: fastMRI and ISMRMRD

FASTMRI_HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><experimentalConditions><H1resonanceFrequency_Hz>63500000
</H1resonanceFrequency_Hz></experimentalConditions><encoding><encodedSpace><matrixSize><x>32</x><y>16</y><z>1</z>
</matrixSize><fieldOfView_mm><x>320</x><y>160</y><z>4</z></fieldOfView_mm></encodedSpace><reconSpace><matrixSize>
<x>16</x><y>16</y><z>1</z></matrixSize><fieldOfView_mm><x>160</x><y>160</y><z>4</z></fieldOfView_mm></reconSpace>
<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>15</maximum><center>8</center>
</kspace_encoding_step_1></encodingLimits><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"""


def mutate_xml(xml: str, rng: np.random.Generator) -> tuple[str, str]:
    """An ISMRMRD XML header with one element's text weird, one element deleted, or the text broken."""
    elements = list(re.finditer(r"<(\w+)>([^<]*)</\1>", xml))
    choice = rng.random()
    if choice < 0.1:
        cut = int(rng.integers(0, len(xml)))
        return xml[:cut], f"xml truncated at {cut}"
    match = pick(rng, elements)
    if choice < 0.25:
        return xml[:match.start()] + xml[match.end():], f"xml: delete <{match.group(1)}>"
    if match.group(1) == "trajectory":
        value = pick(rng, ["radial", "spiral", "", "other"])
    else:
        value = pick(rng, ["0", "-1", "1", "3", "7", "33", "65536", "1000000000", "abc", "", "nan", "inf", "1e308",
                           "2.5"])
    return xml[:match.start(2)] + value + xml[match.end(2):], f"xml: <{match.group(1)}> = {value!r}"


def _complex(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def write_fastmri(path: Path, items: dict, attrs: dict) -> None:
    """A fastMRI-like HDF5 file from datasets (a dict value makes a group) and attributes."""
    import h5py

    with h5py.File(path, "w") as handle:
        for key, value in items.items():
            if isinstance(value, dict):
                handle.create_group(key)
            elif isinstance(value, tuple):  # (shape, dtype): declared, never written (read gives the fill value)
                handle.create_dataset(key, shape=value[0], dtype=value[1], chunks=True)
            else:
                handle[key] = value
        for key, value in attrs.items():
            handle.attrs[key] = value


def mutate_fastmri(path: Path, rng: np.random.Generator) -> str:
    """A fastMRI file: k-space of the wrong dtype/shape/values, the header XML edited, datasets dropped or of the
    wrong kind, a huge declared dataset, or its bytes."""
    import h5py

    if rng.random() < 0.25:
        return mutate_bytes(path, rng)
    with h5py.File(path, "r") as handle:
        items = {key: handle[key][()] for key in handle}
        attrs = dict(handle.attrs)
    key = pick(rng, ["kspace", "kspace", "kspace", "ismrmrd_header", "ismrmrd_header", "reconstruction_rss", "attr"])
    choice = rng.random()
    if key == "attr":
        attrs["acquisition"] = pick(rng, [np.arange(3), 5, b"\xff"])
        what = f"attr acquisition = {attrs['acquisition']!r}"
    elif choice < 0.12:
        items.pop(key)
        what = f"drop {key}"
    elif choice < 0.2:
        items[key] = pick(rng, [{}, np.arange(4.0), np.array(b"x")])
        what = f"{key} -> {type(items[key]).__name__}"
    elif key == "kspace" and choice < 0.28:
        items[key] = pick(rng, [((100000, 64, 1024, 1024), np.complex64), ((2, 2, 32, 10 ** 9), np.complex64)])
        what = f"kspace declared {items[key][0]}"
    elif key == "ismrmrd_header":
        xml, what = mutate_xml(items[key].decode() if isinstance(items[key], bytes) else str(items[key]), rng)
        items[key] = xml
    else:
        items[key], what = weird_array(items[key], rng)
        what = f"{key}: {what}"
    write_fastmri(path, items, attrs)
    return f"{path.name}: {what}"


ISMRMRD_HEADER = FASTMRI_HEADER.replace(
    '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">',
    '<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><acquisitionSystemInformation>'
    "<receiverChannels>2</receiverChannels></acquisitionSystemInformation>")


def write_ismrmrd(path: Path, xml: str, lines: list[dict]) -> None:
    """An ISMRMRD file: the XML header and one acquisition per entry of ``lines`` (data + header fields)."""
    import ismrmrd

    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header(xml)
    for line in lines:
        acq = ismrmrd.Acquisition.from_array(line["data"])
        acq.center_sample = line["center_sample"]
        acq.scan_counter = line["scan_counter"]
        for flag in line.get("flags", ()):
            acq.set_flag(getattr(ismrmrd, flag))
        for field, value in line["idx"].items():
            setattr(acq.idx, field, value)
        dataset.append_acquisition(acq)
    dataset.close()


def ismrmrd_lines(rng: np.random.Generator) -> list[dict]:
    """A fully sampled 2-coil 32 x 16 scan with one noise line first."""
    lines = [{"data": _complex(rng, 2, 32) * 0.01, "center_sample": 16, "scan_counter": 0, "idx": {},
              "flags": ["ACQ_IS_NOISE_MEASUREMENT"]}]
    for y in range(16):
        lines.append({"data": _complex(rng, 2, 32), "center_sample": 16, "scan_counter": y + 1,
                      "idx": {"kspace_encode_step_1": y}})
    return lines


def mutate_ismrmrd(path: Path, rng: np.random.Generator) -> str:
    """An ISMRMRD file: the XML edited, an acquisition's header fields or data out of range, acquisitions dropped,
    the datasets removed, or its bytes."""
    import h5py

    if rng.random() < 0.25:
        return mutate_bytes(path, rng)
    choice = rng.random()
    lines = ismrmrd_lines(np.random.default_rng(1))
    xml = ISMRMRD_HEADER
    if choice < 0.35:
        xml, what = mutate_xml(xml, rng)
    elif choice < 0.8:
        line = pick(rng, lines)
        field = pick(rng, ["center_sample", "kspace_encode_step_1", "kspace_encode_step_2", "slice", "data", "coils",
                           "flags", "samples"])
        if field == "center_sample":
            line["center_sample"] = value = int(pick(rng, [0, 1, 31, 32, 100, 65535]))
        elif field in ("kspace_encode_step_1", "kspace_encode_step_2", "slice"):
            line["idx"][field] = value = int(pick(rng, [1, 15, 16, 17, 100, 1000, 65535]))
        elif field == "data":
            line["data"] = line["data"].copy()
            line["data"][0, int(rng.integers(0, 32))] = value = pick(rng, [np.nan, np.inf, 1e38])
        elif field == "coils":
            line["data"] = _complex(rng, value := int(pick(rng, [1, 3])), 32)
        elif field == "samples":
            line["data"] = _complex(rng, 2, value := int(pick(rng, [0, 1, 31, 33, 64, 1000])))
        else:
            line["flags"] = [value := pick(rng, ["ACQ_IS_NOISE_MEASUREMENT", "ACQ_IS_NAVIGATION_DATA",
                                                  "ACQ_IS_DUMMYSCAN_DATA"])]
        what = f"acquisition {line['scan_counter']}: {field} = {value!r}"
    elif choice < 0.9:
        keep = pick(rng, [0, 1, 2])
        lines = lines[:keep]
        what = f"keep {keep} acquisitions"
    else:
        write_ismrmrd(path, xml, lines)
        with h5py.File(path, "a") as handle:
            name = pick(rng, ["dataset/data", "dataset/xml"])
            del handle[name]
            if rng.random() < 0.5:
                handle[name] = np.arange(3.0)
        return f"{path.name}: {name} removed or replaced"
    path.unlink()
    write_ismrmrd(path, xml, lines)
    return f"{path.name}: {what}"


# ----------------------------------------------------------------------------------------------------------------
# readers: how each writes its valid files, mutates a case, and reads it


@dataclass
class Reader:
    """A reader under test: ``seed(folder)`` writes valid files, ``mutate(folder, rng)`` breaks a copy of them
    (returns what it did), ``read(folder, variant)`` reads it as a user's call would; ``variants`` are the calls."""

    seed: Callable[[Path], None]
    mutate: Callable[[Path, np.random.Generator], str]
    read: Callable[[Path, int], object]
    variants: int = 1


def _scanner(name: str):
    from diffrecon.physics.geometry import ScannerGeometry, get_preset

    if name == "demo2d":
        return get_preset("demo2d").scanner
    return ScannerGeometry(ring_radius_mm=100.0, n_detectors_per_ring=12, n_rings=8, ring_spacing_mm=4.0, n_views=6,
                           n_bins=5, bin_size_mm=4.0, max_ring_difference=5, span=3, name="small")


def _counts(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).poisson(3.0, shape).astype(np.float32)


def seed_interfile(folder: Path) -> None:
    from diffrecon.io.sinogram import save_sinogram

    for name, order in (("demo2d", "by_sinogram"), ("small", "by_view")):
        scanner = _scanner(name)
        save_sinogram(folder / f"{name}.hs", _counts(scanner.data_shape), scanner, storage_order=order)


def mutate_interfile(folder: Path, rng: np.random.Generator) -> str:
    name = pick(rng, ["demo2d", "small"])
    other = "small" if name == "demo2d" else "demo2d"
    for suffix in (".hs", ".s"):
        (folder / f"{other}{suffix}").unlink()
    choice = rng.random()
    if choice < 0.6:
        return mutate_interfile_header(folder / f"{name}.hs", rng)
    if choice < 0.8:
        return mutate_bytes(folder / f"{name}.s", rng)
    if choice < 0.9:
        return mutate_bytes(folder / f"{name}.hs", rng)
    data = folder / f"{name}.s"
    action = pick(rng, ["delete data", "data is a folder", "nan data", "extra data"])
    if action == "delete data":
        data.unlink()
    elif action == "data is a folder":
        data.unlink()
        data.mkdir()
    elif action == "nan data":
        raw = np.fromfile(data, "<f4")
        raw[rng.integers(0, raw.size, 3)] = pick(rng, [np.nan, np.inf, -5.0])
        raw.tofile(data)
    else:
        data.write_bytes(data.read_bytes() + bytes(100))
    return f"{data.name}: {action}"


def read_interfile(folder: Path, variant: int):
    from diffrecon.io.cases import load_pet_case
    from diffrecon.io.sinogram import load_sinogram

    if (folder / "demo2d.hs").exists():
        return load_pet_case(folder / "demo2d.hs")
    return load_sinogram(folder / "small.hs")


def seed_pet_folder(folder: Path) -> None:
    from diffrecon.io.demo_cases import simulate_to_folder

    simulate_to_folder(folder, 20001, preset="demo2d", lesions=1)
    for path in folder.glob("*.nii.gz"):
        if path.name not in ("fdg.nii.gz", "t1.nii.gz"):
            path.unlink()
    record = json.loads((folder / "simulation.json").read_text())  # file names relative to the folder
    record["files"] = {key: Path(value).name for key, value in record["files"].items()}
    (folder / "simulation.json").write_text(json.dumps(record, indent=2))


def mutate_pet_folder(folder: Path, rng: np.random.Generator) -> str:
    target = pick(rng, ["sinogram.npz"] * 4 + ["multiplicative.npz", "additive.npz", "simulation.json", "fdg.nii.gz",
                                               "t1.nii.gz", "missing"])
    if target == "missing":
        victim = pick(rng, sorted(p.name for p in folder.iterdir()))
        (folder / victim).unlink()
        return f"{victim}: deleted"
    path = folder / target
    if target.endswith(".npz"):
        return mutate_npz(path, rng, json_keys=("geometry",))
    if target.endswith(".json"):
        return mutate_json_file(path, rng)
    return mutate_nifti(path, rng)


def read_pet_folder(folder: Path, variant: int):
    from diffrecon.io.cases import load_pet_case

    if variant == 0:
        return load_pet_case(folder)
    return load_pet_case(folder / "sinogram.npz", multiplicative=folder / "multiplicative.npz",
                         additive=folder / "additive.npz", mu_map=None,
                         images={"reference": folder / "fdg.nii.gz"})


def seed_nifti_sinogram(folder: Path) -> None:
    from diffrecon.io.sinogram import save_sinogram

    scanner = _scanner("demo2d")
    save_sinogram(folder / "sino.nii", _counts(scanner.data_shape), scanner)
    save_sinogram(folder / "sinz.nii.gz", _counts(scanner.data_shape), scanner)


def mutate_nifti_sinogram(folder: Path, rng: np.random.Generator) -> str:
    stem = pick(rng, ["sino", "sinz"])
    image = folder / ("sino.nii" if stem == "sino" else "sinz.nii.gz")
    sidecar = folder / f"{stem}.json"
    choice = rng.random()
    if choice < 0.55:
        return mutate_nifti(image, rng)
    if choice < 0.9:
        return mutate_json_file(sidecar, rng)
    action = pick(rng, ["delete sidecar", "sidecar is a folder", "sidecar not UTF-8"])
    sidecar.unlink()
    if action == "sidecar is a folder":
        sidecar.mkdir()
    elif action == "sidecar not UTF-8":
        sidecar.write_bytes(b"\xff\xfe{\x00")
    return f"{sidecar.name}: {action}"


def read_nifti_sinogram(folder: Path, variant: int):
    from diffrecon.io.cases import load_pet_case

    return load_pet_case(folder / ("sino.nii" if variant == 0 else "sinz.nii.gz"))


def seed_nifti_image(folder: Path) -> None:
    from diffrecon.io.nifti import save_nifti
    from diffrecon.physics.geometry import get_preset

    grid = get_preset("demo2d").grid
    rng = np.random.default_rng(0)
    save_nifti(folder / "image.nii", rng.random(grid.shape).astype(np.float32), grid.affine)
    save_nifti(folder / "imagez.nii.gz", rng.random((16, 16, 1)).astype(np.float32), np.diag([1.5, 1.5, 1.5, 1.0]))


def mutate_nifti_image(folder: Path, rng: np.random.Generator) -> str:
    return mutate_nifti(pick(rng, [folder / "image.nii", folder / "imagez.nii.gz"]), rng)


def read_nifti_image(folder: Path, variant: int):
    from diffrecon.io.cases import load_mri_case, resolve_grid
    from diffrecon.io.volumes import load_on_grid, load_volume
    from diffrecon.physics.geometry import get_preset

    preset = get_preset("demo2d")
    if variant == 0:
        load_volume(folder / "imagez.nii.gz", "image")
        return load_volume(folder / "image.nii", "image")
    if variant == 1:
        return load_on_grid(folder / "image.nii", "mu_map", preset.grid.affine, preset.grid.shape)
    if variant == 2:
        return resolve_grid(folder / "image.nii", preset.scanner)
    return load_mri_case(image=folder / "imagez.nii.gz", acceleration=2.0, coils=2, center_fraction=0.3)


def seed_dicom(folder: Path) -> None:
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from diffrecon.io.dicom_write import write_dicom_series

    volume = np.random.default_rng(0).random((8, 8, 3)).astype(np.float32) * 1000
    write_dicom_series(volume, np.diag([2.0, 2.0, 3.0, 1.0]), folder / "series", modality="PT",
                       method_description="fuzz seed", units="BQML")
    for path in _dicom_files(folder):
        ds = pydicom.dcmread(path)
        info = Dataset()
        info.RadionuclideTotalDose = "370000000"
        info.RadionuclideHalfLife = "6586.2"
        info.RadiopharmaceuticalStartDateTime = f"{ds.SeriesDate}120000"
        ds.RadiopharmaceuticalInformationSequence = Sequence([info])
        ds.PatientWeight = "70"
        ds.DecayCorrection = "START"
        ds.save_as(path)


def mutate_dicom_case(folder: Path, rng: np.random.Generator) -> str:
    if rng.random() < 0.2:
        return mutate_dicom_pixels(folder, rng)
    return mutate_dicom(folder, rng)


def read_dicom(folder: Path, variant: int):
    from diffrecon.io.dicom_read import load_dicom_series
    from diffrecon.io.volumes import load_volume

    if variant == 0:
        return load_dicom_series(folder / "series", suv=True, name="image")
    return load_volume(folder / "series", "image")


def seed_fastmri(folder: Path) -> None:
    rng = np.random.default_rng(0)
    write_fastmri(folder / "fastmri.h5", {"kspace": _complex(rng, 2, 2, 32, 16),
                                          "reconstruction_rss": np.ones((2, 16, 16), np.float32),
                                          "ismrmrd_header": FASTMRI_HEADER}, {"acquisition": "CORPD_FBK"})


def read_mri_file(name: str) -> Callable[[Path, int], object]:
    """load_mri_case on ``folder/name`` as measured (variant 0) or a chosen slice (variant 1)."""
    def read(folder: Path, variant: int):
        from diffrecon.io.cases import load_mri_case

        return load_mri_case(folder / name, slice_index=None if variant == 0 else 1)
    return read


def seed_ismrmrd(folder: Path) -> None:
    write_ismrmrd(folder / "ismrmrd.h5", ISMRMRD_HEADER, ismrmrd_lines(np.random.default_rng(1)))


def seed_twix(folder: Path) -> None:
    """The real Siemens raw-data file of the shared data (1.6 MB; no writer of twix files exists)."""
    from diffrecon.benchmarks.real_data import DATA

    shutil.copyfile(DATA / "twix_gre_siemens" / "gre.dat", folder / "meas.dat")


def mutate_twix(folder: Path, rng: np.random.Generator) -> str:
    """Bytes anywhere (the protocol text is the first half of the file), or one protocol value (``name = value``
    of the ASCCONV text: matrix, partitions, field of view, oversampling, ...) replaced by a weird number."""
    path = folder / "meas.dat"
    if rng.random() < 0.5:
        return mutate_bytes(path, rng)
    data = path.read_bytes()
    fields = list(re.finditer(rb"\n(\w+(?:\[\d+\])?(?:\.\w+(?:\[\d+\])?)*)\s*=\s*(-?[0-9][0-9.]*)", data))
    field = pick(rng, fields)
    value = pick(rng, WEIRD_NUMBERS).encode("utf-8")
    path.write_bytes(data[:field.start(2)] + value + data[field.end(2):])
    return f"meas.dat: {field.group(1).decode()} = {value!r}"


def read_twix(folder: Path, variant: int):
    from diffrecon.io.cases import load_mri_case

    return load_mri_case(folder / "meas.dat", acceleration=None if variant == 0 else 4.0)


def seed_numpy_kspace(folder: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(folder / "k.npy", _complex(rng, 2, 16, 16))
    np.savez(folder / "k.npz", kspace=_complex(rng, 2, 16, 16))
    mask = np.zeros((16, 16), np.float32)
    mask[:, ::2] = 1
    mask[:, 6:10] = 1
    np.save(folder / "mask.npy", mask)


def mutate_numpy_kspace(folder: Path, rng: np.random.Generator) -> str:
    target = pick(rng, ["k.npy", "k.npy", "k.npz", "mask.npy"])
    if target == "k.npz":
        return mutate_npz(folder / target, rng)
    return mutate_npy(folder / target, rng)


def read_numpy_kspace(folder: Path, variant: int):
    from diffrecon.io.cases import load_mri_case

    if variant == 0:
        return load_mri_case(folder / "k.npy", mask=folder / "mask.npy")
    return load_mri_case(folder / "k.npz")


READERS = {
    "interfile": Reader(seed_interfile, mutate_interfile, read_interfile),
    "npz_sinogram": Reader(seed_pet_folder, mutate_pet_folder, read_pet_folder, 2),
    "nifti_sinogram": Reader(seed_nifti_sinogram, mutate_nifti_sinogram, read_nifti_sinogram, 2),
    "nifti_image": Reader(seed_nifti_image, mutate_nifti_image, read_nifti_image, 4),
    "dicom": Reader(seed_dicom, mutate_dicom_case, read_dicom, 2),
    "fastmri": Reader(seed_fastmri, lambda folder, rng: mutate_fastmri(folder / "fastmri.h5", rng),
                      read_mri_file("fastmri.h5"), 2),
    "ismrmrd": Reader(seed_ismrmrd, lambda folder, rng: mutate_ismrmrd(folder / "ismrmrd.h5", rng),
                      read_mri_file("ismrmrd.h5")),
    "twix": Reader(seed_twix, mutate_twix, read_twix, 2),
    "numpy_kspace": Reader(seed_numpy_kspace, mutate_numpy_kspace, read_numpy_kspace, 2),
}


# ----------------------------------------------------------------------------------------------------------------
# running: a worker process per reader call (killed after the time limit), outcomes counted


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in folder.rglob("*")}


def classify(error: BaseException, folder: Path) -> str:
    """The outcome of an exception raised by a reader on the case in ``folder``."""
    from diffrecon.checks import InputError

    if isinstance(error, InputError):
        return "input_error" if str(folder) in str(error) else "unnamed_input_error"
    return "unhandled"


def worker(conn, memory_limit: int) -> None:
    """Read cases sent over ``conn`` until None; answer (outcome, last line, files written)."""
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)  # nibabel logs what it repairs; the outcome is what counts here
    while True:
        task = conn.recv()
        if task is None:
            return
        name, folder, variant, cwd = task
        folder, cwd = Path(folder), Path(cwd)
        os.chdir(cwd)
        before = snapshot(folder)
        try:
            READERS[name].read(folder, variant)
            outcome, line = "ok", ""
        except BaseException as error:  # noqa: BLE001 - counting every kind is the point
            outcome = classify(error, folder)
            line = traceback.format_exception_only(type(error), error)[-1].strip()
            if outcome == "unhandled":
                frames = traceback.extract_tb(error.__traceback__)
                line += f"  [at {frames[-1].filename.split('site-packages/')[-1]}:{frames[-1].lineno}]" if frames \
                    else ""
        after = snapshot(folder)
        written = sorted(set(after) - set(before)) + sorted(k for k in before if k in after and after[k] != before[k]
                                                              and not k.endswith("/"))
        written += [f"cwd/{p}" for p in os.listdir(cwd)]
        conn.send((outcome, line[:500], written))


class Pool:
    """One worker process, replaced when it hangs or dies."""

    def __init__(self, memory_limit: int) -> None:
        self.context = multiprocessing.get_context("fork")
        self.memory_limit = memory_limit
        self.process = None
        self.start()

    def start(self) -> None:
        self.conn, child = self.context.Pipe()
        self.process = self.context.Process(target=worker, args=(child, self.memory_limit), daemon=True)
        self.process.start()

    def run(self, task: tuple, timeout: float) -> tuple[str, str, list[str]]:
        self.conn.send(task)
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                pass
            self.restart()
            return "crash", f"worker died (exit code {self.process.exitcode})", []
        self.restart()
        return "timeout", f"no answer within {timeout:g} s", []

    def restart(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.start()

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(5)


def case_rng(seed: int, reader: str, index: int) -> np.random.Generator:
    """The random stream of one case: the seed, the reader's name and the case index alone."""
    return np.random.default_rng([seed, zlib.crc32(reader.encode()), index])


def fuzz(readers: list[str], per_reader: int, seed: int, workdir: Path, keep: Path | None = None,
         only: int | None = None, timeout: float = TIMEOUT_S, memory_limit: int = 6 << 30,
         verbose: bool = True) -> dict:
    """Run ``per_reader`` mutated cases of each reader; returns the report (counts and every failure)."""
    seeds = {}
    for name in readers:
        seeds[name] = workdir / "seed" / name
        seeds[name].mkdir(parents=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            READERS[name].seed(seeds[name])
    cwd = workdir / "cwd"
    cwd.mkdir()
    pool = Pool(memory_limit)
    report: dict = {"seed": seed, "per_reader": per_reader, "timeout_s": timeout, "readers": {}, "failures": []}
    try:
        for name in readers:
            counts = Counter({key: 0 for key in OUTCOMES + ("wrote_files",)})
            started = time.time()
            indices = [only] if only is not None else range(per_reader)
            for index in indices:
                rng = case_rng(seed, name, index)
                folder = workdir / f"{name}-{index:05d}"
                shutil.copytree(seeds[name], folder)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        mutation = READERS[name].mutate(folder, rng)
                except Exception as error:  # the mutator's own failure: report it, do not count it as the reader's
                    mutation = f"mutator failed: {error!r}"
                variant = int(rng.integers(0, READERS[name].variants))
                outcome, line, written = pool.run((name, str(folder), variant, str(cwd)), timeout)
                counts[outcome] += 1
                counts["wrote_files"] += bool(written)
                for leftover in cwd.iterdir():
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
                if outcome not in ("ok", "input_error") or written:
                    failure = {"reader": name, "case": index, "variant": variant, "mutation": mutation,
                               "outcome": outcome, "message": line, "written": written}
                    report["failures"].append(failure)
                    if verbose:
                        print(f"[{name} #{index} v{variant}] {outcome}: {mutation}\n    {line}"
                              + (f"\n    wrote {written}" if written else ""), flush=True)
                    if keep is not None:
                        shutil.copytree(folder, keep / folder.name, dirs_exist_ok=True)
                shutil.rmtree(folder)
            report["readers"][name] = dict(counts, seconds=round(time.time() - started, 1))
            if verbose:
                print(f"{name}: {dict(counts)} in {time.time() - started:.0f} s", flush=True)
    finally:
        pool.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-reader", type=int, default=1000, help="mutated files per reader (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations (default 0)")
    parser.add_argument("--readers", nargs="+", choices=sorted(READERS), default=list(READERS),
                        help="readers to fuzz (default all)")
    parser.add_argument("--out", type=Path, help="JSON report (counts per reader and every failure)")
    parser.add_argument("--only", type=int, help="replay one case index (with --readers)")
    parser.add_argument("--keep", type=Path, help="copy the cases that fail into this folder")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per file (default 10)")
    parser.add_argument("--quiet", action="store_true", help="print only the counts")
    args = parser.parse_args(argv)
    if args.per_reader < 1:
        parser.error("--per-reader must be >= 1")
    import torch

    torch.set_num_threads(1)
    import diffrecon.io.cases  # noqa: F401 - imported once here, so each worker starts with it loaded
    import diffrecon.io.kspace  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="fuzz_readers_") as tmp:
        report = fuzz(args.readers, args.per_reader, args.seed, Path(tmp), args.keep, args.only, args.timeout,
                      verbose=not args.quiet)
    report["command"] = " ".join(["python", "scripts/fuzz_readers.py", *(argv if argv is not None else sys.argv[1:])])
    bad = sum(row[key] for row in report["readers"].values()
              for key in ("unnamed_input_error", "unhandled", "timeout", "crash", "wrote_files"))
    print(f"{'reader':16s} " + " ".join(f"{key:>19s}" for key in OUTCOMES + ("wrote_files",)))
    for name, row in report["readers"].items():
        print(f"{name:16s} " + " ".join(f"{row[key]:19d}" for key in OUTCOMES + ("wrote_files",)))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
