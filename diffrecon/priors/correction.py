"""PET-DEFT's h-networks (Denker et al.'s generalised h-transform): small conditional slice networks of a prior's
structure (one per orientation of a tri-planar prior) that correct its noise prediction from a condition computed
from the measurement (:mod:`diffrecon.methods.pet_deft`), and their loading from a bundle or a training run's export
with the record of what they were trained on."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from diffrecon.bundle import bundle_path
from diffrecon.checks import InputError, check_file
from diffrecon.priors.prior import DiffusionPrior, ScoreModel
from diffrecon.priors.volume import TriPlanarScore
from diffrecon.priors.weights import load_weights

CONDITION_CHANNELS = 2
"""The h-network's condition: the prior's Tweedie estimate and the likelihood (MLEM) direction at it."""
TRAINING_RECORD = "deft_training.json"
"""Written beside the exported h-networks: the count range of the pairs they were trained on, the source of the
report's untrained-dose warning."""
H_CHANNELS = (8, 8, 16)
"""Channels per level of the h-network: 49k parameters, 8% of a shipped PET prior network's 636k (the issue: at most
10%)."""


def h_network(channels: Sequence[int] = H_CHANNELS) -> DiffusionModelUNet:
    """A small 2D conditional UNet (one residual block per level, no attention) taking x_t and the condition."""
    return DiffusionModelUNet(spatial_dims=2, in_channels=1 + CONDITION_CHANNELS, out_channels=1,
                              channels=tuple(channels), attention_levels=(False,) * len(channels), num_res_blocks=1,
                              norm_num_groups=8, num_head_channels=channels[-1])


def correction_model(prior: ScoreModel, networks: Mapping[str, nn.Module] | nn.Module) -> ScoreModel:
    """The h-network as a score model of ``prior``'s structure: per orientation of a tri-planar prior (``networks``
    by orientation, the same orientations), or one slice network for a slice prior.

    Raises:
        InputError: orientations that differ from the prior's, or networks without the condition channels.
    """
    if isinstance(prior, TriPlanarScore):
        if not isinstance(networks, Mapping) or set(networks) != set(prior.priors):
            given = sorted(networks) if isinstance(networks, Mapping) else type(networks).__name__
            raise InputError(f"h-networks {given}; expected one per orientation of the prior: {sorted(prior.priors)}")
        models = {name: _conditional(networks[name], prior.schedule) for name in prior.priors}
        return TriPlanarScore(models, prior.chunk_size)
    if isinstance(networks, Mapping):
        raise InputError(f"h-networks by orientation {sorted(networks)} for a slice prior; expected one network")
    return _conditional(networks, prior.schedule)


def load_correction(bundle: str | Path, prior: ScoreModel, device: str | torch.device = "cpu") -> ScoreModel:
    """The h-networks of ``bundle`` (its ``models/model_<orientation>.pt``, checksums verified; or a folder of
    them, as a training run exports them) for ``prior``'s orientations, with their training record
    (:data:`TRAINING_RECORD`: the count range and likelihood term trained with) as its ``training_record``.

    Raises:
        InputError: no such bundle, a missing orientation or record, weights that do not fit the h-network.
    """
    models = Path(bundle) if (Path(bundle) / TRAINING_RECORD).is_file() else bundle_path(bundle) / "models"
    orientations = list(prior.priors) if isinstance(prior, TriPlanarScore) else ["axial"]
    networks = {name: load_weights(h_network(), models / f"model_{name}.pt").to(device) for name in orientations}
    record_file = check_file("h-network training record", models / TRAINING_RECORD)
    try:
        record = json.loads(record_file.read_text())
        low, high = (float(v) for v in record["total_counts"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise InputError(f"{str(record_file)!r} is not a DEFT training record (total_counts [low, high]): "
                         f"{error}") from error
    correction = correction_model(prior, networks if isinstance(prior, TriPlanarScore) else networks["axial"])
    correction.training_record = {**record, "total_counts": [low, high], "bundle": str(bundle)}
    return correction


def _conditional(network: nn.Module, schedule: Any) -> DiffusionPrior:
    model = DiffusionPrior(network, schedule)
    if model.condition_channels != CONDITION_CHANNELS:
        raise InputError(f"h-network takes {model.condition_channels} condition channels; expected "
                         f"{CONDITION_CHANNELS} (the Tweedie estimate and the likelihood direction)")
    return model
