"""Reconstruction methods (see DESIGN.md): one module per method, one call shape and one result for all.

``method(data, physics, num_samples=..., generator=...) -> Reconstruction``; :mod:`.registry` finds methods by
name for the command line and bundles. Methods import physics, classical and priors; never io or DICOM.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> its module, imported on first use (PEP 562) so that reading the registry (the command line's parser)
# loads no torch
_EXPORTS = {"Method": "base", "Reconstruction": "base", "summarize_samples": "base", "METHODS": "registry",
            "build_method": "registry", "get_method": "registry", "method_names": "registry"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """An export above, or a submodule (``methods.registry`` in a bundle config), imported on first use."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
