"""Shipped weights: state dicts with a SHA-256 sidecar, written atomically and loaded with
``torch.load(weights_only=True)``; missing, corrupted or mismatched weights give a clear error."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from torch import nn

from diffrecon.checks import InputError, check_file


def sha256(path: str | Path) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path: str | Path) -> Path:
    """The sidecar ``<weights>.sha256`` (``sha256sum -c`` format) of a weights file."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def state_dict_of(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The network state dict inside a MONAI/ignite checkpoint (``{"model": ...}``) or a bare state dict."""
    for key in ("ema", "model"):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def save_weights(path: str | Path, network_or_state: nn.Module | dict) -> Path:
    """Write a state dict to ``path`` and its checksum sidecar; temporary names first, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = network_or_state.state_dict() if isinstance(network_or_state, nn.Module) else network_or_state
    state = {name: value.detach().cpu().contiguous() for name, value in state.items()}
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    sidecar = checksum_path(path)
    sidecar_partial = sidecar.with_name(sidecar.name + ".partial")
    sidecar_partial.write_text(f"{sha256(partial)}  {path.name}\n")
    os.replace(partial, path)
    os.replace(sidecar_partial, sidecar)
    return path


def load_weights(network: nn.Module, path: str | Path, verify: bool = True) -> nn.Module:
    """Load a state dict into ``network`` after checking the sidecar checksum.

    Raises:
        InputError: the file or its checksum is missing, the checksum does not match (corrupted or replaced
            file), the file is not a state dict, or its tensors do not fit the network's shape.
    """
    return _load_state(network, load_weights_state(path, verify), path, "(different channels or levels?)")


INPUT_CONVOLUTION = "conv_in.conv.weight"
"""The input convolution's kernel in a MONAI ``DiffusionModelUNet`` state dict: (out, in, *kernel)."""


def load_widened_weights(network: nn.Module, path: str | Path, verify: bool = True,
                         input_key: str = INPUT_CONVOLUTION) -> nn.Module:
    """Load the weights of a network with fewer input channels (an unconditional prior) into ``network`` (its
    conditional form, e.g. with a T1 channel): the kernels of the extra input channels of its input convolution
    (``input_key``) are zero, so the widened network starts as the unconditional one, whatever its condition; the
    checksum and every other tensor are checked as :func:`load_weights` does. Weights of the network's own width
    load as they are (a conditional run continued).

    Raises:
        InputError: as :func:`load_weights`, or tensors that differ from the network's beyond the input channels.
    """
    state = load_weights_state(path, verify)
    target = network.state_dict().get(input_key)
    value = state.get(input_key)
    if target is not None and value is not None and value.ndim == target.ndim and value.shape[1] < target.shape[1]:
        extra = value.new_zeros(value.shape[0], target.shape[1] - value.shape[1], *value.shape[2:])
        state[input_key] = torch.cat((value, extra), 1)
    return _load_state(network, state, path, "beyond its input channels")


def _load_state(network: nn.Module, state: dict[str, torch.Tensor], path: str | Path, misfit: str) -> nn.Module:
    """Load ``state`` (read from ``path``) into ``network``; tensors that do not fit are an :class:`InputError`
    naming the file, ``misfit`` saying what differs."""
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise InputError(f"weights {str(path)!r} do not fit this network {misfit}: "
                         f"{' '.join(str(error).split())[:400]}") from error
    return network


def load_weights_state(path: str | Path, verify: bool = True) -> dict[str, torch.Tensor]:
    """The network state dict in weights file ``path`` (checksum verified as :func:`load_weights` does)."""
    path = check_file("weights", path)
    if verify:
        sidecar = check_file("weights checksum", checksum_path(path))
        expected = sidecar.read_text().split()[0] if sidecar.read_text().strip() else ""
        actual = sha256(path)
        if actual != expected:
            raise InputError(f"weights {str(path)!r}: SHA-256 {actual} does not match {expected!r} in "
                             f"{sidecar.name}; the file is corrupted or was replaced")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise InputError(f"weights {str(path)!r} could not be read as a torch state dict: {error}") from error
    if not isinstance(state, dict):
        raise InputError(f"weights {str(path)!r} hold a {type(state).__name__}; expected a state dict")
    return dict(state_dict_of(state))


def latest_checkpoint(folder: str | Path) -> Path | None:
    """Newest readable ``checkpoint_epoch=<n>.pt`` (MONAI's CheckpointSaver) in ``folder``, or None. MONAI writes
    checkpoints in place, so a run killed while saving leaves a truncated newest file: it is skipped."""
    found = sorted(((int(m.group(1)), p) for p in Path(folder).glob("checkpoint_epoch=*.pt")
                    if (m := re.search(r"epoch=(\d+)", p.name))), reverse=True)
    for _, path in found:
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # truncated or foreign file: torch raises EOFError, RuntimeError, UnpicklingError...
            continue
        return path
    return None
