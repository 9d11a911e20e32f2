"""Classical MRI reconstructions as methods: zero-filled, CG-SENSE and TV compressed sensing.

Thin adapters from the :class:`~diffrecon.methods.base.Method` call shape to :mod:`diffrecon.classical.mri`
and :mod:`diffrecon.classical.mri_tv`. Each returns the complex image as ``mean``.
"""
from __future__ import annotations

from typing import Any

import torch

from diffrecon.checks import check_at_least, check_choice, check_integer, check_positive
from diffrecon.classical.mri import COMBINES, MRIReconstruction, cg_sense, zero_filled
from diffrecon.classical.mri_tv import tv_reconstruct
from diffrecon.methods.base import Method, Reconstruction
from diffrecon.physics.mri_operators import MRIOperator


class _MRIMethod(Method):
    modality = "MR"
    deterministic = True

    def reconstruct(self, data: torch.Tensor, physics: MRIOperator, num_samples: int,
                    generator: torch.Generator | None) -> Reconstruction:
        result = self.solve(physics.check_kspace(data), physics)
        return Reconstruction(result.image, report={"objective": result.objective, "network_evaluations": 0})

    def solve(self, kspace: torch.Tensor, operator: MRIOperator) -> MRIReconstruction:
        raise NotImplementedError


class ZeroFilled(_MRIMethod):
    """Inverse FFT of the zero-filled k-space; coils combined by root-sum-of-squares or by the coil maps."""

    name = "zero-filled"

    def __init__(self, combine: str = "rss") -> None:
        self.combine = check_choice("combine", combine, COMBINES)

    def settings(self) -> dict[str, Any]:
        return {"combine": self.combine}

    def description(self) -> str:
        return "ZERO-FILLED"

    def solve(self, kspace: torch.Tensor, operator: MRIOperator) -> MRIReconstruction:
        return zero_filled(kspace, operator, self.combine)


class CGSENSE(_MRIMethod):
    """Conjugate gradients on the SENSE normal equations (Pruessmann et al. 2001); early stopping (few
    ``iterations``) or Tikhonov weight ``lam`` regularise."""

    name = "cg-sense"

    def __init__(self, iterations: int = 4, lam: float = 0.0) -> None:
        self.iterations, self.lam = check_integer("iterations", iterations), check_at_least("lam", lam)

    def settings(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "lam": self.lam}

    def description(self) -> str:
        return f"CG-SENSE {self.iterations} iterations"

    def solve(self, kspace: torch.Tensor, operator: MRIOperator) -> MRIReconstruction:
        return cg_sense(kspace, operator, self.iterations, self.lam)


class TV(_MRIMethod):
    """Total-variation compressed sensing by PDHG; ``lam`` is the TV weight relative to max|Aᴴy|."""

    name = "tv"

    def __init__(self, lam: float = 0.005, iterations: int = 200) -> None:
        check_positive("lam", lam)
        self.lam, self.iterations = float(lam), check_integer("iterations", iterations)

    def settings(self) -> dict[str, Any]:
        return {"lam": self.lam, "iterations": self.iterations}

    def description(self) -> str:
        return f"TV {self.iterations} iterations lam={self.lam:g}"

    def solve(self, kspace: torch.Tensor, operator: MRIOperator) -> MRIReconstruction:
        return tv_reconstruct(kspace, operator, lam=self.lam, iterations=self.iterations)
