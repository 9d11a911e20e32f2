"""Classical PET reconstructions as methods: MLEM, OSEM, MAP-EM with the relative difference prior, Bowsher.

Thin adapters from the :class:`~diffrecon.methods.base.Method` call shape to :mod:`diffrecon.classical.pet`;
the penalties are built at call time, when the physics gives the image grid.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffrecon.checks import check_at_least, check_integer
from diffrecon.classical.penalties import (NeighbourhoodPenalty, QuadraticPenalty, RelativeDifferencePenalty,
                                           bowsher_selection)
from diffrecon.classical.pet import map_em, reconstruct_pet
from diffrecon.methods.base import Method, Reconstruction
from diffrecon.physics.pet import PETAcquisitionModel
from diffrecon.physics.psf import GaussianPSF


class _EMMethod(Method):
    """(OS)EM or, with a penalty, BSREM on ``measured`` counts through a :class:`PETAcquisitionModel`; the
    unpenalised ones optionally post-filtered, as clinical OSEM is."""

    modality = "PT"
    deterministic = True

    def __init__(self, iterations: int, subsets: int, progress: bool = True, post_filter_mm: float = 0.0) -> None:
        self.iterations, self.subsets = check_integer("iterations", iterations), check_integer("subsets", subsets)
        self.post_filter_mm = check_at_least("post_filter_mm", post_filter_mm)
        self.progress = bool(progress)

    def penalty(self, model: PETAcquisitionModel) -> NeighbourhoodPenalty | None:
        """The MAP penalty on ``model``'s grid (None: maximum likelihood)."""
        return None

    def settings(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "subsets": self.subsets}

    def description(self) -> str:
        subsets = f" x {self.subsets} subsets" if self.subsets > 1 else ""
        post_filter = f", {self.post_filter_mm:g} mm Gaussian post-filter" if self.post_filter_mm else ""
        return f"{self.name.upper()} {self.iterations} iterations{subsets}{post_filter}"

    def reconstruct(self, data: torch.Tensor, physics: PETAcquisitionModel, num_samples: int,
                    generator: torch.Generator | None) -> Reconstruction:
        data = physics.check_data(data, "measured sinogram")
        penalty = self.penalty(physics)
        options = {"iterations": self.iterations, "n_subsets": self.subsets, "progress": self.progress,
                   "description": self.description()}
        if penalty is None:
            result = reconstruct_pet(data, physics, **options)
        else:
            result = map_em(data, physics, penalty, **options)
        report: dict[str, Any] = {"log_likelihood": result.log_likelihood, "network_evaluations": 0}
        if result.objective:
            report["objective"] = result.objective
        return Reconstruction(self._post_filter(result.image, physics), report=report)

    def _post_filter(self, image: torch.Tensor, physics: PETAcquisitionModel) -> torch.Tensor:
        """``image`` blurred by a Gaussian of FWHM ``post_filter_mm``, normalised by the blur of ones, so that
        slices at the edge of the field of view (or a single slice) are not darkened by the zero padding."""
        if not self.post_filter_mm:
            return image
        blur = GaussianPSF(self.post_filter_mm, physics.grid.voxel_size_mm)
        return blur(image) / blur(torch.ones_like(image))


class MLEM(_EMMethod):
    """Maximum-likelihood EM (Shepp & Vardi 1982): OSEM with one subset; ``post_filter_mm`` as :class:`OSEM`."""

    name = "mlem"

    def __init__(self, iterations: int = 30, progress: bool = True, post_filter_mm: float = 0.0) -> None:
        super().__init__(iterations, 1, progress, post_filter_mm)

    def settings(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "post_filter_mm": self.post_filter_mm}


class OSEM(_EMMethod):
    """Ordered-subsets EM (Hudson & Larkin 1994), with an optional Gaussian post-filter of FWHM
    ``post_filter_mm`` (0: none), the clinical way to trade noise for resolution."""

    name = "osem"

    def __init__(self, iterations: int = 4, subsets: int = 8, progress: bool = True,
                 post_filter_mm: float = 0.0) -> None:
        super().__init__(iterations, subsets, progress, post_filter_mm)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "post_filter_mm": self.post_filter_mm}


class MAPRDP(_EMMethod):
    """MAP-EM (BSREM) with the relative difference prior (Nuyts et al. 2002) of strength ``beta`` and edge
    preservation ``gamma``."""

    name = "map-rdp"

    # β 0.3: the best brain NRMSE of β 0.03-10 on validation subjects 10000-10002 (demo2d phantoms, 0.1%, 1%, 10%
    # and full counts; docs/robustness.md) and the demo's β (training subjects 0-1, 3D demo scanner, 1%;
    # pipeline.DEMO_RDP_BETA). In 3D, validation subject 10000 at 1% and 10% preferred 0.1 of 0.1-1. β acts on
    # activity in the demo's units: data on another scale need their own.
    def __init__(self, beta: float = 0.3, gamma: float = 2.0, iterations: int = 10, subsets: int = 8,
                 progress: bool = True) -> None:
        super().__init__(iterations, subsets, progress)
        self.beta, self.gamma = check_at_least("beta", beta), check_at_least("gamma", gamma)

    def settings(self) -> dict[str, Any]:
        return {"beta": self.beta, "gamma": self.gamma, **super().settings()}

    def description(self) -> str:
        return f"{super().description()} beta={self.beta:g}"

    def penalty(self, model: PETAcquisitionModel) -> NeighbourhoodPenalty:
        return RelativeDifferencePenalty(self.beta, model.grid.shape, model.grid.voxel_size_mm, gamma=self.gamma)


class Bowsher(_EMMethod):
    """MAP-EM with a quadratic penalty over the ``neighbours`` (of 26) most similar neighbours in the anatomical
    image ``mr`` (Bowsher et al. 2004), an (nx, ny, nz) array on the reconstruction grid."""

    name = "bowsher"

    def __init__(self, mr: np.ndarray | torch.Tensor, beta: float = 0.05, neighbours: int = 8, iterations: int = 10,
                 subsets: int = 8, progress: bool = True) -> None:
        super().__init__(iterations, subsets, progress)
        self.beta, self.neighbours = check_at_least("beta", beta), check_integer("neighbours", neighbours)
        self.selection = bowsher_selection(torch.as_tensor(np.asarray(mr, dtype=np.float32)), self.neighbours)

    def settings(self) -> dict[str, Any]:
        return {"beta": self.beta, "neighbours": self.neighbours, **super().settings()}

    def description(self) -> str:
        return f"{super().description()} beta={self.beta:g}"

    def penalty(self, model: PETAcquisitionModel) -> NeighbourhoodPenalty:
        return QuadraticPenalty(self.beta, model.grid.shape, model.grid.voxel_size_mm, selection=self.selection)
