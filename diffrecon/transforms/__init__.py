"""MONAI transforms for PET/MRI data (see DESIGN.md): intensity normalisation, slice sampling, training sources."""
from __future__ import annotations

from diffrecon.transforms.intensity import (EmissionNormalize, EmissionNormalized, MagnitudeNormalize,
                                            MagnitudeNormalized, RandIntensityFactor, RandIntensityFactord,
                                            emission_mean)
from diffrecon.transforms.slicing import RandSliced, foreground_slices, take_slice
from diffrecon.transforms.sources import nifti_items, phantom_items, training_items, validation_slices

__all__ = ["EmissionNormalize", "EmissionNormalized", "MagnitudeNormalize", "MagnitudeNormalized",
           "RandIntensityFactor", "RandIntensityFactord", "RandSliced", "emission_mean", "foreground_slices",
           "nifti_items", "phantom_items", "take_slice", "training_items", "validation_slices"]
