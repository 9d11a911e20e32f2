"""Simulated acquisition as a MONAI transform: a PET scan of an item's activity image on a scanner preset, with
fresh Poisson noise at every call, for training on pairs (a reference image and its measurement) that the
simulator makes on the fly (PET-DEFT, issue 31)."""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

from diffrecon.checks import InputError, check_device, check_positive
from diffrecon.physics.geometry import get_preset
from diffrecon.physics.pet_simulation import count_fraction, simulate_pet


class SimulatePETd(Randomizable, MapTransform):
    """Scan ``activity_key`` (an (nx, ny, nz) or channel-first (1, nx, ny, nz) image on ``preset``'s grid) with
    attenuation from ``mu_map_key`` at
    ``count_level``: adds ``sinogram_key`` (the Poisson counts, drawn anew at every call from the transform's random
    state) and ``physics_key`` (the :class:`~diffrecon.physics.pet.PETAcquisitionModel` the counts were measured
    through, PSF included).

    Args:
        activity_key, mu_map_key: the item's activity and μ-map (1/mm) keys.
        preset: the scanner and grid preset (e.g. "demo", "demo2d").
        count_level: the dose, as ``diffrecon simulate`` takes it ("1%", "0.3%", a fraction).
        psf_fwhm_mm: the scanner's resolution (None: none).
        sinogram_key, physics_key: where the counts and the model go.
        device: where the scan is made and the model lives (the training device).
    """

    def __init__(self, activity_key: str = "image", mu_map_key: str = "mu_map", preset: str = "demo",
                 count_level: str = "1%", psf_fwhm_mm: float | None = 4.5, sinogram_key: str = "sinogram",
                 physics_key: str = "physics", device: str | torch.device = "cpu") -> None:
        MapTransform.__init__(self, [activity_key, mu_map_key])
        self.activity_key, self.mu_map_key = activity_key, mu_map_key
        self.preset = get_preset(preset)
        count_fraction(count_level)  # refuses a bad dose here, before any data
        self.count_level = count_level
        self.psf_fwhm_mm = None if psf_fwhm_mm is None else check_positive("psf_fwhm_mm", psf_fwhm_mm)
        self.sinogram_key, self.physics_key = sinogram_key, physics_key
        self.device = check_device("device", device)
        self._seed = 0

    def randomize(self, data: Any = None) -> None:
        self._seed = int(self.R.randint(0, 2 ** 31 - 1))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        self.randomize()
        item = dict(data)
        activity, mu_map = (self._on_grid(item, key) for key in (self.activity_key, self.mu_map_key))
        scan = simulate_pet(activity, mu_map, self.preset.scanner, self.preset.grid, count_level=self.count_level,
                            psf_fwhm_mm=self.psf_fwhm_mm, seed=self._seed, device=self.device)
        item[self.sinogram_key], item[self.physics_key] = scan.measured, scan.model
        return item

    def _on_grid(self, item: Mapping[Hashable, Any], key: str) -> torch.Tensor:
        image = torch.as_tensor(np.asarray(item[key]), dtype=torch.float32, device=self.device)
        shape = self.preset.grid.shape
        if image.shape not in (torch.Size(shape), torch.Size((1, *shape))):
            raise InputError(f"{key} has shape {tuple(image.shape)}; expected {shape} or (1, *{shape}) (the "
                             f"{self.preset.scanner.name} grid)")
        return image.reshape(shape)
