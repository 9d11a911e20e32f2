"""Training PET-DEFT's h-networks with MONAI's ``SupervisedTrainer`` (bundles/pet_deft/configs/train.json).

A training item is a measured pair: the reference activity ``image`` (x, y, z), the counts ``sinogram`` and the
``physics`` they were measured through (from :class:`~diffrecon.transforms.SimulatePETd`, fresh Poisson noise at
every visit, or from a site's folder, :func:`~diffrecon.io.pairs.load_pet_pairs`). :class:`DEFTPrepareBatch`
turns a batch of pairs into ε-matching examples at random times (the frozen prior's ε and the condition computed
without gradient); :class:`DEFTInferer` runs the h-networks on them; the loss is the MSE between the h-network's
correction and ε − ε_prior, that is DEFT's ‖ε − (ε_prior + ε_h)‖².
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.inferers import Inferer

from diffrecon.checks import InputError, check_choice, check_integer
from diffrecon.methods.pet_deft import LIKELIHOOD_TERMS, deft_example
from diffrecon.priors.correction import TRAINING_RECORD
from diffrecon.methods.spaces import PETSpace
from diffrecon.priors.prior import ScoreModel
from diffrecon.priors.weights import save_weights

class DEFTPrepareBatch:
    """A batch of measured pairs (a list of items: ``image``, ``sinogram``, ``physics``) as h-network examples:
    ``times_per_pair`` examples per pair, each at its own time.

    Args:
        prior: the frozen prior (its structure is the h-networks').
        times_per_pair: examples drawn from each pair (the pair's OSEM scale is computed once for them).
        timesteps: fixed times (validation: example k of a pair gets ``timesteps[k]``) instead of random ones.
        seed: seeds the noise of validation examples (per pair, by its ``index`` key, and time) so validation
            losses compare between epochs; None: the global random state (training).
        likelihood: the likelihood term of the condition (:data:`~diffrecon.methods.pet_deft.LIKELIHOOD_TERMS`).
        osem_iterations, osem_subsets: the OSEM image that sets each pair's scale, as at reconstruction.
    """

    def __init__(self, prior: ScoreModel, times_per_pair: int = 4, timesteps: Sequence[int] | None = None,
                 seed: int | None = None, likelihood: str = "em", osem_iterations: int | str = "auto",
                 osem_subsets: int = 8) -> None:
        self.prior = prior
        self.times_per_pair = check_integer("times_per_pair", times_per_pair)
        self.timesteps = None if timesteps is None else [int(t) for t in timesteps]
        if self.timesteps is not None and len(self.timesteps) != self.times_per_pair:
            raise InputError(f"timesteps {self.timesteps} must give one time per example (times_per_pair "
                             f"{self.times_per_pair})")
        self.seed = seed
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOOD_TERMS)
        self.space = PETSpace(osem_iterations, osem_subsets)
        self.counts_seen: list[float] = []

    def __call__(self, batchdata: Sequence[dict[str, Any]], device: str | torch.device | None = None,
                 non_blocking: bool = False, **kwargs: Any):
        if isinstance(batchdata, dict) or not len(batchdata):
            raise InputError("DEFT batches are lists of pairs (collate with diffrecon.methods.deft_training."
                             "collate_pairs)")
        if self.seed is not None and any("index" not in item for item in batchdata):
            raise InputError("validation pairs need an 'index' key (their noise is seeded by it)")
        inputs, targets, times = [], [], []
        for item in batchdata:
            sinogram = torch.as_tensor(item["sinogram"]).to(device or "cpu")
            physics = item["physics"]
            call = self.space.prepare(sinogram, physics, self.prior, 1, None)
            self.counts_seen.append(float(sinogram.sum()))
            image = torch.as_tensor(item["image"], dtype=torch.float32).reshape(physics.image_shape)
            clean = self.space.to_network(image.to(sinogram.device), call)[None]
            for k in range(self.times_per_pair):
                generator = None if self.seed is None else torch.Generator().manual_seed(
                    self.seed + 1000 * int(item["index"]) + k)
                t = None if self.timesteps is None else self.timesteps[k]
                noisy, t, condition, target = deft_example(self.prior, clean, call, self.space, t, generator,
                                                           self.likelihood)
                inputs.append(torch.cat((noisy[:, None], condition), dim=1)[0])
                targets.append(target[0])
                times.append(t)
        return torch.stack(inputs), torch.stack(targets), (), {"timesteps": torch.as_tensor(times)}


class DEFTInferer(Inferer):
    """The h-networks' correction of each example: inputs (N, 1 + C, *image) of x_t and its condition, one time
    per example (the tri-planar score takes one time per call)."""

    def __call__(self, inputs: torch.Tensor, network: ScoreModel, timesteps: torch.Tensor) -> torch.Tensor:
        return torch.stack([network.predict_noise(example[0], int(t), example[1:])
                            for example, t in zip(inputs, timesteps)])


def collate_pairs(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The DataLoader's collate for pairs: a list (each pair has its own physics, which does not stack)."""
    return list(items)


def export_correction(correction: ScoreModel, folder: str | Path, counts: Sequence[float],
                      settings: dict[str, Any] | None = None) -> list[Path]:
    """Write each orientation's h-network to ``folder``/model_<orientation>.pt (checksummed) and the training
    record (count range of the pairs trained on, ``settings``) to ``folder``/deft_training.json."""
    if not len(counts):
        raise InputError("counts is empty: no pair was trained on")
    folder = Path(folder)
    paths = [save_weights(folder / f"model_{name}.pt", prior.network)
             for name, prior in getattr(correction, "priors", {"axial": correction}).items()]
    record = {"total_counts": [min(counts), max(counts)], "pairs_seen": len(counts), **(settings or {})}
    partial = folder / (TRAINING_RECORD + ".partial")
    partial.write_text(json.dumps(record, indent=2))
    partial.replace(folder / TRAINING_RECORD)
    return [*paths, folder / TRAINING_RECORD]
