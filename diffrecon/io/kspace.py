"""Raw MRI k-space readers: NumPy arrays, fastMRI HDF5 (MONAI's FastMRIReader) and ISMRMRD HDF5 (Cartesian).

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
        source: "numpy", "fastmri" or "ismrmrd".
        noise_sigma: σ of the complex noise (E|n|² = σ²) from the file's noise scan (ISMRMRD noise measurement
            acquisitions, all coils pooled), if it has one; in the k-space's units only where the scanner recorded
            both with the same gain and bandwidth (not checked: ISMRMRD does not say).
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


def read_kspace(path: str | Path, layout: str | None = None) -> KSpaceData:
    """Read k-space from ``.npy``/``.npz`` (axes named by ``layout``), fastMRI ``.h5`` or ISMRMRD ``.h5``."""
    path = check_file("kspace file", path)
    if path.suffix in (".npy", ".npz"):
        return read_numpy_kspace(path, layout or "cxy")
    if path.suffix not in (".h5", ".hdf5", ".mrd"):
        raise InputError(f"kspace file {str(path)!r}: unknown format {path.suffix!r}; expected .npy, .npz, "
                         "fastMRI .h5 or ISMRMRD .h5")
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


def read_numpy_kspace(path: str | Path, layout: str = "cxy") -> KSpaceData:
    """Complex k-space from a ``.npy`` file (or the ``kspace`` array of an ``.npz``).

    Args:
        path: the file.
        layout: one letter per array axis: ``c`` coils, ``x`` readout, ``y``/``z`` phase encodes, ``b`` slices
            (e.g. ``"cyx"`` for a Siemens (channel, line, column) array). ``c`` may be left out for one coil.
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
    return KSpaceData(_to_tensor(array, f"kspace file {str(path)!r}", layout), ndim=2 + ("z" in layout))


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

    path = check_file("kspace file", path)
    name = f"kspace file {str(path)!r}"
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


def _to_tensor(array: np.ndarray, name: str, layout: str) -> torch.Tensor:
    """Check a raw k-space array and reorder its axes to (b, c, x, y[, z]) (b only when present)."""
    if not np.iscomplexobj(array):
        raise InputError(f"{name} holds real {array.dtype} data; expected complex k-space")
    if 0 in array.shape:
        raise InputError(f"{name} has shape {array.shape}; expected k-space with no empty axis")
    layout = layout.lower()
    if (len(layout) != array.ndim or len(set(layout)) != len(layout) or set(layout) - set(LAYOUT_AXES)
            or not {"x", "y"} <= set(layout)):
        raise InputError(f"kspace layout {layout!r} does not describe {name}'s shape {array.shape}: expected one "
                         f"distinct letter per axis from {LAYOUT_AXES!r} (c coils, x readout, y/z phase, b slices), "
                         "with x and y")
    order = [layout.index(axis) for axis in LAYOUT_AXES if axis in layout]
    tensor = torch.as_tensor(np.ascontiguousarray(np.transpose(array, order)).astype(np.complex64))
    if "c" not in layout:
        tensor = tensor.unsqueeze(1 if "b" in layout else 0)
    check_finite(name, tensor)
    return tensor
