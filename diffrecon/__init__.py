"""diffrecon: PET and MRI reconstruction with diffusion-model priors.

Array convention everywhere in the package: spatial axes in NIfTI/MONAI order (x, y, z) with a RAS affine,
optional leading batch (and channel) dimensions. Sinograms are (..., n_sinograms, n_views, n_bins).
"""
from __future__ import annotations

__version__ = "0.1.0.dev0"
