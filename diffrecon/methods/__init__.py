"""Reconstruction methods (see DESIGN.md): one module per method, one call shape and one result for all.

``method(data, physics, num_samples=..., generator=...) -> Reconstruction``; :mod:`.registry` finds methods by
name for the command line and bundles. Methods import physics, classical and priors; never io or DICOM.
"""
from __future__ import annotations

from diffrecon.methods.base import Method, Reconstruction, summarize_samples
from diffrecon.methods.registry import METHODS, build_method, get_method, method_names

__all__ = ["METHODS", "Method", "Reconstruction", "build_method", "get_method", "method_names", "summarize_samples"]
