"""Input validation shared by every layer: clear errors that name the parameter and what was expected.

All checks raise :class:`InputError` (a ``ValueError``) early, before any long computation, so the command
line can print the message without a traceback.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where a check needs it, so that the command line refuses bad options fast
    import torch


class InputError(ValueError):
    """Bad user input: the message names the parameter and what was expected."""


def _as_tensor(value: torch.Tensor | np.ndarray) -> torch.Tensor:
    import torch

    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def check_finite(name: str, value: torch.Tensor | np.ndarray) -> None:
    """Raise if ``value`` holds NaN or Inf."""
    import torch

    tensor = _as_tensor(value)
    if tensor.is_floating_point() or tensor.is_complex():
        bad = (~torch.isfinite(tensor)).sum().item()
        if bad:
            raise InputError(f"{name} contains {bad} NaN/Inf value(s); expected finite numbers")


def check_nonnegative(name: str, value: torch.Tensor | np.ndarray) -> None:
    """Raise if ``value`` holds NaN, Inf or negative entries (counts, activities, factors)."""
    check_finite(name, value)
    tensor = _as_tensor(value)
    if tensor.is_complex():
        raise InputError(f"{name} is complex; expected real non-negative values")
    negative = (tensor < 0).sum().item()
    if negative:
        raise InputError(f"{name} contains {negative} negative value(s) (min {tensor.min().item():.4g}); "
                         "expected values >= 0")


def check_shape(name: str, value: torch.Tensor | np.ndarray, expected: Sequence[int], what: str = "") -> None:
    """Raise unless the trailing dimensions of ``value`` equal ``expected``."""
    shape = tuple(value.shape)
    expected = tuple(int(n) for n in expected)
    if shape[len(shape) - len(expected):] != expected or len(shape) < len(expected):
        suffix = f" ({what})" if what else ""
        raise InputError(f"{name} has shape {shape}; expected trailing shape {expected}{suffix}")


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    """Raise unless ``value`` is one of ``choices``; returns it."""
    choices = list(choices)
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}")
    return value


def check_positive(name: str, value: float) -> float:
    """Raise unless ``value`` is a finite number > 0; returns it as float."""
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_auto(name: str, value: Any, check: Callable[[str, Any], Any], expected: str) -> Any:
    """``value`` if it is "auto" (a setting the method chooses from the data), else ``check(name, value)``; the
    refusal names both forms (``expected``: what a number must be)."""
    if isinstance(value, str) and value == "auto":
        return value
    if not isinstance(value, str):
        try:
            return check(name, value)
        except (InputError, TypeError):
            pass
    raise InputError(f"{name} must be 'auto' (chosen from the data) or {expected}, got {value!r}")


def check_integer(name: str, value: int, minimum: int = 1) -> int:
    """Raise unless ``value`` is an integer >= ``minimum`` (booleans refused); returns it as int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_at_least(name: str, value: float, minimum: float = 0.0) -> float:
    """Raise unless ``value`` is a finite number >= ``minimum``; returns it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value) \
            or value < minimum:
        raise InputError(f"{name} must be a finite number >= {minimum:g}, got {value!r}")
    return float(value)


def check_file(name: str, path: str | Path) -> Path:
    """Raise unless ``path`` is an existing, readable file; returns it as a Path."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{name}: file {str(path)!r} does not exist")
    return path


@contextmanager
def naming_file(path: str | Path | None) -> Iterator[None]:
    """Within the block, an :class:`InputError` that does not name the file ``path`` gets "(in 'path')" appended:
    checks of a file's content, once read, that name only the parameter."""
    try:
        yield
    except InputError as error:
        if not isinstance(path, (str, Path)) or str(path) in str(error):
            raise
        raise InputError(f"{error} (in {str(path)!r})") from error


def check_output_dir(name: str, path: str | Path) -> Path:
    """Raise unless ``path`` is a folder where a file can be written, or one that can be created: a file with a
    unique name is written in it (or a folder with a unique name in its nearest existing parent) and removed, so that
    a folder the permissions allow but the file system refuses (/proc, /sys, read-only mounts) is refused before any
    work, a refused command leaves no trace, and processes checking the same folder at once (the ranks of a
    multi-GPU run) do not disturb each other. Returns it as a Path."""
    import tempfile

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{name} {str(path)!r} is a file; expected a folder for the outputs")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{name} {str(path)!r}: {str(existing)!r} is a file, so the folder cannot be created")
    prefix = ".diffrecon-write-check-"
    try:
        if existing == path:
            with tempfile.NamedTemporaryFile(dir=path, prefix=prefix):
                pass
        else:
            with tempfile.TemporaryDirectory(dir=existing, prefix=prefix) as probe:
                (Path(probe) / "file").write_bytes(b"")
    except OSError as error:
        what = "cannot be written" if existing == path else "cannot be created"
        raise InputError(f"{name} {str(path)!r} {what} ({error.strerror or error}); expected a folder you can write "
                         "to") from error
    return path


def check_device(name: str, device: str | torch.device) -> torch.device:
    """Raise unless ``device`` is a valid torch device available here; returns it."""
    import torch

    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InputError(f"{name} {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"{name} {str(device)!r} asked for CUDA, but this torch build or machine has no CUDA GPU "
                         f"(torch {torch.__version__}); use cpu or install the CUDA build of torch")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"{name} {str(device)!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return device
