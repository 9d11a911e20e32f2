"""Intensity normalisation of training and inference images.

PET (Singh et al., PET-DDS): divide by the mean over emission voxels, then, in training only, multiply by a
random factor in [0.5, 1.5] so the prior learns a range of scales; at inference the same mean (e.g. of an
OSEM image) gives the scale that maps prior samples back to activity. MR magnitude: scaled to [0, 1] per image.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform, Transform

from diffrecon.checks import InputError, check_finite

NdarrayOrTensor = np.ndarray | torch.Tensor


def emission_mean(image: NdarrayOrTensor, threshold: float = 0.05) -> float:
    """Mean of ``image`` over emission voxels: those above ``threshold`` times the image maximum.

    Raises:
        InputError: the image is not finite or has no positive voxel.
    """
    check_finite("image", image)
    values = torch.as_tensor(image)
    peak = float(values.max()) if values.numel() else 0.0
    if peak <= 0:
        raise InputError("image has no positive voxel; expected a PET image with emission")
    return float(values[values > threshold * peak].double().mean())


class EmissionNormalize(Transform):
    """Divide a PET image by its emission mean (:func:`emission_mean`); ``inverse`` multiplies back.

    Args:
        threshold: emission voxels are those above this fraction of the maximum.
    """

    backend = ["torch", "numpy"]

    def __init__(self, threshold: float = 0.05) -> None:
        self.threshold = float(threshold)
        self.scale = 1.0

    def __call__(self, image: NdarrayOrTensor) -> NdarrayOrTensor:
        self.scale = emission_mean(image, self.threshold)
        return image / self.scale

    def inverse(self, image: NdarrayOrTensor) -> NdarrayOrTensor:
        """Back to activity units with the scale of the last image normalised."""
        return image * self.scale


class RandIntensityFactor(RandomizableTransform):
    """Multiply an image by a random factor drawn uniformly in ``factor_range`` (training augmentation)."""

    backend = ["torch", "numpy"]

    def __init__(self, factor_range: Sequence[float] = (0.5, 1.5), prob: float = 1.0) -> None:
        super().__init__(prob)
        low, high = (float(v) for v in factor_range)
        if not 0 < low <= high:
            raise InputError(f"factor_range must be (low, high) with 0 < low <= high, got {tuple(factor_range)}")
        self.factor_range = (low, high)
        self.factor = 1.0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self.factor = self.R.uniform(*self.factor_range) if self._do_transform else 1.0

    def __call__(self, image: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        return image * self.factor


class MagnitudeNormalize(Transform):
    """Scale an MR magnitude image to [0, 1] by its maximum absolute value (complex input gives magnitude)."""

    backend = ["torch", "numpy"]

    def __call__(self, image: NdarrayOrTensor) -> NdarrayOrTensor:
        check_finite("image", image)
        magnitude = abs(image)
        peak = float(magnitude.max()) if len(magnitude.reshape(-1)) else 0.0
        if peak <= 0:
            raise InputError("image is all zero; expected an MR magnitude image")
        return magnitude / peak


class _KeysWrapper(MapTransform):
    """Dictionary form of an array transform: applies ``self.transform`` to each key."""

    transform: Transform

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class EmissionNormalized(_KeysWrapper):
    """Dictionary form of :class:`EmissionNormalize`; the scale is stored under ``<key>_scale``."""

    def __init__(self, keys: KeysCollection, threshold: float = 0.05, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = EmissionNormalize(threshold)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
            d[f"{key}_scale"] = self.transform.scale
        return d


class RandIntensityFactord(_KeysWrapper, RandomizableTransform):
    """Dictionary form of :class:`RandIntensityFactor`; one factor for all keys of a sample."""

    def __init__(self, keys: KeysCollection, factor_range: Sequence[float] = (0.5, 1.5), prob: float = 1.0,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.transform = RandIntensityFactor(factor_range, prob=1.0)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        self.randomize(None)
        if not self._do_transform:
            return dict(data)
        self.transform.randomize()
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], randomize=False)
        return d


class MagnitudeNormalized(_KeysWrapper):
    """Dictionary form of :class:`MagnitudeNormalize`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = MagnitudeNormalize()
