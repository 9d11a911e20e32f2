"""MONAI transforms for PET/MRI data (see DESIGN.md): intensity normalisation and augmentation,
generic objects and field-of-view edges in training slices, slice sampling in any orientation, and simulated
PET acquisition.
Datasets built from them live in ``diffrecon.data.datasets``."""
from __future__ import annotations

from diffrecon.transforms.acquisition import SimulatePETd
from diffrecon.transforms.intensity import (EmissionNormalize, EmissionNormalized, MagnitudeNormalize,
                                            MagnitudeNormalized, MagnitudePeakNormalize, MagnitudePeakNormalized, RandHalo, RandHalod, RandIntensityFactor,
                                            RandIntensityFactord, RandResolution, RandResolutiond, emission_mean,
                                            gaussian_blur)
from diffrecon.transforms.shapes import RandAxialEdged, RandShapesd, random_shapes_image
from diffrecon.transforms.slicing import ORIENTATIONS, RandSliced, foreground_slices, take_slice

__all__ = ["ORIENTATIONS", "EmissionNormalize", "EmissionNormalized", "MagnitudeNormalize", "MagnitudeNormalized",
           "MagnitudePeakNormalize", "MagnitudePeakNormalized",
           "RandHalo", "RandHalod", "SimulatePETd", "RandIntensityFactor", "RandIntensityFactord", "RandResolution", "RandResolutiond",
           "RandAxialEdged", "RandShapesd", "RandSliced", "emission_mean", "foreground_slices", "gaussian_blur", "random_shapes_image",
           "take_slice"]
