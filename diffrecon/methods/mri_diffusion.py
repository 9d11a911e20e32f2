"""What the data-consistent diffusion MRI methods (Score-MRI, DDS) share beyond the sampler and the MRI space:
data consistency by conjugate gradients, optionally with total variation along the slice axis for volumes and
within the image plane.

Volumes (x, y, z) are scored slice by slice and coupled along z by total variation in the data-consistency step
(DiffusionMBIR, Chung et al. 2023; the 3D solver of DDS). The same ADMM coupling within the image plane
(``plane_tv``) is our addition: the prior, trained on phantoms, leaves noise in flat regions that a little TV
removes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from diffrecon.checks import InputError, check_at_least, check_integer
from diffrecon.classical.mri import conjugate_gradient
from diffrecon.classical.mri_tv import AxisTV
from diffrecon.physics.mri_operators import MRIOperator


def solve_consistency(start: torch.Tensor, kspace: torch.Tensor, operator: MRIOperator, iterations: int,
                      mu: float | torch.Tensor = 0.0, anchor: torch.Tensor | None = None,
                      couplings: Sequence[AxisTV] = (), batch_ndim: int = 1, admm_iterations: int = 1) -> torch.Tensor:
    """CG from ``start`` on (μI + AᴴA [+ Σ ρD_aᴴD_a]) x = μ anchor + Aᴴy [+ Σ ρD_aᴴ(v_a − u_a)], per batch item
    (μ: one for all or broadcastable per item);
    real images stay real (the system restricted to real images). The ``couplings``' splits are updated after
    each solve; with couplings, ``admm_iterations`` such solve-and-update rounds."""
    project = (lambda v: v) if start.is_complex() else (lambda v: v.real)
    data_rhs = project(operator.A_adjoint(kspace)).expand_as(start)
    if torch.is_tensor(mu) or mu:
        data_rhs = data_rhs + mu * anchor

    def system(v: torch.Tensor) -> torch.Tensor:
        out = project(operator.normal(v)) + mu * v
        for coupling in couplings:
            out = out + coupling.system(v)
        return out

    x = start
    for _ in range(admm_iterations if couplings else 1):
        rhs = data_rhs
        for coupling in couplings:
            rhs = rhs + coupling.rhs(x)
        x = conjugate_gradient(system, rhs, x, iterations, batch_ndim)
        for coupling in couplings:
            coupling.update(x)
    return x


class TotalVariationCouplings:
    """The total-variation couplings of the data-consistency step (module notes).

    Args:
        slice_tv: weight of total variation along z for volumes (x, y, z), in prior units (0: slices independent).
        slice_rho: ADMM penalty of that coupling.
        plane_tv: weight of (anisotropic) total variation in the image plane (x, y), in prior units (0: none); our
            choice, the same ADMM coupling in the slice's own axes.
        plane_rho: ADMM penalty of that coupling.
        tv_iterations: ADMM iterations of these couplings per reverse step, each a data-consistency solve
            (DiffusionMBIR takes one; more converge the total variation further, at the cost of more FFTs).
    """

    def __init__(self, slice_tv: float, slice_rho: float, plane_tv: float, plane_rho: float,
                 tv_iterations: int) -> None:
        self.slice_tv, self.slice_rho = _coupling_weights("slice", slice_tv, slice_rho)
        self.plane_tv, self.plane_rho = _coupling_weights("plane", plane_tv, plane_rho)
        self.tv_iterations = check_integer("tv_iterations", tv_iterations)

    def settings(self) -> dict[str, Any]:
        return {"slice_tv": self.slice_tv, "slice_rho": self.slice_rho, "plane_tv": self.plane_tv,
                "plane_rho": self.plane_rho, "tv_iterations": self.tv_iterations}

    def new(self, operator: MRIOperator) -> list[AxisTV]:
        """Fresh couplings for one call: in the image plane with ``plane_tv`` > 0, along z for volumes with
        ``slice_tv`` > 0 (images are (..., x, y[, z]))."""
        couplings = []
        if self.plane_tv > 0:
            couplings.append(AxisTV(self.plane_tv, self.plane_rho, (-operator.ndim, -operator.ndim + 1)))
        if self.slice_tv > 0 and operator.ndim == 3:
            couplings.append(AxisTV(self.slice_tv, self.slice_rho, (-1,)))
        return couplings


def _coupling_weights(name: str, weight: float, rho: float) -> tuple[float, float]:
    """``{name}_tv`` and ``{name}_rho`` checked: both >= 0, ρ > 0 where the coupling is on."""
    weight, rho = check_at_least(f"{name}_tv", weight), check_at_least(f"{name}_rho", rho)
    if weight > 0 and rho <= 0:
        raise InputError(f"{name}_rho must be > 0 with {name}_tv > 0, got {rho!r}")
    return weight, rho
