"""Training-slice augmentations for priors that must work beyond the phantoms: generic objects, and the edge of
an axial field of view.

A prior that has seen only brain phantoms paints phantom anatomy into whatever it denoises: on real brains and on
a geometric test object it denoises worse than a Gaussian filter (``scripts/check_prior_generalisation.py``).
:class:`RandShapesd` replaces a fraction of the training slices by random objects (an ellipse or rounded
rectangle, optionally a rim, inner ellipses, blocks, bars and spots of random levels, a smooth texture and a
random blur), so the network also learns edges and smooth regions that are not anatomy. :class:`RandAxialEdged`
zeroes a coronal or sagittal slice beyond a random height, as a whole-body PET series whose field of view ends
inside the head shows it. Our choices; their probabilities are settings of the bundles' training configs.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type
from scipy.ndimage import gaussian_filter

from diffrecon.checks import InputError
from diffrecon.transforms.intensity import _uniform_range

NdarrayOrTensor = np.ndarray | torch.Tensor


def _region(y: np.ndarray, x: np.ndarray, centre: np.ndarray, axes: np.ndarray, angle: float,
            power: float) -> np.ndarray:
    """Mask of a rotated superellipse ``|u/a|^p + |v/b|^p <= 1`` (p = 2: ellipse; large p: rounded rectangle)."""
    cos, sin = np.cos(angle), np.sin(angle)
    u = ((x - centre[1]) * cos + (y - centre[0]) * sin) / axes[1]
    v = (-(x - centre[1]) * sin + (y - centre[0]) * cos) / axes[0]
    return np.abs(u) ** power + np.abs(v) ** power <= 1.0


def random_shapes_image(shape: tuple[int, int], rng: np.random.RandomState,
                        spot_levels: tuple[float, float] = (0.0, 8.0), cut: bool = False) -> np.ndarray:
    """A random non-negative 2D object of ``shape`` (rows, columns), float32, on a zero background; its parts have
    levels in [0, 3] times the object's, its small spots in ``spot_levels`` (real PET has foci far hotter). With
    ``cut``, the object is larger (0.45-0.7 of the field of view per half axis) and the image edge cuts it, as a
    field of view set tighter than the object (a test object filling the scanner's, a body or a large head)."""
    y, x = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    size = min(shape)
    centre = np.asarray(shape, dtype=np.float64) / 2 + rng.uniform(-0.05, 0.05, 2) * size
    axes = rng.uniform(*((0.45, 0.7) if cut else (0.28, 0.46)), 2) * size
    angle, power = rng.uniform(0, np.pi), rng.choice([2.0, 2.0, rng.uniform(2.5, 8.0)])
    outer = _region(y, x, centre, axes, angle, power)
    margin = 5  # pixels of background around the object, as around a head, also after the blur below
    while not cut and (outer[:margin].any() or outer[-margin:].any() or outer[:, :margin].any()
                       or outer[:, -margin:].any()):
        axes *= 0.9
        outer = _region(y, x, centre, axes, angle, power)
    image = outer.astype(np.float64)
    if rng.uniform() < 0.5:  # a rim: scalp and skull, or a phantom's wall
        thickness = rng.uniform(0.02, 0.08) * size
        inner = _region(y, x, centre, np.maximum(axes - thickness, 1.0), angle, power)
        image[outer & ~inner] = rng.uniform(0.0, 2.0)
    for _ in range(rng.randint(0, 16)):
        kind = rng.choice(["ellipse", "block", "bar", "spot"])
        scale = {"ellipse": (0.05, 0.45), "block": (0.05, 0.4), "bar": (0.05, 0.5), "spot": (0.04, 0.15)}[kind]
        part_axes = rng.uniform(*scale, 2) * axes.min()
        if kind == "bar":
            part_axes[0] = rng.uniform(0.01, 0.04) * size
        part_centre = centre + rng.uniform(-0.6, 0.6, 2) * axes
        part_power = rng.uniform(4.0, 10.0) if kind in ("block", "bar") else 2.0
        part = _region(y, x, part_centre, np.maximum(part_axes, 0.7), rng.uniform(0, np.pi), part_power) & outer
        image[part] = rng.uniform(*(spot_levels if kind == "spot" else (0.0, 3.0)))
    texture = gaussian_filter(rng.standard_normal(shape), rng.uniform(2.0, 15.0))
    texture /= texture.std() + 1e-12
    image *= np.clip(1.0 + rng.uniform(0.0, 0.3) * texture, 0.0, None)
    image = gaussian_filter(image, rng.uniform(0.0, 2.5))
    return np.clip(image, 0.0, None).astype(np.float32)


class _RandSliceTransformd(RandomizableTransform, MapTransform):
    """Shared frame of the random slice transforms: with probability ``prob`` a sample is drawn (:meth:`draw`) and
    every key's channel-first 2D slice (C, rows, columns) is changed by :meth:`apply`; the type is kept."""

    def __init__(self, keys: KeysCollection, prob: float, allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def draw(self) -> None:
        """Draw what one sample shares across its keys."""

    def apply(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        self.randomize(None)
        d = dict(data)
        if not self._do_transform:
            return d
        self.draw()
        for key in self.key_iterator(d):
            values = np.asarray(torch.as_tensor(d[key]).detach().cpu(), dtype=np.float32)
            if values.ndim != 3:
                raise ValueError(f"{type(self).__name__} expects channel-first 2D slices (C, rows, columns), got "
                                 f"{values.shape} for key {key!r}; place it after the slicer")
            d[key] = convert_to_dst_type(self.apply(values), d[key])[0]
        return d


class RandShapesd(_RandSliceTransformd):
    """With probability ``prob``, replace each key's 2D channel-first slice (C, H, W) by a random object of the same
    shape (:func:`random_shapes_image` with ``spot_levels``, one per channel) scaled to the slice's mean over its
    foreground (voxels above 5% of its maximum), so the bundle's intensity convention holds; the fraction
    ``cut_prob`` of these objects is cut by the image edge."""

    def __init__(self, keys: KeysCollection, prob: float = 0.25, spot_levels: Sequence[float] = (0.0, 8.0),
                 cut_prob: float = 0.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.spot_levels = _uniform_range("spot_levels", spot_levels)
        if not 0.0 <= cut_prob <= 1.0:
            raise InputError(f"cut_prob must be a probability in [0, 1], got {cut_prob!r}")
        self.cut_prob = float(cut_prob)

    def apply(self, values: np.ndarray) -> np.ndarray:
        shapes = []
        for channel in values:
            target = float(channel[channel > 0.05 * channel.max()].mean()) if channel.max() > 0 else 1.0
            cut = self.cut_prob > 0 and self.R.uniform() < self.cut_prob  # no draw at 0: earlier recipes repeat
            generated = random_shapes_image(channel.shape, self.R, self.spot_levels, cut)
            while generated.max() <= 0:  # every part drawn at level 0: draw again
                generated = random_shapes_image(channel.shape, self.R, self.spot_levels, cut)
            shapes.append(generated * target / float(generated[generated > 0.05 * generated.max()].mean()))
        return np.stack(shapes)


class RandAxialEdged(_RandSliceTransformd):
    """With probability ``prob``, zero a coronal or sagittal slice (C, rows, z) beyond a random height: the
    fraction ``keep_range`` of its foreground's z extent is kept, from below or from above (even odds)."""

    def __init__(self, keys: KeysCollection, prob: float = 0.25, keep_range: Sequence[float] = (0.2, 0.8),
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.keep_range = _uniform_range("keep_range", keep_range)
        self.keep, self.from_below = 1.0, True

    def draw(self) -> None:
        self.keep, self.from_below = self.R.uniform(*self.keep_range), self.R.uniform() < 0.5

    def apply(self, values: np.ndarray) -> np.ndarray:
        heights = np.flatnonzero((np.abs(values) > 0.1 * np.abs(values).max()).any(axis=(0, 1)))
        if not len(heights):
            return values
        low, high = heights[0], heights[-1]
        z = np.arange(values.shape[-1])
        extent = self.keep * (high - low)
        return values * (z <= low + extent if self.from_below else z >= high - extent)
