"""Brain phantom population built from the MNI152 2009 templates that nilearn ships (offline).

Each subject is the template under a random smooth diffeomorphism (a stationary velocity field integrated by
scaling and squaring) and a global size scaling, with subject-specific tissue activities, a synthetic skull
and scalp for the μ-map, and optional ellipsoid lesions. Everything is deterministic in the seed. Tissue
values and their sources: docs/phantoms.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage

from diffrecon.checks import InputError, check_choice
from diffrecon.data.splits import check_split
from diffrecon.physics.geometry import ImageGrid, get_preset

# Tissue labels of Subject.labels.
LABELS = {"air": 0, "csf": 1, "grey_matter": 2, "white_matter": 3, "skull": 4, "scalp": 5}
# Linear attenuation coefficients at 511 keV in 1/mm (soft tissue ~ water; skull: mixed cortical/trabecular bone).
MU_SOFT_TISSUE = 0.0096
MU_BONE = 0.0146
# Relative activities (white matter = 1) drawn per subject: (low, high) of a uniform distribution.
FDG_ACTIVITY = {"grey_matter": (3.0, 4.0), "white_matter": (1.0, 1.0), "csf": (0.0, 0.1), "skull": (0.1, 0.2),
                "scalp": (0.2, 0.4)}
AMYLOID_NEGATIVE_GREY = (0.45, 0.65)
AMYLOID_POSITIVE_GREY = (0.9, 1.25)
AMYLOID_OTHER = {"white_matter": (1.0, 1.0), "csf": (0.0, 0.1), "skull": (0.1, 0.2), "scalp": (0.1, 0.3)}
WARP_AMPLITUDE_MM = 4.0
# Relative T2-weighted intensities (fast spin echo, long TE: fluid bright, white matter darkest of the brain, fat
# of the scalp bright, cortical bone dark), for an MR contrast the T1 prior never saw; no random draw of its own.
T2_WEIGHTED = {"csf": 1.0, "grey_matter": 0.6, "white_matter": 0.45, "skull": 0.05, "scalp": 0.7}
# The "wide" population, for priors that must also help on real brains: grey/white contrast from low (hypometabolism,
# heavy smoothing) to high, CSF blurred into its surroundings, skull and scalp from almost no uptake to muscle-like
# uptake, and larger local shape differences. Same draws as the standard population, wider ranges.
FDG_ACTIVITY_WIDE = {"grey_matter": (2.0, 4.5), "white_matter": (1.0, 1.0), "csf": (0.0, 0.3),
                     "skull": (0.05, 0.4), "scalp": (0.1, 1.0)}
WARP_AMPLITUDE_WIDE_MM = 6.0
# population -> (FDG activity ranges, warp amplitude in mm)
POPULATIONS = {"standard": (FDG_ACTIVITY, WARP_AMPLITUDE_MM), "wide": (FDG_ACTIVITY_WIDE, WARP_AMPLITUDE_WIDE_MM)}
BRAINSTEM_WIDTH_MM = 40.0
SCALE_RANGE = (0.95, 1.05)  # larger subjects' vertex would leave the demo grid's 56 slices


@dataclass
class Subject:
    """One phantom subject on an image grid; arrays are float32 (x, y, z) in RAS with ``affine``."""

    seed: int
    affine: np.ndarray
    t1: np.ndarray
    t2: np.ndarray
    fdg: np.ndarray
    amyloid: np.ndarray
    mu_map: np.ndarray
    labels: np.ndarray
    grey_matter: np.ndarray
    white_matter: np.ndarray
    lesion_masks: np.ndarray  # (n_lesions, x, y, z) bool
    lesion_kinds: list[str] = field(default_factory=list)
    amyloid_positive: bool = False
    scale: float = 1.0



def default_grid() -> ImageGrid:
    """The demo preset grid (3 mm voxels covering a whole head)."""
    return get_preset("demo").grid


def make_subject(seed: int, grid: ImageGrid | None = None, *, lesions: int = 0, lesion_kinds: str = "mixed",
                 split: str | None = None, population: str = "standard") -> Subject:
    """Build phantom subject ``seed`` on ``grid`` (default: the demo grid).

    Args:
        seed: subject seed; the same seed gives the same subject bit for bit.
        grid: image grid; the brain's bounding box is centred on the grid centre.
        lesions: number of ellipsoid lesions (radii 4-9 mm) placed inside the brain.
        lesion_kinds: "hot", "cold" or "mixed" (alternating hot and cold).
        split: if given, refuse seeds outside this split ("train", "validation", "test").
        population: "standard" or "wide" (:data:`POPULATIONS`: wider FDG activity ranges and warps; the
            same seed draws the same random numbers in both).
    """
    if split is not None:
        check_split(seed, split)
    check_choice("lesion_kinds", lesion_kinds, ("hot", "cold", "mixed"))
    fdg_activity, warp_amplitude_mm = POPULATIONS[check_choice("population", population, POPULATIONS)]
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(lesions, (int, np.integer)) or lesions < 0:
        raise InputError(f"lesions must be an integer >= 0, got {lesions!r}")
    grid = grid or default_grid()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 20261124]))
    templates = _templates(tuple(float(v) for v in grid.voxel_size_mm))

    scale = float(rng.uniform(*SCALE_RANGE))
    points = _grid_points_mm(grid)  # (3, nx, ny, nz) relative to the grid centre
    displacement = _random_diffeomorphism(rng, grid, warp_amplitude_mm)
    source = templates.brain_centre[:, None, None, None] + (points + displacement) / scale
    sample = _sampler(templates, source)
    grey, white, brain = (np.clip(sample(name), 0, 1) for name in ("grey_matter", "white_matter", "brain"))
    csf = np.clip(brain - grey - white, 0, 1)
    t1_brain = sample("t1")

    distance = ndimage.distance_transform_edt(brain < 0.5, sampling=grid.voxel_size_mm)
    skull_start, skull_end = 2.5, 2.5 + rng.uniform(5.0, 7.0)
    scalp_end = skull_end + rng.uniform(4.0, 6.0)
    outside = brain < 0.5
    gap = outside & (distance <= skull_start)
    skull = outside & (distance > skull_start) & (distance <= skull_end)
    scalp = outside & (distance > skull_end) & (distance <= scalp_end)

    labels = np.zeros(grid.shape, dtype=np.uint8)
    tissue = np.stack([csf + gap, grey, white])
    inside = (brain >= 0.5) | gap
    labels[inside] = np.argmax(tissue, axis=0)[inside] + LABELS["csf"]
    labels[skull] = LABELS["skull"]
    labels[scalp] = LABELS["scalp"]

    fdg_values = {name: rng.uniform(*bounds) for name, bounds in fdg_activity.items()}
    amyloid_positive = bool(rng.random() < 0.5)
    amyloid_values = {name: rng.uniform(*bounds) for name, bounds in AMYLOID_OTHER.items()}
    amyloid_values["grey_matter"] = rng.uniform(*(AMYLOID_POSITIVE_GREY if amyloid_positive
                                                  else AMYLOID_NEGATIVE_GREY))

    def activity(values: dict[str, float]) -> np.ndarray:
        image = (grey * values["grey_matter"] + white * values["white_matter"] + (csf + gap) * values["csf"]
                 + skull * values["skull"] + scalp * values["scalp"])
        return image.astype(np.float32)

    fdg, amyloid = activity(fdg_values), activity(amyloid_values)
    masks, kinds = _lesions(rng, grid, points, brain, lesions, lesion_kinds)
    for mask, kind in zip(masks, kinds):
        factor = rng.uniform(1.5, 2.5) if kind == "hot" else rng.uniform(0.2, 0.5)
        fdg[mask] = factor * fdg_values["grey_matter"] if kind == "hot" else factor * fdg_values["white_matter"]
        amyloid[mask] = factor * amyloid_values["white_matter"]

    bias = 1 + 0.05 * _smooth_field(rng, grid, 1)[0]
    gain = rng.uniform(0.9, 1.1)
    t1 = gain * bias * (t1_brain * (brain >= 0.5) + 0.1 * gap + 0.05 * skull + 0.6 * scalp)
    t2 = gain * bias * activity(T2_WEIGHTED)
    mu_map = np.where(labels == LABELS["skull"], MU_BONE, np.where(labels > 0, MU_SOFT_TISSUE, 0.0))
    return Subject(seed=int(seed), affine=grid.affine, t1=t1.astype(np.float32), t2=t2.astype(np.float32), fdg=fdg,
                   amyloid=amyloid, mu_map=mu_map.astype(np.float32), labels=labels, grey_matter=grey.astype(np.float32),
                   white_matter=white.astype(np.float32), lesion_masks=masks, lesion_kinds=kinds,
                   amyloid_positive=amyloid_positive, scale=scale)


# ---------------------------------------------------------------------------------------------- internals
@dataclass(frozen=True)
class _Templates:
    volumes: dict[str, np.ndarray]  # prefiltered 1 mm templates
    inverse_affine: np.ndarray  # RAS mm -> template voxel
    brain_centre: np.ndarray  # centre of the brain's bounding box (mm)


@lru_cache(maxsize=4)
def _templates(voxel_size_mm: tuple[float, float, float]) -> _Templates:
    """MNI152 2009 1 mm templates, low-pass filtered so that sampling them at ``voxel_size_mm`` approximates
    averaging over the target voxel (a box of width v has the variance of a Gaussian with σ = v / √12)."""
    from nilearn import datasets

    images = {"t1": datasets.load_mni152_template(resolution=1),
              "grey_matter": datasets.load_mni152_gm_template(resolution=1),
              "white_matter": datasets.load_mni152_wm_template(resolution=1),
              "brain": datasets.load_mni152_brain_mask(resolution=1)}
    affine = images["t1"].affine
    spacing = np.abs(np.diag(affine)[:3])
    sigma = [np.sqrt(max(v ** 2 - s ** 2, 0.0) / 12) / s for v, s in zip(voxel_size_mm, spacing)]
    volumes = {name: ndimage.gaussian_filter(image.get_fdata(dtype=np.float32), sigma, mode="constant")
               for name, image in images.items()}
    brain = volumes["brain"] > 0.5
    # The template cuts the brainstem at its lower edge; the box spans cerebrum and cerebellum, from the lowest
    # axial slice wider (in x) than the brainstem.
    widths = brain.any(axis=1).sum(axis=0) * spacing[0]
    lowest = np.flatnonzero(widths > BRAINSTEM_WIDTH_MM)[0]
    index = np.argwhere(brain[:, :, lowest:]) + [0, 0, lowest]
    corners = np.stack([index.min(0), index.max(0)]).T
    centre = affine[:3, :3] @ corners.mean(1) + affine[:3, 3]
    return _Templates(volumes, np.linalg.inv(affine), centre)


def _sampler(templates: _Templates, source_mm: np.ndarray):
    """Linear interpolation of a template at RAS points (3, ...) (0 outside)."""
    voxels = np.tensordot(templates.inverse_affine[:3, :3], source_mm, axes=1)
    voxels += templates.inverse_affine[:3, 3][:, None, None, None]

    def sample(name: str) -> np.ndarray:
        return ndimage.map_coordinates(templates.volumes[name], voxels, order=1, mode="constant", cval=0.0)

    return sample


def _grid_points_mm(grid: ImageGrid) -> np.ndarray:
    return np.stack(np.meshgrid(*[grid.axis_mm(axis) for axis in range(3)], indexing="ij"))


def _smooth_field(rng: np.random.Generator, grid: ImageGrid, components: int,
                  control_spacing_mm: float = 40.0) -> np.ndarray:
    """Smooth random field (components, nx, ny, nz) with unit maximum magnitude, from random values on a coarse
    control grid upsampled with cubic splines."""
    extent = np.asarray(grid.shape) * np.asarray(grid.voxel_size_mm)
    coarse = np.maximum(2, np.ceil(extent / control_spacing_mm).astype(int) + 1)
    values = rng.standard_normal((components, *coarse))
    field = np.stack([ndimage.zoom(v, np.asarray(grid.shape) / coarse, order=3, mode="nearest",
                                   grid_mode=True) for v in values])
    return field / max(np.abs(field).max(), 1e-12)


def _random_diffeomorphism(rng: np.random.Generator, grid: ImageGrid, amplitude_mm: float = WARP_AMPLITUDE_MM,
                           squarings: int = 6) -> np.ndarray:
    """Displacement u (3, nx, ny, nz) in mm of exp(v) for a smooth random velocity v (largest component
    ``amplitude_mm``), by scaling and squaring: u ← u + u ∘ (id + u), starting from v / 2^K. Each small step is
    invertible, so the result is too."""
    spacing = np.asarray(grid.voxel_size_mm)[:, None, None, None]
    displacement = _smooth_field(rng, grid, 3) * amplitude_mm / 2 ** squarings
    identity = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in grid.shape], indexing="ij"))
    for _ in range(squarings):
        where = identity + displacement / spacing
        displacement = displacement + np.stack([ndimage.map_coordinates(component, where, order=1, mode="nearest")
                                                for component in displacement])
    return displacement


def _lesions(rng: np.random.Generator, grid: ImageGrid, points: np.ndarray, brain: np.ndarray, count: int,
             kinds: str) -> tuple[np.ndarray, list[str]]:
    """Random ellipsoids (radii 4-9 mm, random orientation) fully inside the brain."""
    masks = np.zeros((count, *grid.shape), dtype=bool)
    depth = ndimage.distance_transform_edt(brain >= 0.5, sampling=grid.voxel_size_mm)
    chosen = []
    for index in range(count):
        radii = rng.uniform(4.0, 9.0, size=3)
        candidates = np.argwhere(depth > radii.max() + 2.0)
        if len(candidates) == 0:
            raise InputError(f"grid {grid.shape} at {grid.voxel_size_mm} mm leaves no room for a lesion of "
                             f"{radii.max():.1f} mm inside the brain")
        for _ in range(100):  # keep lesions apart so each mask measures one lesion
            centre = points[(slice(None), *candidates[rng.integers(len(candidates))])]
            if all(np.linalg.norm(centre - other) > 20.0 for other in chosen):
                break
        chosen.append(centre)
        rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        local = np.tensordot(rotation.T, points - centre[:, None, None, None], axes=1)
        masks[index] = (((local / radii[:, None, None, None]) ** 2).sum(0) <= 1) & (brain >= 0.5)
    names = [("hot", "cold")[i % 2] if kinds == "mixed" else kinds for i in range(count)]
    return masks, names
