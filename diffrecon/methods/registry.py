"""Reconstruction methods by name, for the command line, bundles and benchmarks.

Entries name their class as ``"module:Class"`` and are imported only when used, so listing the methods
(``diffrecon recon --help``) loads no networks. A new method adds one line here and one module.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any

from diffrecon.checks import InputError, check_choice


@dataclass(frozen=True)
class MethodEntry:
    """A registered method: its name, modality ("PT" or "MR"), class path and a one-line summary."""

    name: str
    modality: str
    target: str
    summary: str


METHODS: dict[str, MethodEntry] = {entry.name: entry for entry in (
    MethodEntry("mlem", "PT", "diffrecon.methods.pet_classical:MLEM", "maximum-likelihood EM"),
    MethodEntry("osem", "PT", "diffrecon.methods.pet_classical:OSEM", "ordered-subsets EM"),
    MethodEntry("map-rdp", "PT", "diffrecon.methods.pet_classical:MAPRDP",
                "MAP-EM (BSREM) with the relative difference prior"),
    MethodEntry("bowsher", "PT", "diffrecon.methods.pet_classical:Bowsher", "MAP-EM with the MR-guided Bowsher prior"),
    MethodEntry("pet-dds", "PT", "diffrecon.methods.pet_dds:PETDDS",
                "PET-DDS: DDIM with anchored EM data consistency (Singh et al. 2024)"),
    MethodEntry("pet-lisch", "PT", "diffrecon.methods.pet_lisch:PETLiSch",
                "likelihood-scheduled diffusion (Webber et al. 2025): iso-likelihood with OSEM (or MLEM) at K "
                "iterations"),
    MethodEntry("pet-dps", "PT", "diffrecon.methods.dps:PETDPS",
                "DPS: DDIM pulled by the likelihood gradient through the network (Chung et al. 2023; Singh et al.)"),
    MethodEntry("pet-naive", "PT", "diffrecon.methods.naive:PETNaive",
                "naive: the likelihood gradient at the noisy iterate added to the score, weight rising (Jalal et al.)"),
    MethodEntry("scd-pet-dds", "PT", "diffrecon.methods.scd:SteeredPETDDS",
                "SCD: PET-DDS with low-rank adapters trained on the data during sampling (Barbano et al. 2025)"),
    MethodEntry("scd-pet-lisch", "PT", "diffrecon.methods.scd:SteeredPETLiSch",
                "SCD: PET-LiSch with low-rank adapters trained on the data during sampling (Webber et al. 2025)"),
    MethodEntry("pet-deft", "PT", "diffrecon.methods.pet_deft:PETDEFT",
                "PET-DEFT: supervised; the prior's noise corrected by small networks trained on measured pairs "
                "(Webber et al. 2025)"),
    MethodEntry("zero-filled", "MR", "diffrecon.methods.mri_classical:ZeroFilled", "inverse FFT, coils combined"),
    MethodEntry("cg-sense", "MR", "diffrecon.methods.mri_classical:CGSENSE", "conjugate-gradient SENSE"),
    MethodEntry("tv", "MR", "diffrecon.methods.mri_classical:TV", "total-variation compressed sensing"),
    MethodEntry("score-mri", "MR", "diffrecon.methods.score_mri:ScoreMRI",
                "Score-MRI: VE predictor-corrector with k-space projection (Chung and Ye 2022)"),
    MethodEntry("dds", "MR", "diffrecon.methods.dds_mri:DDS",
                "DDS: DDIM with conjugate-gradient data consistency (Chung, Lee and Ye 2024)"),
    MethodEntry("scd-dds", "MR", "diffrecon.methods.scd:SteeredDDS",
                "SCD: DDS with low-rank adapters trained on the data during sampling (Barbano et al. 2025)"),
    MethodEntry("dps", "MR", "diffrecon.methods.dps:MRIDPS",
                "DPS: DDIM pulled by the k-space residual's gradient through the network (Chung et al. 2023)"),
    MethodEntry("naive", "MR", "diffrecon.methods.naive:MRINaive",
                "naive: the likelihood gradient at the noisy iterate added to the score, weight rising (Jalal et al.)"),
)}


def method_names(modality: str | None = None) -> list[str]:
    """Registered method names, all or those of one modality ("PT" or "MR")."""
    return [name for name, entry in METHODS.items() if modality in (None, entry.modality)]


def get_method(name: str) -> type:
    """The class of method ``name``."""
    module, _, cls = METHODS[check_choice("method", name, METHODS)].target.partition(":")
    return getattr(importlib.import_module(module), cls)


def method_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The constructor parameters of method ``name`` (its hyperparameters and inputs such as a prior)."""
    return dict(inspect.signature(get_method(name)).parameters)


def parameter_defaults(key: str) -> dict[str, Any]:
    """The default of constructor parameter ``key`` by method name, for the methods that take it with a default:
    the source of the per-method defaults in ``diffrecon recon --help``, so they cannot drift (imports every
    method's module)."""
    defaults = {}
    for name in METHODS:
        parameter = method_parameters(name).get(key)
        if parameter is not None and parameter.default is not inspect.Parameter.empty:
            defaults[name] = parameter.default
    return defaults


def required_inputs(name: str) -> list[str]:
    """The constructor parameters of method ``name`` without a default: inputs such as the Bowsher MR image
    (``mr``) or a prior, which the caller takes from the case or a bundle."""
    return [key for key, p in method_parameters(name).items() if p.default is inspect.Parameter.empty]


def check_options(name: str, options: dict[str, Any]) -> None:
    """Raise :class:`InputError` if method ``name`` does not take one of ``options`` or needs one they lack
    (both named); their values are checked when the method is built."""
    parameters = method_parameters(name)
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise InputError(f"method {name!r} takes no option {', '.join(map(repr, unknown))}; it takes "
                         f"{', '.join(parameters) or 'no options'}")
    missing = [key for key in required_inputs(name) if key not in options]
    if missing:
        raise InputError(f"method {name!r} needs {', '.join(map(repr, missing))}")


def build_method(name: str, **options: Any):
    """Construct method ``name`` from keyword options, refusing options it does not take.

    Raises:
        InputError: an option the method does not take, a required one missing, or a bad value (named).
    """
    check_options(name, options)
    return get_method(name)(**options)
