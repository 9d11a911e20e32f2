"""2D slices of channel-first volumes (C, x, y, z) in the three perpendicular orientations, and random slices
for training slice priors.

Slice priors and tri-planar scores all follow :data:`ORIENTATIONS`: axial (z; rows x, columns y),
coronal (y; x, z), sagittal (x; y, z).
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from diffrecon.checks import InputError, check_choice, check_integer

NdarrayOrTensor = np.ndarray | torch.Tensor

# Axis of an (x, y, z) volume that each orientation slices along.
ORIENTATIONS = {"axial": 2, "coronal": 1, "sagittal": 0}


def foreground_slices(volume: NdarrayOrTensor, orientation: str, min_foreground: float = 0.05,
                      threshold: float = 0.1) -> np.ndarray:
    """Indices of the slices of a (C, x, y, z) volume whose fraction of voxels above ``threshold`` times the
    volume maximum is at least ``min_foreground`` (skips slices of air at the edges of the field of view)."""
    check_choice("orientation", orientation, ORIENTATIONS)
    if volume.ndim != 4:
        raise InputError(f"volume has shape {tuple(volume.shape)}; expected channel-first (C, x, y, z)")
    values = torch.as_tensor(np.asarray(volume) if not isinstance(volume, torch.Tensor) else volume)
    axis = 1 + ORIENTATIONS[orientation]
    inside = (values.abs() > threshold * values.abs().max()).float()
    fraction = torch.movedim(inside, axis, 0).reshape(values.shape[axis], -1).mean(dim=1)
    keep = torch.nonzero(fraction >= min_foreground).reshape(-1).cpu().numpy()
    if not len(keep):
        raise InputError(f"volume has no {orientation} slice with at least {min_foreground:.0%} foreground")
    return keep


def take_slice(volume: NdarrayOrTensor, orientation: str, index: int) -> NdarrayOrTensor:
    """Slice ``index`` of a (C, x, y, z) volume in ``orientation`` as (C, rows, cols)."""
    axis = 1 + ORIENTATIONS[check_choice("orientation", orientation, ORIENTATIONS)]
    moved = np.moveaxis(volume, axis, 1) if isinstance(volume, np.ndarray) else torch.movedim(volume, axis, 1)
    return moved[:, index]


class RandSliced(Randomizable, MapTransform):
    """Pick random foreground slices in ``orientation`` from (C, x, y, z) volumes (the same slices for all keys).

    One slice gives one dictionary; ``num_slices`` > 1 gives a list of that many (distinct where the volume has
    enough foreground slices), which MONAI's ``DataLoader`` flattens into the batch: a volume's augmentation,
    which costs more than the network's training step on a CPU, then serves several slices.

    Args:
        keys: keys of the volumes.
        orientation: "axial", "coronal" or "sagittal".
        min_foreground: minimum fraction of foreground voxels for a slice to be drawn.
        num_slices: slices drawn per volume.
    """

    def __init__(self, keys: KeysCollection, orientation: str, min_foreground: float = 0.05, num_slices: int = 1,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.orientation = check_choice("orientation", orientation, ORIENTATIONS)
        self.min_foreground = float(min_foreground)
        self.num_slices = check_integer("num_slices", num_slices)
        self.indices: list[int] = []

    def randomize(self, data: NdarrayOrTensor) -> None:
        candidates = foreground_slices(data, self.orientation, self.min_foreground)
        if self.num_slices == 1:  # the draw the shipped priors were trained with, so their commands reproduce them
            self.indices = [int(self.R.choice(candidates))]
            return
        replace = len(candidates) < self.num_slices
        self.indices = [int(i) for i in self.R.choice(candidates, self.num_slices, replace=replace)]

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]
                 ) -> dict[Hashable, NdarrayOrTensor] | list[dict[Hashable, NdarrayOrTensor]]:
        keys = list(self.key_iterator(dict(data)))
        if not keys:
            return dict(data)
        self.randomize(data[keys[0]])
        slices = [{**data, **{key: take_slice(data[key], self.orientation, index) for key in keys}}
                  for index in self.indices]
        return slices[0] if self.num_slices == 1 else slices
