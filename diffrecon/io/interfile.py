"""STIR Interfile projection data (``.hs`` header + raw ``.s`` file) read and written as our sinograms.

STIR conventions used here (see docs/sinograms.md for the sources): the ring difference is
d = ring2 - ring1, as ours, so a STIR segment holding ring differences [a, b] is our segment (a, b) unchanged;
segments may be stored in any order (the header lists min/max ring difference per stored segment); inside a
segment, axial positions run by ring1 + ring2 ascending, as ours. A segment's block is stored as
(view, axial, tangential) "by view" (STIR's default, ``Segment_View_AxialPos_TangPos``) or as
(axial, view, tangential) "by sinogram" (``Segment_AxialPos_View_TangPos``).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from diffrecon.checks import InputError, check_choice, check_file, check_finite, check_shape
from diffrecon.physics.geometry import ScannerGeometry

STORAGE_ORDERS = ("by_view", "by_sinogram")
_AXIS_LABELS = {"by_view": ("tangential coordinate", "axial coordinate", "view", "segment"),
                "by_sinogram": ("tangential coordinate", "view", "axial coordinate", "segment")}
_FLOAT_FORMATS = ("float", "short float", "long float")
_INT_FORMATS = {"signed integer": "i", "unsigned integer": "u"}


def normalise_key(key: str) -> str:
    """Interfile key in canonical form: lower case, no ``!``, ``_`` as space, single spaces, ``size[1]``."""
    key = key.strip().lstrip("!").lower().replace("_", " ")
    key = re.sub(r"\s+", " ", key)
    return re.sub(r"\s*\[\s*(\d+)\s*\]", r"[\1]", key).strip()


def parse_interfile_header(path: str | Path) -> dict[str, str]:
    """Read an Interfile header into {normalised key: raw value string}; ``;`` starts a comment.

    Keys are case-insensitive and the ``!`` prefix is optional; the value is everything after ``:=``.
    """
    path = check_file("header", path)
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as error:
        raise InputError(f"header: cannot read {str(path)!r}: {error}") from error
    header: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split(";", 1)[0]
        if ":=" not in line:
            continue
        key, value = line.split(":=", 1)
        header[normalise_key(key)] = value.strip()
    if "interfile" not in header:
        raise InputError(f"header: {str(path)!r} is not an Interfile header (no '!INTERFILE :=' line)")
    return header


class _Header:
    """Typed access to a parsed header; every error names the file and the key."""

    def __init__(self, path: Path, keys: dict[str, str]) -> None:
        self.path, self.keys = path, keys

    def error(self, key: str, expected: str) -> InputError:
        found = self.keys.get(key)
        what = "is missing" if found is None else f"is {found!r}"
        return InputError(f"Interfile header {str(self.path)!r}: key {key!r} {what}; expected {expected}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.keys.get(key, default)
        if value is None or value == "":
            raise self.error(key, "a value")
        return value

    def list(self, key: str, default: str | None = None) -> list[str]:
        value = self.text(key, default)
        if value.startswith("{"):
            if not value.endswith("}"):
                raise self.error(key, "a list '{a, b, ...}'")
            value = value[1:-1]
        return [item.strip() for item in value.split(",") if item.strip()]

    def number(self, key: str, default: float | None = None, kind: type = float) -> float:
        values = self.numbers(key, None if default is None else str(default), kind)
        if len(values) != 1:
            raise self.error(key, "a single number")
        return values[0]

    def numbers(self, key: str, default: str | None = None, kind: type = float) -> list:
        try:
            values = [kind(item) for item in self.list(key, default)]
        except ValueError:
            raise self.error(key, f"{'integers' if kind is int else 'numbers'}") from None
        if not values or (kind is float and any(not np.isfinite(v) for v in values)):
            raise self.error(key, "finite numbers")
        return values


def _dtype(header: _Header) -> np.dtype:
    """Numpy dtype from 'number format', 'number of bytes per pixel' and 'imagedata byte order'."""
    number_format = re.sub(r"\s+", " ", header.text("number format").lower())
    n_bytes = int(header.number("number of bytes per pixel", kind=int))
    order = header.text("imagedata byte order", "BIGENDIAN").upper()  # Interfile's (and STIR's) default
    if order not in ("LITTLEENDIAN", "BIGENDIAN"):
        raise header.error("imagedata byte order", "LITTLEENDIAN or BIGENDIAN")
    endian = "<" if order == "LITTLEENDIAN" else ">"
    if number_format in _FLOAT_FORMATS and n_bytes in (4, 8):
        return np.dtype(f"{endian}f{n_bytes}")
    if number_format in _INT_FORMATS and n_bytes in (1, 2, 4, 8):
        return np.dtype(f"{endian}{_INT_FORMATS[number_format]}{n_bytes}")
    raise header.error("number format", f"one of {', '.join(_FLOAT_FORMATS + tuple(_INT_FORMATS))} with a "
                       f"supported 'number of bytes per pixel' (float: 4 or 8; integer: 1, 2, 4 or 8), "
                       f"got {n_bytes} bytes")


def _storage_order(header: _Header) -> str:
    """'by_view' or 'by_sinogram' from the four matrix axis labels (STIR's default 'by_view' if none given)."""
    if int(header.number("number of dimensions", kind=int)) != 4:
        raise header.error("number of dimensions", "4 (segment, view/axial, axial/view, tangential); TOF or "
                           "other layouts are not supported")
    labels = tuple(re.sub(r"\s+", " ", header.keys.get(f"matrix axis label[{i}]", "").lower()) for i in range(1, 5))
    if not any(labels):
        return "by_view"
    for order, expected in _AXIS_LABELS.items():
        if labels == expected:
            return order
    raise header.error("matrix axis label[1..4]", "(tangential coordinate, axial coordinate, view, segment) or "
                       f"(tangential coordinate, view, axial coordinate, segment), got {labels}")


def _scanner_from_header(header: _Header, segments: list[tuple[int, int]], n_views: int) -> ScannerGeometry:
    """ScannerGeometry from the scanner parameters and the segment table; refuses what it cannot express."""
    centre = [s for s in segments if s[0] + s[1] == 0]
    if len(centre) != 1 or centre[0][0] > 0:
        raise header.error("minimum ring difference per segment",
                           f"a segment 0 holding ring differences -h..h (segments found: {segments})")
    max_ring_difference = max(high for _, high in segments)
    view_offset = header.number("view offset (degrees)", 0.0)
    if view_offset != 0:
        raise header.error("view offset (degrees)", "0 (our geometry has views at k * 180 / n_views degrees)")
    # STIR uses the data's own 'effective central bin size' and falls back to the scanner's default bin size
    bin_key = "effective central bin size (cm)" if "effective central bin size (cm)" in header.keys \
        else "default bin size (cm)"
    kwargs = dict(
        ring_radius_mm=round(header.number("inner ring diameter (cm)") * 5
                             + header.number("average depth of interaction (cm)", 0.0) * 10, 6),
        n_detectors_per_ring=int(header.number("number of detectors per ring", kind=int)),
        n_rings=int(header.number("number of rings", kind=int)),
        ring_spacing_mm=round(header.number("distance between rings (cm)") * 10, 6),
        n_views=n_views,
        n_bins=int(header.number("matrix size[1]", kind=int)),
        bin_size_mm=round(header.number(bin_key) * 10, 6),
        max_ring_difference=max_ring_difference,
        span=2 * centre[0][1] + 1,
        name=header.keys.get("originating system") or "custom",
    )
    try:
        scanner = ScannerGeometry(**kwargs)
    except InputError as error:
        raise InputError(f"Interfile header {str(header.path)!r}: {error}") from error
    if sorted(scanner.segments) != sorted(segments):
        raise header.error("minimum/maximum ring difference per segment",
                           f"a segment table our geometry can express (span {scanner.span}, max ring difference "
                           f"{max_ring_difference} gives {scanner.segments}; file has {segments})")
    return scanner


def segment_sizes(scanner: ScannerGeometry) -> list[int]:
    """Number of (span-compressed) sinograms of each segment, in our storage order."""
    diff = scanner.ring_pairs[:, 1] - scanner.ring_pairs[:, 0]
    index = scanner.span_index
    return [int(np.ptp(index[(diff >= low) & (diff <= high)])) + 1 for low, high in scanner.segments]


def stir_segment_sequence(scanner: ScannerGeometry) -> list[int]:
    """Positions in ``scanner.segments`` of STIR's ``ProjData::standard_segment_sequence``: 0, +1, -1, +2, ..."""
    order = [0]
    for k in range(1, len(scanner.segments), 2):
        order += [k + 1, k]
    return order


def read_interfile_sinogram(path: str | Path) -> tuple[np.ndarray, ScannerGeometry]:
    """Read STIR Interfile projection data as a float32 (n_sinograms, n_views, n_bins) array + its geometry.

    Args:
        path: the ``.hs`` header; the data file named in it is found relative to the header's folder.

    Raises:
        InputError: naming the file and key for a missing/truncated data file, an unsupported number format,
            a missing required key, or a layout/segment table our ``ScannerGeometry`` cannot express.
    """
    path = Path(path)
    header = _Header(path, parse_interfile_header(path))
    dtype = _dtype(header)
    order = _storage_order(header)
    n_frames = int(header.number("number of time frames", 1, kind=int))
    if n_frames != 1:
        raise header.error("number of time frames", "1 (dynamic projection data are not supported)")
    n_segments = int(header.number("matrix size[4]", kind=int))
    axial_key = f"matrix size[{2 if order == 'by_view' else 3}]"
    axial = header.numbers(axial_key, kind=int)
    n_views = int(header.number(f"matrix size[{3 if order == 'by_view' else 2}]", kind=int))
    lows = header.numbers("minimum ring difference per segment", kind=int)
    highs = header.numbers("maximum ring difference per segment", kind=int)
    if not len(axial) == len(lows) == len(highs) == n_segments:
        raise header.error("matrix size[4]", f"the number of entries of the axial matrix size ({len(axial)}) and "
                           f"of the min/max ring difference lists ({len(lows)}, {len(highs)})")
    if int(header.number("number of rings", kind=int)) > sum(axial):  # before the geometry's per-ring tables
        raise header.error("number of rings", f"at most the {sum(axial)} sinograms of '{axial_key}' (segment 0 "
                           "holds one per ring)")
    scanner = _scanner_from_header(header, list(zip(lows, highs)), n_views)
    sizes = segment_sizes(scanner)
    offsets = np.cumsum([0] + sizes)
    ours = {segment: k for k, segment in enumerate(scanner.segments)}
    for low, high, n_axial in zip(lows, highs, axial):
        if n_axial != sizes[ours[(low, high)]]:
            raise header.error(axial_key, f"{sizes[ours[(low, high)]]} axial positions for "
                               f"segment ({low}, {high}) with {scanner.n_rings} rings, got {n_axial}")

    data_path = path.parent / header.text("name of data file")
    try:
        check_file(f"data file named in {str(path)!r}", data_path)
    except OSError as error:  # a name the file system refuses (too long, ...)
        raise header.error("name of data file", f"a readable file name ({error})") from error
    offset_key = "data offset in bytes[1]" if "data offset in bytes[1]" in header.keys else "data offset in bytes"
    offset = int(header.number(offset_key, 0, kind=int))
    if offset < 0:
        raise header.error(offset_key, "a byte offset >= 0")
    scales = set(header.numbers("image scaling factor[1]", "1"))
    if len(scales) != 1:
        raise header.error("image scaling factor[1]", "one scale factor (or equal ones) for all segments")
    n_values = sum(axial) * scanner.n_views * scanner.n_bins
    needed = offset + n_values * dtype.itemsize
    if data_path.stat().st_size < needed:
        raise InputError(f"data file {str(data_path)!r} is truncated: {data_path.stat().st_size} bytes, but header "
                         f"{str(path)!r} promises {needed} (offset {offset} + {n_values} values of "
                         f"{dtype.itemsize} bytes)")
    raw = np.fromfile(data_path, dtype=dtype, count=n_values, offset=offset)

    sinogram = np.empty(scanner.data_shape, dtype=np.float32)
    start = 0
    for low, high, n_axial in zip(lows, highs, axial):
        block = raw[start:start + n_axial * scanner.n_views * scanner.n_bins]
        start += block.size
        if order == "by_view":
            block = block.reshape(scanner.n_views, n_axial, scanner.n_bins).transpose(1, 0, 2)
        k = ours[(low, high)]
        sinogram[offsets[k]:offsets[k + 1]] = block.reshape(n_axial, scanner.n_views, scanner.n_bins)
    scale = scales.pop()
    if scale != 1:
        sinogram *= np.float32(scale)
    _warn_conventions(header, scanner)
    return sinogram, scanner


def _warn_conventions(header: _Header, scanner: ScannerGeometry) -> None:
    """Warn where STIR's sampling differs from ours by a fraction of a sample (not refused: common data)."""
    notes = []
    if scanner.n_bins % 2 == 0:
        notes.append("an even number of tangential bins: STIR's bin i is at (i - n/2) * bin size, ours at "
                     "(i - (n-1)/2) * bin size (half a bin apart)")
    if not any("arc correct" in c.lower() for c in header.list("applied corrections", "{arc correction}")):
        notes.append("data that are not arc-corrected: read as if the bins were uniform with the central bin size")
    mash = scanner.n_detectors_per_ring / (2 * scanner.n_views)
    if mash > 1 and mash.is_integer():
        notes.append(f"view mashing by {int(mash)}: STIR offsets the views by (mash - 1) / 2 detector angles")
    if notes:
        warnings.warn(f"{header.path}: " + "; ".join(notes), stacklevel=3)


def write_interfile_sinogram(path: str | Path, sinogram: torch.Tensor | np.ndarray, scanner: ScannerGeometry,
                             storage_order: str = "by_view") -> Path:
    """Write ``sinogram`` (exactly ``scanner.data_shape``) as STIR Interfile: ``path`` (.hs) + raw float32 .s.

    Segments are stored in STIR's ``standard_segment_sequence`` 0, +1, -1, ...; ``storage_order`` is ``by_view``
    (STIR's default) or ``by_sinogram``. The data file is renamed into place before the header, both from
    temporary names, so a header on disk always describes a complete data file.
    """
    path = Path(path)
    check_choice("storage_order", storage_order, STORAGE_ORDERS)
    if path.suffix != ".hs":
        raise InputError(f"path {str(path)!r}: expected a '.hs' Interfile header name")
    array = sinogram.detach().cpu().numpy() if isinstance(sinogram, torch.Tensor) else np.asarray(sinogram)
    if array.ndim != 3:
        raise InputError(f"sinogram has shape {array.shape}; expected {scanner.data_shape} (one frame, no batch)")
    check_shape("sinogram", array, scanner.data_shape, "scanner.data_shape")
    check_finite("sinogram", array)
    array = array.astype("<f4", copy=False)
    sizes = segment_sizes(scanner)
    offsets = np.cumsum([0] + sizes)
    sequence = stir_segment_sequence(scanner)
    blocks = [array[offsets[k]:offsets[k + 1]] for k in sequence]
    if storage_order == "by_view":
        blocks = [block.transpose(1, 0, 2) for block in blocks]
    data_path = path.with_suffix(".s")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(data_path, b"".join(np.ascontiguousarray(block).tobytes() for block in blocks))
    write_bytes_atomic(path, _header_text(scanner, data_path.name, storage_order,
                                     [scanner.segments[k] for k in sequence], [sizes[k] for k in sequence]).encode())
    return path


def _header_text(scanner: ScannerGeometry, data_name: str, storage_order: str,
                 segments: list[tuple[int, int]], axial: list[int]) -> str:
    """Header text in the key order STIR writes (number of dimensions before the matrix keys)."""
    labels = _AXIS_LABELS[storage_order]
    sizes = {"tangential coordinate": str(scanner.n_bins), "view": str(scanner.n_views),
             "axial coordinate": "{ " + ", ".join(map(str, axial)) + "}", "segment": str(len(segments))}
    matrix = [line for i in range(4, 0, -1) for line in
              (f"matrix axis label [{i}] := {labels[i - 1]}", f"!matrix size [{i}] := {sizes[labels[i - 1]]}")]
    lines = [
        "!INTERFILE  :=",
        f"name of data file := {data_name}",
        f"originating system := {scanner.name}",
        "!GENERAL DATA :=", "!GENERAL IMAGE DATA :=", "!type of data := PET",
        "imagedata byte order := LITTLEENDIAN",
        "!PET STUDY (General) :=", "!PET data type := Emission",
        "applied corrections := {arc correction}",
        "!number format := float", "!number of bytes per pixel := 4",
        "number of dimensions := 4", *matrix,
        "minimum ring difference per segment := { " + ", ".join(str(low) for low, _ in segments) + "}",
        "maximum ring difference per segment := { " + ", ".join(str(high) for _, high in segments) + "}",
        "Scanner parameters :=",
        f"Number of rings := {scanner.n_rings}",
        f"Number of detectors per ring := {scanner.n_detectors_per_ring}",
        f"Inner ring diameter (cm) := {_cm(2 * scanner.ring_radius_mm)}",
        "Average depth of interaction (cm) := 0",
        f"Distance between rings (cm) := {_cm(scanner.ring_spacing_mm)}",
        f"Default bin size (cm) := {_cm(scanner.bin_size_mm)}",
        "View offset (degrees) := 0",
        f"Maximum number of non-arc-corrected bins := {scanner.n_bins}",
        f"Default number of arc-corrected bins := {scanner.n_bins}",
        "end scanner parameters :=",
        f"effective central bin size (cm) := {_cm(scanner.bin_size_mm)}",
        "image scaling factor[1] := 1",
        "data offset in bytes[1] := 0",
        "number of time frames := 1",
        "!END OF INTERFILE :=",
    ]
    return "\n".join(lines) + "\n"


def _cm(mm: float) -> str:
    """Millimetres as an exact centimetre string for the header."""
    return repr(mm / 10)


def write_bytes_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary name beside ``path`` and rename it into place."""
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
