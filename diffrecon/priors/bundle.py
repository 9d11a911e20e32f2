"""Priors as components of their MONAI bundle's ``configs/inference.json``.

The config builds the network (``network_def``), the schedule and the prior in one parse, so every setting
of ``python -m monai.bundle run`` (``--channels``, ``--network_def#channels``, ``--spatial_dims``, ...)
reaches the network whose weights are loaded:

- ``prior``: one network with its weights (:func:`bundle_prior`): a 2D slice prior, a 3D prior, evaluated
  over patches when ``roi_size`` is set, or the variance-exploding form of a VP network;
- ``triplanar`` (bundles of slice priors in several orientations): :class:`TriPlanarScore` of all of them
  (:func:`triplanar_prior`).

:func:`load_bundle_prior` is the same from Python, and what a method bundle calls to use a prior bundle.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffrecon.bundle import bundle_config, bundle_path, parsed_content
from diffrecon.checks import InputError, check_choice
from diffrecon.priors.prior import DiffusionPrior, ScoreModel, VarianceExplodingPrior
from diffrecon.priors.schedules import VESchedule, VPSchedule
from diffrecon.priors.volume import PatchwisePrior, TriPlanarScore
from diffrecon.priors.weights import load_weights
from diffrecon.transforms.intensity import INTENSITY_SCALES

COMBINED = "triplanar"
PRIOR_KINDS = {"PT": "a PET prior", "MR": "an MR prior"}  # how a refusal names a prior of each modality


def bundle_prior(network: nn.Module, weights: str | Path, schedule: VPSchedule | VESchedule,
                 training_schedule: VPSchedule | VESchedule | None = None, spatial_dims: int = 2,
                 roi_size: Sequence[int] | None = None, voxel_size_mm: Sequence[float] | None = None,
                 device: str | torch.device = "cpu", intensity: str | None = None,
                 condition_intensity: str | None = None) -> ScoreModel:
    """A prior from a bundle's network and weights file (checksum verified), in evaluation mode on ``device``.

    Args:
        network: the noise-prediction network (weights are loaded into it).
        weights: its weights file, with a ``.sha256`` sidecar.
        schedule: the schedule to sample with.
        training_schedule: the schedule the network was trained with (default: ``schedule``); a VP network
            asked for with a VE ``schedule`` comes as its :class:`VarianceExplodingPrior`.
        spatial_dims: 2 for slice priors, 3 for volume priors.
        roi_size: evaluate over overlapping patches of this size (:class:`PatchwisePrior`); None: whole images.
        voxel_size_mm: voxel size (x, y, z) of the images the network was trained on, kept on the prior so that
            reconstructions can refuse other grids.
        device: where the prior runs.
        intensity: the intensity convention of the training images (a key of
            ``diffrecon.transforms.intensity.INTENSITY_SCALES``), kept on the prior so that reconstructions scale
            their images to its units.
        condition_intensity: the same for the condition image of a conditional network (e.g. the T1 of an
            MR-guided PET prior), so that methods scale it as in training.

    Raises:
        InputError: missing, corrupted or mismatched weights; a ``roi_size`` the network does not accept; an
            unknown intensity convention.
    """
    for name, value in (("intensity", intensity), ("condition_intensity", condition_intensity)):
        if value is not None:
            check_choice(name, value, INTENSITY_SCALES)
    prior: ScoreModel = DiffusionPrior(load_weights(network, weights), training_schedule or schedule, spatial_dims)
    prior.voxel_size_mm = None if voxel_size_mm is None else tuple(float(v) for v in voxel_size_mm)
    prior.intensity, prior.condition_intensity = intensity, condition_intensity
    if roi_size is not None:
        prior = PatchwisePrior(prior, roi_size)
    if schedule.kind != prior.schedule.kind:
        prior = VarianceExplodingPrior(prior, schedule)
    return prior.to(device).eval()


def triplanar_prior(network: nn.Module, weights: Mapping[str, str | Path], schedule: VPSchedule | VESchedule,
                    chunk_size: int = 16, voxel_size_mm: Sequence[float] | None = None,
                    device: str | torch.device = "cpu",
                    orientation_weights: Mapping[str, float] | None = None,
                    intensity: str | None = None, condition_intensity: str | None = None) -> TriPlanarScore:
    """The tri-planar score of slice priors that share one architecture: a copy of ``network`` per orientation
    with that orientation's weights (``weights``: orientation -> weights file); ``voxel_size_mm``, ``intensity`` and
    ``condition_intensity`` as in :func:`bundle_prior`; ``orientation_weights`` as the ``weights`` of :class:`TriPlanarScore`.

    Raises:
        InputError: an unknown orientation, or missing, corrupted or mismatched weights.
    """
    priors = {name: bundle_prior(copy.deepcopy(network), path, schedule, voxel_size_mm=voxel_size_mm, device=device,
                                 intensity=intensity, condition_intensity=condition_intensity)
              for name, path in weights.items()}
    return TriPlanarScore(priors, chunk_size, orientation_weights)


def load_bundle_prior(bundle: str | Path, model: str, device: str | torch.device = "cpu",
                      **settings: object) -> ScoreModel:
    """The prior ``model`` of ``bundle`` (a bundle folder, or a bundle name: see ``diffrecon.bundle``), built
    by the bundle's inference config in one parse.

    Args:
        bundle: e.g. "pet_fdg_prior" or "mr_t1_prior".
        model: a key of the config's ``models`` (e.g. "axial", or the MR forms "vp" and "ve"), or
            "triplanar" for the :class:`TriPlanarScore` of all orientations of a bundle that defines it.
        device: where the prior runs.
        settings: config settings, as ``--name value`` on the command line (e.g. ``chunk_size=32``).

    Raises:
        InputError: no such bundle or model, an unknown setting, or missing/corrupted/mismatched weights.
    """
    parser = bundle_config(bundle, **settings)
    parser["device"] = torch.device(device)
    models = list(parser["models"]) + ([COMBINED] if COMBINED in parser else [])
    check_choice("model", model, models)
    if model == COMBINED:
        return parsed_content(parser, COMBINED)
    parser[parser["model_key"]] = model
    return parsed_content(parser, "prior")


def load_volume_prior(bundle: str | Path, shape: Sequence[int], device: str | torch.device = "cpu",
                      **settings: object) -> TriPlanarScore:
    """The score over (..., x, y, z) volumes of ``shape`` from a bundle of slice priors: the tri-planar score of
    every orientation whose slices have at least 2 voxels each way (all three for 3D volumes, the axial prior
    alone for single-slice data such as the ``demo2d`` grid); settings as :func:`load_bundle_prior`.

    Raises:
        InputError: no orientation fits the shape, or as :func:`load_bundle_prior`.
    """
    from diffrecon.transforms.slicing import ORIENTATIONS

    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"shape {tuple(shape)}; expected a volume (x, y, z)")
    usable = [name for name, axis in ORIENTATIONS.items() if min(n for i, n in enumerate(shape) if i != axis) >= 2]
    if not usable:
        raise InputError(f"no slice orientation of a volume of shape {tuple(shape)} has two voxels each way")
    if len(usable) == len(ORIENTATIONS):
        return load_bundle_prior(bundle, COMBINED, device, **settings)
    priors = {name: load_bundle_prior(bundle, name, device, **settings) for name in usable}
    return TriPlanarScore(priors, **({"chunk_size": settings["chunk_size"]} if "chunk_size" in settings else {}))


def prior_modality(bundle: str | Path) -> str | None:
    """The modality ("PT", "MR", ...) of the images a prior bundle's networks were trained on, as its metadata
    declares it (MONAI's ``network_data_format.inputs.image.modality``); None where the metadata is absent or
    declares none (priors written before bundles declared it).

    Raises:
        InputError: no such bundle, or a metadata file that is not JSON.
    """
    metadata = bundle_path(bundle) / "configs" / "metadata.json"
    if not metadata.is_file():
        return None
    try:
        modality = json.loads(metadata.read_text())["network_data_format"]["inputs"]["image"]["modality"]
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"prior bundle {str(bundle)!r}: {str(metadata)!r} is not a JSON file: {error}") from error
    except (KeyError, TypeError):
        return None
    return modality if isinstance(modality, str) else None


def check_prior_modality(bundle: str | Path, modality: str, method_name: str | None = None,
                         name: str = "prior") -> None:
    """Raise unless prior ``bundle`` is one of ``modality`` (or declares none, :func:`prior_modality`), so that an
    MR prior given to a PET method (or the reverse) is refused by name rather than by a setting or model it lacks;
    ``method_name`` names the method and ``name`` the setting (``--prior``, ``prior_bundle``) in the refusal."""
    declared = prior_modality(bundle)
    if declared is not None and declared != modality:
        method = f"method {method_name}" if method_name else "the method"
        raise InputError(f"{name} {str(bundle)!r} is {PRIOR_KINDS.get(declared, f'a {declared} prior')} (modality "
                         f"{declared}); {method} needs {PRIOR_KINDS.get(modality, f'a {modality} prior')} "
                         f"({modality})")


def fit_prior(bundle: str | Path, physics: Any, kind: str, device: str | torch.device = "cpu", *,
              modality: str | None = None, method_name: str | None = None, name: str = "prior",
              **settings: object) -> ScoreModel:
    """The prior of ``bundle`` that a method sampling with schedule ``kind`` ("vp" or "ve") uses on the images of
    ``physics`` (anything with an ``image_shape``): a bundle with a model per form (the MR prior) gives that form's
    slice prior (volumes are scored slice by slice by the method); a bundle of slice priors per orientation (the PET
    prior) gives the score over volumes of the image shape (:func:`load_volume_prior`). With ``modality`` (the
    method's, "PT" or "MR"), a prior bundle of another modality is refused first (:func:`check_prior_modality`,
    naming ``method_name`` and the setting ``name``). Settings as :func:`load_bundle_prior`.

    Raises:
        InputError: a prior of another modality, the bundle has no prior of that form, or as
            :func:`load_bundle_prior`.
    """
    if modality is not None:
        check_prior_modality(bundle, modality, method_name, name)
    models = list(bundle_config(bundle)["models"])
    if kind in models:
        return load_bundle_prior(bundle, kind, device, **settings)
    prior = load_volume_prior(bundle, physics.image_shape, device, **settings)
    if prior.schedule.kind != kind:
        raise InputError(f"bundle {str(bundle)!r} holds {prior.schedule.kind.upper()} priors; the method samples with "
                         f"a {kind.upper()} schedule")
    return prior
