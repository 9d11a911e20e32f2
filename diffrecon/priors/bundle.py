"""Load a shipped prior from its MONAI bundle: the network and schedule from ``configs/inference.json``, the
weights from ``models/`` (checksum verified)."""
from __future__ import annotations

from pathlib import Path

import torch

from diffrecon.checks import InputError, check_choice
from diffrecon.priors.prior import DiffusionPrior, ScoreModel, VarianceExplodingPrior
from diffrecon.priors.weights import load_weights

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def load_bundle_prior(bundle: str | Path, model: str, device: str | torch.device = "cpu") -> ScoreModel:
    """The prior ``model`` (e.g. "axial" or "ve") of ``bundle`` (a bundle folder, or a name under bundles/).

    The network is built with ``training_schedule`` (default: ``schedule``); a VP network asked for with a VE
    ``schedule`` comes as its :class:`VarianceExplodingPrior`.

    Raises:
        InputError: no such bundle, unknown model name, or missing/corrupted/mismatched weights.
    """
    from monai.bundle import ConfigParser

    root = Path(bundle) if Path(bundle).is_dir() else BUNDLES / str(bundle)
    config_file = root / "configs" / "inference.json"
    if not config_file.is_file():
        raise InputError(f"bundle {str(bundle)!r}: no configs/inference.json (looked in {root})")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser["bundle_root"] = str(root)
    models = parser.get("models")
    check_choice("model", model, models)
    parser[parser.get("model_key")] = model
    network = load_weights(parser.get_parsed_content("network_def"), root / "models" / models[model])
    schedule = parser.get_parsed_content("schedule")
    prior = DiffusionPrior(network, parser.get_parsed_content("training_schedule", default=schedule))
    if schedule.kind != prior.schedule.kind:
        prior = VarianceExplodingPrior(prior, schedule)
    return prior.to(device).eval()
