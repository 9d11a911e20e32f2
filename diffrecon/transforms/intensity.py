"""Intensity normalisation of training and inference images, and intensity augmentation in training.

PET (Singh et al., PET-DDS): divide by the mean over emission voxels, then, in training only, multiply by a
random factor in [0.5, 1.5] so the prior learns a range of scales; at inference the same mean (e.g. of an
OSEM image) gives the scale that maps prior samples back to activity. MR magnitude: scaled to [0, 1] per image.

Phantoms all have the grid's resolution and no activity outside the head; real PET images are smoother (4-12 mm
FWHM: scanner, reconstruction, post-filter) and have a low, broad background (scatter and randoms residue, the
tails of smoothing). :class:`RandResolution` and :class:`RandHalo` draw both, so a prior trained on phantoms
still helps on real brains (``scripts/check_prior_generalisation.py``).
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform, Transform
from monai.utils import convert_to_dst_type
from scipy.ndimage import gaussian_filter

from diffrecon.checks import InputError, check_finite

NdarrayOrTensor = np.ndarray | torch.Tensor


MAGNITUDE_QUANTILE = 0.999  # of |image|: about its maximum, as the MR prior's images, without single spikes


def magnitude_peak(image: NdarrayOrTensor, quantile: float = MAGNITUDE_QUANTILE) -> float:
    """The ``quantile`` of the magnitude of a (complex) image, over at most a million voxels evenly taken: the
    scale of MR images, whose training slices were divided by their maximum."""
    magnitude = torch.as_tensor(image).abs().flatten().float()
    return float(torch.quantile(magnitude[:: max(1, magnitude.numel() // 1_000_000)], quantile))


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
        self.factor_range = _uniform_range("factor_range", factor_range, positive=True)
        self.factor = 1.0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self.factor = self.R.uniform(*self.factor_range) if self._do_transform else 1.0

    def __call__(self, image: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        return image * self.factor


def _uniform_range(name: str, values: Sequence[float], positive: bool = False) -> tuple[float, float]:
    """``(low, high)`` of a uniform draw, checked: ``0 <= low <= high`` (``0 < low`` when ``positive``)."""
    try:
        low, high = (float(v) for v in values)
    except (TypeError, ValueError) as error:
        raise InputError(f"{name} must be (low, high), got {values!r}") from error
    if not (0 < low if positive else 0 <= low) or low > high:
        raise InputError(f"{name} must be (low, high) with {'0 <' if positive else '0 <='} low <= high, "
                         f"got {tuple(values)}")
    return low, high


def gaussian_blur(image: NdarrayOrTensor, fwhm_mm: float, voxel_size_mm: Sequence[float]) -> NdarrayOrTensor:
    """Blur each channel of a channel-first image (C, *spatial) with an isotropic Gaussian of ``fwhm_mm`` full width
    at half maximum on voxels of ``voxel_size_mm`` (one size per spatial axis); same type as ``image``.

    Raises:
        InputError: ``voxel_size_mm`` does not give one positive size per spatial axis of ``image``.
    """
    voxels = np.asarray(voxel_size_mm, dtype=np.float64)
    if voxels.shape != (image.ndim - 1,) or (voxels <= 0).any():
        raise InputError(f"voxel_size_mm is {tuple(voxel_size_mm)}; expected one positive size per spatial axis of "
                         f"an image of shape {tuple(image.shape)} (channel first)")
    if fwhm_mm <= 0:
        return image
    sigma = fwhm_mm / np.sqrt(8 * np.log(2)) / voxels
    values = np.asarray(torch.as_tensor(image).detach().cpu(), dtype=np.float32)
    blurred = np.stack([gaussian_filter(channel, sigma, mode="constant") for channel in values])
    return convert_to_dst_type(blurred, image)[0]


class RandResolution(RandomizableTransform):
    """Blur a channel-first image with an isotropic Gaussian whose FWHM is drawn uniformly in ``fwhm_range_mm``
    (training augmentation: the resolution of real PET images).

    Args:
        fwhm_range_mm: (low, high) full width at half maximum in mm; 0 leaves the image as it is.
        voxel_size_mm: voxel size of the images, one per spatial axis.
        prob: probability of blurring an image.
    """

    backend = ["torch", "numpy"]

    def __init__(self, fwhm_range_mm: Sequence[float] = (0.0, 8.0),
                 voxel_size_mm: Sequence[float] = (3.0, 3.0, 3.0), prob: float = 1.0) -> None:
        super().__init__(prob)
        self.fwhm_range_mm = _uniform_range("fwhm_range_mm", fwhm_range_mm)
        self.voxel_size_mm = tuple(float(v) for v in voxel_size_mm)
        self.fwhm_mm = 0.0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self.fwhm_mm = self.R.uniform(*self.fwhm_range_mm) if self._do_transform else 0.0

    def __call__(self, image: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        return gaussian_blur(image, self.fwhm_mm, self.voxel_size_mm)


class RandHalo(RandomizableTransform):
    """Add a broad, smooth copy of the image, ``image + level * blur(image)``, with ``level`` and the blur's FWHM
    drawn uniformly (training augmentation: the low activity around and between structures that reconstructed
    PET images have and phantoms lack).

    Args:
        level_range: (low, high) of the added copy's weight.
        fwhm_range_mm: (low, high) FWHM in mm of the Gaussian that spreads the copy.
        voxel_size_mm: voxel size of the images, one per spatial axis.
        prob: probability of adding a halo to an image.
    """

    backend = ["torch", "numpy"]

    def __init__(self, level_range: Sequence[float] = (0.0, 0.2), fwhm_range_mm: Sequence[float] = (15.0, 45.0),
                 voxel_size_mm: Sequence[float] = (3.0, 3.0, 3.0), prob: float = 1.0) -> None:
        super().__init__(prob)
        self.level_range = _uniform_range("level_range", level_range)
        self.fwhm_range_mm = _uniform_range("fwhm_range_mm", fwhm_range_mm)
        self.voxel_size_mm = tuple(float(v) for v in voxel_size_mm)
        self.level, self.fwhm_mm = 0.0, 0.0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self.level = self.R.uniform(*self.level_range) if self._do_transform else 0.0
        self.fwhm_mm = self.R.uniform(*self.fwhm_range_mm) if self._do_transform else 0.0

    def __call__(self, image: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if self.level == 0:
            return image
        return image + self.level * gaussian_blur(image, self.fwhm_mm, self.voxel_size_mm)


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


class MagnitudePeakNormalize(Transform):
    """Divide an image by :func:`magnitude_peak` (the 99.9th percentile of its magnitude): the T1 condition of an
    MR-guided PET prior, in training as at inference (where one bright voxel must not set the scale)."""

    backend = ["torch", "numpy"]

    def __call__(self, image: NdarrayOrTensor) -> NdarrayOrTensor:
        check_finite("image", image)
        peak = magnitude_peak(image)
        if not peak > 0:
            raise InputError("image is (almost) all zero; expected an MR image")
        return image / peak


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


class _RandKeysWrapper(_KeysWrapper, RandomizableTransform):
    """Dictionary form of a random array transform ``transform`` (whose ``__call__`` takes ``randomize``): with
    probability ``prob`` it draws once per sample and applies that draw to every key."""

    def __init__(self, keys: KeysCollection, transform: RandomizableTransform, prob: float,
                 allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.transform = transform

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


class RandIntensityFactord(_RandKeysWrapper):
    """Dictionary form of :class:`RandIntensityFactor`; one factor for all keys of a sample."""

    def __init__(self, keys: KeysCollection, factor_range: Sequence[float] = (0.5, 1.5), prob: float = 1.0,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RandIntensityFactor(factor_range, prob=1.0), prob, allow_missing_keys)


class RandResolutiond(_RandKeysWrapper):
    """Dictionary form of :class:`RandResolution`; one width for all keys of a sample."""

    def __init__(self, keys: KeysCollection, fwhm_range_mm: Sequence[float] = (0.0, 8.0),
                 voxel_size_mm: Sequence[float] = (3.0, 3.0, 3.0), prob: float = 1.0,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RandResolution(fwhm_range_mm, voxel_size_mm, prob=1.0), prob, allow_missing_keys)


class RandHalod(_RandKeysWrapper):
    """Dictionary form of :class:`RandHalo`; one level and width for all keys of a sample."""

    def __init__(self, keys: KeysCollection, level_range: Sequence[float] = (0.0, 0.2),
                 fwhm_range_mm: Sequence[float] = (15.0, 45.0), voxel_size_mm: Sequence[float] = (3.0, 3.0, 3.0),
                 prob: float = 1.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, RandHalo(level_range, fwhm_range_mm, voxel_size_mm, prob=1.0), prob,
                         allow_missing_keys)


class MagnitudeNormalized(_KeysWrapper):
    """Dictionary form of :class:`MagnitudeNormalize`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = MagnitudeNormalize()


class MagnitudePeakNormalized(_KeysWrapper):
    """Dictionary form of :class:`MagnitudePeakNormalize`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = MagnitudePeakNormalize()


INTENSITY_SCALES = {"emission_mean": emission_mean, "magnitude_peak": magnitude_peak}
"""A prior's intensity convention by name: the function that gives the scale its training images were divided by."""
