"""MONAI transforms for PET/MRI data (see DESIGN.md): intensity normalisation and augmentation,
and slice sampling in any orientation.
Datasets built from them live in ``diffrecon.data.datasets``."""
from __future__ import annotations

from diffrecon.transforms.intensity import (EmissionNormalize, EmissionNormalized, MagnitudeNormalize,
                                            MagnitudeNormalized, RandHalo, RandHalod, RandIntensityFactor,
                                            RandIntensityFactord, RandResolution, RandResolutiond, emission_mean,
                                            gaussian_blur)
from diffrecon.transforms.slicing import ORIENTATIONS, RandSliced, foreground_slices, take_slice

__all__ = ["ORIENTATIONS", "EmissionNormalize", "EmissionNormalized", "MagnitudeNormalize", "MagnitudeNormalized",
           "RandHalo", "RandHalod", "RandIntensityFactor", "RandIntensityFactord", "RandResolution", "RandResolutiond",
           "RandSliced", "emission_mean", "foreground_slices", "gaussian_blur", "take_slice"]
