"""Raw MRI k-space readers: NumPy arrays, fastMRI HDF5 (MONAI's FastMRIReader), ISMRMRD HDF5 (Cartesian) and
Siemens twix ``.dat`` (twixtools).

Every reader returns :class:`KSpaceData` with k-space as a complex64 tensor (..., n_coils, x, y[, z]) in the
centred convention of :mod:`diffrecon.physics.mri_fft`: x is the readout, y (and z) the phase encodes, a coil
axis always present (size 1 for single-coil data) and leading axes for slices.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffrecon.checks import InputError, check_file, check_finite
from diffrecon.physics.discrepancy import noise_scan_sigma

LAYOUT_AXES = "bcxyz"
# A file may describe at most this many times more k-space values than it stores (undersampling, compression):
# more means a corrupt header, refused before allocating it.
_MAX_EXPANSION = 1024
# ISMRMRD acquisitions that are not image k-space.
_SKIPPED_FLAGS = ("ACQ_IS_NOISE_MEASUREMENT", "ACQ_IS_NAVIGATION_DATA", "ACQ_IS_PHASECORR_DATA",
                  "ACQ_IS_DUMMYSCAN_DATA", "ACQ_IS_RTFEEDBACK_DATA", "ACQ_IS_HPFEEDBACK_DATA")


@dataclass
class KSpaceData:
    """Multi-coil Cartesian k-space and what the file says about it.

    Attributes:
        kspace: complex64 (..., n_coils, x, y[, z]), zeros where nothing was measured.
        ndim: number of spatial axes (2 or 3).
        readout_oversampling: factor by which x is oversampled (crop with ``remove_readout_oversampling``).
        voxel_size_mm: voxel size of the reconstructed image (after oversampling removal) where the file says.
        reference: the file's own reconstruction (fastMRI ``reconstruction_rss``), if any.
        source: "numpy", "fastmri", "ismrmrd" or "twix".
        noise_sigma: σ of the complex noise (E|n|² = σ²) from the file's noise scan (ISMRMRD noise measurement
            acquisitions, or a twix measurement's own noise lines; all coils pooled), if it has one; in the k-space's
            units only where the scanner recorded both with the same gain and bandwidth (not checked: ISMRMRD does
            not say).
    """

    kspace: torch.Tensor
    ndim: int
    readout_oversampling: int = 1
    voxel_size_mm: tuple[float, ...] | None = None
    reference: np.ndarray | None = None
    source: str = "numpy"
    header: dict = field(default_factory=dict)
    noise_sigma: float | None = None

    @property
    def mask(self) -> torch.Tensor:
        """Boolean (x, y[, z]) mask of the positions measured in any coil or slice."""
        return (self.kspace != 0).flatten(0, self.kspace.dim() - self.ndim - 1).any(0)


def read_kspace(path: str | Path, layout: str | None = None, layout_name: str = "layout") -> KSpaceData:
    """Read k-space from ``.npy``/``.npz`` (axes named by ``layout``), fastMRI ``.h5``, ISMRMRD ``.h5`` or a
    Siemens twix ``.dat``; ``layout_name`` names the layout in errors (the command line's ``--layout``)."""
    path = check_file("kspace file", path)
    if path.suffix in (".npy", ".npz"):
        return read_numpy_kspace(path, layout or "cxy", layout_name)
    if path.suffix == ".dat":
        return read_twix(path)
    if path.suffix not in (".h5", ".hdf5", ".mrd"):
        raise InputError(f"kspace file {str(path)!r}: unknown format {path.suffix!r}; expected .npy, .npz, "
                         "fastMRI .h5, ISMRMRD .h5 or Siemens twix .dat")
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            keys = set(handle.keys())
    except Exception as error:  # h5py raises many types for broken files
        raise InputError(f"kspace file {str(path)!r} is not a readable HDF5 file: {error}") from error
    if "kspace" in keys:
        return read_fastmri(path)
    if "dataset" in keys:
        return read_ismrmrd(path)
    raise InputError(f"kspace file {str(path)!r} holds neither fastMRI 'kspace' nor ISMRMRD 'dataset' "
                     f"(found {sorted(keys)})")


def read_numpy_kspace(path: str | Path, layout: str = "cxy", layout_name: str = "layout") -> KSpaceData:
    """Complex k-space from a ``.npy`` file (or the ``kspace`` array of an ``.npz``).

    Args:
        path: the file.
        layout: one letter per array axis: ``c`` coils, ``x`` readout, ``y``/``z`` phase encodes, ``b`` slices
            (e.g. ``"cyx"`` for a Siemens (channel, line, column) array). ``c`` may be left out for one coil.
        layout_name: how errors name ``layout``.
    """
    path = check_file("kspace file", path)
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            if "kspace" not in loaded.files:
                raise InputError(f"kspace file {str(path)!r} has no 'kspace' array (found {loaded.files})")
            loaded = loaded["kspace"]
        array = np.asarray(loaded)
    except InputError:
        raise
    except Exception as error:  # numpy raises many types for broken files (a header's own parser too)
        raise InputError(f"kspace file {str(path)!r} cannot be read as a NumPy array: {error}") from error
    return KSpaceData(_to_tensor(array, f"kspace file {str(path)!r}", layout, layout_name),
                      ndim=2 + ("z" in layout))


def read_fastmri(path: str | Path) -> KSpaceData:
    """A fastMRI HDF5 volume (single-coil (slices, x, y) or multi-coil (slices, coils, x, y)) via MONAI."""
    from monai.apps.reconstruction.fastmri_reader import FastMRIReader

    path = check_file("kspace file", path)
    _check_fastmri_kspace(path)
    try:
        content = FastMRIReader().read(str(path))
        array = np.asarray(content["kspace"])
    except Exception as error:  # h5py raises many types for broken files
        raise InputError(f"kspace file {str(path)!r}: cannot read fastMRI k-space: {error}") from error
    layout = {3: "bxy", 4: "bcxy"}.get(array.ndim)
    if layout is None:
        raise InputError(f"kspace file {str(path)!r}: fastMRI 'kspace' has shape {array.shape}; expected "
                         "(slices, x, y) or (slices, coils, x, y)")
    oversampling, voxel = 1, None
    if "ismrmrd_header" in content:
        oversampling, voxel = _header_geometry(content["ismrmrd_header"], f"kspace file {str(path)!r}")
    reference = content.get("reconstruction_rss")
    return KSpaceData(_to_tensor(array, f"kspace file {str(path)!r}", layout), ndim=2,
                      readout_oversampling=oversampling, voxel_size_mm=voxel,
                      reference=None if reference is None else np.asarray(reference), source="fastmri",
                      header={key: content[key] for key in ("acquisition", "patient_id") if key in content})


def _check_fastmri_kspace(path: Path) -> None:
    """Refuse a 'kspace' that is not a complex dataset, or that declares more values than the file could hold
    (an unwritten or corrupt dataset would be read as a huge array of fill values)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            kspace = handle["kspace"]
            kind = "dataset" if isinstance(kspace, h5py.Dataset) else "group"
            shape, dtype = (kspace.shape, kspace.dtype) if kind == "dataset" else (None, None)
    except Exception as error:  # h5py raises many types for broken files
        raise InputError(f"kspace file {str(path)!r}: cannot read fastMRI k-space: {error}") from error
    if kind != "dataset" or shape is None or dtype.kind != "c":
        raise InputError(f"kspace file {str(path)!r}: fastMRI 'kspace' is a {kind} of {dtype}; expected a complex "
                         "(slices, [coils,] x, y) array")
    if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > _MAX_EXPANSION * path.stat().st_size:
        raise InputError(f"kspace file {str(path)!r}: fastMRI 'kspace' declares shape {shape}, more than the "
                         f"{path.stat().st_size}-byte file can hold; expected a complete file")


def read_ismrmrd(path: str | Path) -> KSpaceData:
    """Cartesian ISMRMRD HDF5: acquisitions placed by their encode steps; repeats (averages) are averaged.

    Navigator, phase-correction and dummy acquisitions are skipped; noise measurements give ``noise_sigma``;
    slices become a leading axis.
    """
    import ismrmrd

    from diffrecon.io.hdf5_heaps import check_variable_length_heaps

    path = check_file("kspace file", path)
    name = f"kspace file {str(path)!r}"
    # the header and the acquisitions are variable-length: a corrupt global heap collection can make their read
    # loop forever inside libhdf5, so the collections are walked first
    check_variable_length_heaps(path, ("dataset/xml", "dataset/data"), name)
    try:
        dataset = ismrmrd.Dataset(str(path), "dataset", mode="r")  # read-only: opening must not touch the file
        xml = dataset.read_xml_header()
        count = dataset.number_of_acquisitions()
        acquisitions = [dataset.read_acquisition(i) for i in range(count)]
        dataset.close()
    except Exception as error:  # ismrmrd/h5py raise many types for broken files
        raise InputError(f"{name}: cannot read ISMRMRD data: {error}") from error
    encoding = _encoding(xml, name)
    try:
        trajectory = encoding.trajectory.value
        matrix = encoding.encodedSpace.matrixSize
        size_x, size_y, size_z = int(matrix.x), int(matrix.y), int(matrix.z)
        limits = encoding.encodingLimits
        offset_y = size_y // 2 - _centre(limits.kspace_encoding_step_1, size_y)
        offset_z = size_z // 2 - _centre(limits.kspace_encoding_step_2, size_z)
    except (AttributeError, TypeError, ValueError) as error:
        raise InputError(f"{name}: ISMRMRD header lacks a readable encoded matrix and encoding limits: "
                         f"{error}") from error
    if trajectory != "cartesian":
        raise InputError(f"{name}: trajectory {trajectory!r} is not supported; expected cartesian")
    if min(size_x, size_y, size_z) < 1:
        raise InputError(f"{name}: encoded matrix size ({size_x}, {size_y}, {size_z}); expected sizes >= 1")
    skipped = [getattr(ismrmrd, flag) for flag in _SKIPPED_FLAGS]
    images = [a for a in acquisitions if not any(a.is_flag_set(flag) for flag in skipped)]
    noise = [a.data for a in acquisitions if a.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)]
    if not images:
        raise InputError(f"{name} holds no image acquisitions")
    n_slices = 1 + max(a.idx.slice for a in images)
    n_coils = images[0].active_channels
    spatial = (size_x, size_y, size_z) if size_z > 1 else (size_x, size_y)
    stored = sum(a.data.size for a in images)
    if n_slices * n_coils * int(np.prod(spatial)) > _MAX_EXPANSION * stored:
        raise InputError(f"{name}: {n_slices} slice(s) x {n_coils} coils of the encoded matrix {spatial} are more "
                         f"than {_MAX_EXPANSION} times the {stored} samples it holds; expected a header and "
                         "acquisitions that agree")
    total = np.zeros((n_slices, n_coils, *spatial), dtype=np.complex128)
    hits = np.zeros((n_slices, *spatial[1:]), dtype=np.int64)
    for acq in images:
        start = size_x // 2 - acq.center_sample
        where = (acq.idx.slice, acq.idx.kspace_encode_step_1 + offset_y)
        where = where + ((acq.idx.kspace_encode_step_2 + offset_z,) if len(spatial) == 3 else ())
        if acq.active_channels != n_coils or not 0 <= start <= size_x - acq.number_of_samples \
                or not all(0 <= index < size for index, size in zip(where[1:], spatial[1:])):
            raise InputError(f"{name}: acquisition {acq.scan_counter} does not fit the encoded matrix {spatial} "
                             f"({acq.active_channels} coils, {acq.number_of_samples} samples, phase encode "
                             f"{where[1:]})")
        line = (slice(None), slice(start, start + acq.number_of_samples))
        total[where[0]][line + where[1:]] += acq.data
        hits[where] += 1
    hits_full = np.expand_dims(np.maximum(hits, 1), (1, 2))
    kspace = (total / hits_full).astype(np.complex64)
    oversampling, voxel = _header_geometry(xml, name)
    if len({line.shape[0] for line in noise}) > 1:
        raise InputError(f"{name}: its noise measurements have different numbers of coils; expected one")
    layout = "bcxyz"[:kspace.ndim]
    return KSpaceData(_to_tensor(kspace if n_slices > 1 else kspace[0], name, layout[n_slices == 1:]),
                      ndim=len(spatial), readout_oversampling=oversampling, voxel_size_mm=voxel, source="ismrmrd",
                      noise_sigma=noise_scan_sigma(np.concatenate(noise, axis=1)) if noise else None)


# twix loop counters read as the image's axes; Seg and Ave are averaged by twixtools (its defaults), any other
# counter with more than one value (echoes, repetitions, cardiac phases, sets, user indices) is refused.
_TWIX_AXES = {"Sli": "b", "Par": "z", "Lin": "y", "Cha": "c", "Col": "x"}
_TWIX_AVERAGED = ("Seg", "Ave")


def read_twix(path: str | Path) -> KSpaceData:
    """Siemens twix raw data (VB or VD/VE, the last measurement of a multi-raid file) through twixtools.

    Image lines are placed by their line (and partition) counters, lines a partial-Fourier scan did not measure
    left at zero; slices become a leading axis; segments and averages are averaged. The readout oversampling,
    voxel size and the measurement's own noise lines (``noise_sigma``) come from the file.
    """
    import contextlib
    import io

    import twixtools

    path = check_file("kspace file", path)
    name = f"kspace file {str(path)!r}"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            _check_twix_lines(path, name)
            measurement = twixtools.read_twix(str(path), parse_pmu=False, verbose=False)[-1]
            mapped = twixtools.map_twix(measurement, verbose=False)
        header = measurement["hdr"]
    except InputError:
        raise
    except Exception as error:  # twixtools raises many types for broken files
        raise InputError(f"{name}: cannot read Siemens twix data ({type(error).__name__}: {error}); expected a "
                         "complete raw-data file (meas_*.dat) as the scanner wrote it") from error
    if "image" not in mapped:
        raise InputError(f"{name}: its last measurement holds no image lines (found {sorted(mapped)})")
    image = mapped["image"]
    image.flags["zf_missing_lines"] = True  # partial Fourier: the full matrix of the protocol, unmeasured lines 0
    shape = _twix_shape(image, name, "image")
    extra = {axis: size for axis, size in shape.items()
             if size > 1 and axis not in _TWIX_AXES and axis not in _TWIX_AVERAGED}
    if extra:
        raise InputError(f"{name}: loop counter(s) {extra} have more than one value; expected one contrast, one "
                         "repetition and one cardiac phase (extract the one you want to a .npy file)")
    array = _twix_lines(image, path, name, "image")
    order = [image.dims.index(axis) for axis in _TWIX_AXES]  # (Sli, Par, Lin, Cha, Col), the rest singletons
    array = array.transpose(order + [i for i in range(array.ndim) if i not in order])
    kept = [axis for axis in _TWIX_AXES if shape[axis] > 1 or _TWIX_AXES[axis] in "cxy"]
    array = array.reshape([shape[axis] for axis in kept])
    layout = "".join(_TWIX_AXES[axis] for axis in kept)
    oversampling, voxel = _twix_geometry(header, shape, name)
    noise = None
    if "noise" in mapped:
        lines = _twix_lines(mapped["noise"], path, name, "noise")
        channels = mapped["noise"].dims.index("Cha")
        noise = noise_scan_sigma(np.moveaxis(lines, channels, 0).reshape(lines.shape[channels], -1))
    return KSpaceData(_to_tensor(array, name, layout), ndim=2 + ("z" in layout), readout_oversampling=oversampling,
                      voxel_size_mm=voxel, source="twix", noise_sigma=noise)


def _twix_shape(lines, name: str, kind: str) -> dict[str, int]:
    """Size per loop counter of a twixtools array of ``kind`` lines (from the lines' counters)."""
    try:
        return {axis: int(size) for axis, size in zip(lines.dims, lines.shape)}
    except Exception as error:  # shapes come from the counters of possibly corrupt lines
        raise InputError(f"{name}: unreadable loop counters of its {kind} lines: {error}") from error


def _twix_lines(lines, path: Path, name: str, kind: str) -> np.ndarray:
    """A twixtools array of ``kind`` lines read as complex64, refused when its counters describe far more values
    than the file holds (corrupt counters) or its lines do not fit it."""
    shape = tuple(_twix_shape(lines, name, kind).values())
    stored = path.stat().st_size
    if 8 * np.prod(shape, dtype=np.float64) > _MAX_EXPANSION * stored:
        raise InputError(f"{name}: the loop counters of its {kind} lines describe {shape} values, more than "
                         f"{_MAX_EXPANSION} times what the {stored}-byte file holds; expected a complete file")
    try:
        return np.asarray(lines[:], dtype=np.complex64)
    except Exception as error:  # lines whose counters or lengths do not fit the array
        raise InputError(f"{name}: cannot read its {kind} lines ({type(error).__name__}: {error}); expected a "
                         "complete twix file (is it truncated?)") from error


def _check_twix_lines(path: Path, name: str) -> None:
    """Walk the last measurement's line headers as twixtools does (its own header classes and length rule), refusing
    a line shorter than its header or running past the end: on such a corrupt line twixtools' reader goes on from a
    wrong position and can loop for ever."""
    import ctypes

    from twixtools import read_twix
    from twixtools.mdb import Mdb_base

    head = read_twix(str(path), parse_prot=False, parse_data=False, parse_pmu=False, parse_geometry=False,
                     verbose=False)[-1]
    version_is_ve = "raidfile_hdr" in head  # VD/VE files start with a multi-raid table, VB files do not
    start = int(head["raidfile_hdr"]["off_"]) if version_is_ve else 0
    end = start + int(head["raidfile_hdr"]["len_"]) if version_is_ve else path.stat().st_size
    position = start + len(head["hdr_str"])
    with open(path, "rb") as handle:
        while position + 128 < end:  # twixtools' own end condition
            line = Mdb_base(version_is_ve)
            handle.seek(position)
            if handle.readinto(line.mdh) < ctypes.sizeof(line.mdh) or line.is_flag_set("ACQEND"):
                return
            length = int(line.dma_len)
            if not ctypes.sizeof(line.mdh) <= length <= end - position:
                raise InputError(f"{name}: the line header at byte {position} gives a length of {length} bytes, "
                                 f"outside [{ctypes.sizeof(line.mdh)}, {end - position}] (its header, the rest of "
                                 "the measurement); expected a complete twix file (is it truncated or corrupt?)")
            position += length


def _twix_geometry(header: dict, shape: dict[str, int], name: str) -> tuple[int, tuple[float, ...] | None]:
    """Readout oversampling and reconstructed voxel size (x, y, z mm; z the slice thickness of 2D scans) from a twix
    protocol; voxel None where the protocol lacks one."""
    try:
        oversampling = float(header["Dicom"].get("flReadoutOSFactor", 1.0))
    except (KeyError, AttributeError, TypeError, ValueError) as error:
        raise InputError(f"{name}: unreadable readout oversampling factor in its protocol: {error}") from error
    if not np.isfinite(oversampling) or oversampling < 1 or shape["Col"] % round(oversampling):
        raise InputError(f"{name}: readout oversampling {oversampling} in its protocol; expected a whole factor >= 1 "
                         f"of the {shape['Col']} readout samples")
    try:
        kspace, slab = header["MeasYaps"]["sKSpace"], header["MeasYaps"]["sSliceArray"]["asSlice"][0]
        fov = (float(slab["dReadoutFOV"]), float(slab["dPhaseFOV"]), float(slab["dThickness"]))
        matrix = (float(kspace["lBaseResolution"]), float(kspace["lPhaseEncodingLines"]),
                  float(shape["Par"]) if shape["Par"] > 1 else 1.0)
        voxel = tuple(f / m for f, m in zip(fov, matrix))
    except (KeyError, IndexError, AttributeError, TypeError, ValueError, ZeroDivisionError):
        voxel = None
    if voxel is not None and not all(np.isfinite(v) and v > 0 for v in voxel):
        voxel = None
    return int(round(oversampling)), voxel


def _centre(limit, size: int) -> int:
    return size // 2 if limit is None or limit.center is None else int(limit.center)


def _encoding(xml: str | bytes, name: str):
    """The first encoding of an ISMRMRD XML header; InputError naming the file when it cannot be parsed."""
    import ismrmrd

    try:
        return ismrmrd.xsd.CreateFromDocument(xml.decode() if isinstance(xml, bytes) else xml).encoding[0]
    except Exception as error:  # the XML parser raises many types for broken or incomplete headers
        raise InputError(f"{name}: unreadable ISMRMRD XML header: {error}") from error


def _header_geometry(xml: str | bytes, name: str) -> tuple[int, tuple[float, ...]]:
    """Readout oversampling (encoded / reconstructed x) and reconstructed voxel size from ISMRMRD XML."""
    encoding = _encoding(xml, name)
    try:
        encoded, recon = encoding.encodedSpace, encoding.reconSpace
        fov, size = recon.fieldOfView_mm, recon.matrixSize
        sizes = (float(encoded.matrixSize.x), float(size.x), float(size.y), float(max(size.z, 1)))
        fields = (float(fov.x), float(fov.y), float(fov.z))
    except (AttributeError, TypeError, ValueError) as error:
        raise InputError(f"{name}: ISMRMRD header lacks a readable reconstructed matrix and field of view: "
                         f"{error}") from error
    if not all(np.isfinite(v) and v > 0 for v in sizes + fields):
        raise InputError(f"{name}: ISMRMRD header gives matrix sizes {sizes} and field of view {fields} mm; expected "
                         "finite numbers > 0")
    oversampling = max(1, int(round(sizes[0] / sizes[1])))
    voxel = (fields[0] / sizes[1], fields[1] / sizes[2], fields[2] / sizes[3])
    return oversampling, voxel


def _to_tensor(array: np.ndarray, name: str, layout: str, layout_name: str = "layout") -> torch.Tensor:
    """Check a raw k-space array and reorder its axes to (b, c, x, y[, z]) (b only when present)."""
    if not np.iscomplexobj(array):
        raise InputError(f"{name} holds real {array.dtype} data; expected complex k-space")
    if 0 in array.shape:
        raise InputError(f"{name} has shape {array.shape}; expected k-space with no empty axis")
    layout = layout.lower()
    if (len(layout) != array.ndim or len(set(layout)) != len(layout) or set(layout) - set(LAYOUT_AXES)
            or not {"x", "y"} <= set(layout)):
        raise InputError(f"{layout_name} {layout!r} does not describe the shape {array.shape} of {name}: expected one "
                         f"distinct letter per axis from {LAYOUT_AXES!r} (c coils, x readout, y/z phase, b slices), "
                         "with x and y")
    order = [layout.index(axis) for axis in LAYOUT_AXES if axis in layout]
    tensor = torch.as_tensor(np.ascontiguousarray(np.transpose(array, order)).astype(np.complex64))
    if "c" not in layout:
        tensor = tensor.unsqueeze(1 if "b" in layout else 0)
    check_finite(name, tensor)
    return tensor
