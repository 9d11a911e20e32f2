"""TV-regularised compressed sensing MRI by primal-dual hybrid gradient (Chambolle & Pock 2011).

Solves min_x ½‖A x − y‖² + w ‖∇x‖₁ (isotropic TV on the complex image, forward differences, Neumann
boundary) with both terms dualised, so any :class:`MRIOperator` (single-coil or SENSE) works without an inner
solver. The weight is w = ``lam`` · max|Aᴴy| so that ``lam`` does not depend on the data's units.
"""
from __future__ import annotations

import torch

from diffrecon.checks import InputError
from diffrecon.classical.mri import MRIReconstruction, data_fit
from diffrecon.physics.mri_operators import MRIOperator


def forward_difference(x: torch.Tensor, axis: int) -> torch.Tensor:
    """Forward difference of ``x`` along ``axis``, D_a x, zero at the axis' last index (same shape as ``x``)."""
    return torch.cat((torch.diff(x, dim=axis), torch.zeros_like(x.narrow(axis, 0, 1))), axis)


def forward_difference_adjoint(d: torch.Tensor, axis: int) -> torch.Tensor:
    """Adjoint of :func:`forward_difference`, D_aᴴ d."""
    inner = d.narrow(axis, 0, d.shape[axis] - 1)
    zero = torch.zeros_like(d.narrow(axis, 0, 1))
    return torch.cat((zero, inner), axis) - torch.cat((inner, zero), axis)


def gradient(image: torch.Tensor, ndim: int) -> torch.Tensor:
    """Forward differences along the last ``ndim`` axes, stacked first: (ndim, ..., *spatial)."""
    return torch.stack([forward_difference(image, axis) for axis in range(-ndim, 0)])


def gradient_adjoint(field: torch.Tensor, ndim: int) -> torch.Tensor:
    """Adjoint of :func:`gradient` (minus the divergence)."""
    return sum(forward_difference_adjoint(field[index], axis) for index, axis in enumerate(range(-ndim, 0)))


class AxisTV:
    """Anisotropic total variation along ``axes`` of the images by ADMM with the splits v_a = D_a x, one ADMM
    iteration per call of :meth:`update` (DiffusionMBIR along z; DDS in 3D): the x-update adds ρ Σ D_aᴴ D_a to a
    least-squares system and ρ Σ D_aᴴ (v_a − u_a) to its right-hand side, then v_a = soft(D_a x + u_a, weight / ρ)
    and u_a += D_a x − v_a. Weight and ρ are in the images' units."""

    def __init__(self, weight: float, rho: float, axes: tuple[int, ...]) -> None:
        self.weight, self.rho, self.axes = float(weight), float(rho), tuple(axes)
        self.splits: list[torch.Tensor] | None = None
        self.duals: list[torch.Tensor] | None = None

    def system(self, x: torch.Tensor) -> torch.Tensor:
        return self.rho * sum(forward_difference_adjoint(forward_difference(x, axis), axis) for axis in self.axes)

    def rhs(self, like: torch.Tensor) -> torch.Tensor:
        if self.splits is None:
            return torch.zeros_like(like)
        return self.rho * sum(forward_difference_adjoint(split - dual, axis)
                              for split, dual, axis in zip(self.splits, self.duals, self.axes))

    def update(self, x: torch.Tensor) -> None:
        splits, duals = [], []
        for index, axis in enumerate(self.axes):
            v = forward_difference(x, axis)
            if self.duals is not None:
                v = v + self.duals[index]
            split = v * (1 - self.weight / self.rho / v.abs().clamp_min(1e-12)).clamp_min(0)
            splits.append(split)
            duals.append(v - split)
        self.splits, self.duals = splits, duals


def total_variation(image: torch.Tensor, ndim: int) -> torch.Tensor:
    """Isotropic total variation Σ ‖∇x‖₂ over voxels (and batch)."""
    return gradient(image, ndim).abs().pow(2).sum(0).sqrt().sum()


def operator_norm_squared(operator: MRIOperator, like: torch.Tensor, iterations: int = 20) -> float:
    """‖A‖² by power iteration on AᴴA (seeded, on ``like``'s device and dtype)."""
    generator = torch.Generator(device=like.device).manual_seed(0)
    x = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
    value = 1.0
    for _ in range(iterations):
        x = operator.normal(x / x.abs().pow(2).sum().sqrt())
        value = float(x.abs().pow(2).sum().sqrt())
    return value


def tv_reconstruct(kspace: torch.Tensor, operator: MRIOperator, lam: float = 0.01, iterations: int = 200,
                   initial: torch.Tensor | None = None) -> MRIReconstruction:
    """TV compressed sensing by PDHG; returns the image and ½‖A x − y‖² + w TV(x) after each iteration.

    Args:
        kspace: measured k-space (..., [n_coils,] *spatial).
        operator: the acquisition model A.
        lam: TV weight relative to max|Aᴴy| (> 0).
        iterations: PDHG iterations (>= 1).
        initial: start image (default Aᴴy).
    """
    if int(iterations) < 1:
        raise InputError(f"iterations must be >= 1, got {iterations}")
    if not lam > 0:
        raise InputError(f"lam must be > 0, got {lam!r}")
    operator.check_kspace(kspace)
    ndim = operator.ndim
    measured = operator.apply_mask(kspace)
    x = operator.A_adjoint(measured)
    weight = lam * float(x.abs().max())
    if initial is not None:
        x = initial.to(x).clone()
    step = 0.99 / (operator_norm_squared(operator, x) * 1.01 + 4 * ndim) ** 0.5
    dual_data = torch.zeros_like(measured)
    dual_grad = torch.zeros_like(gradient(x, ndim))
    x_bar = x
    objective = []
    for _ in range(int(iterations)):
        dual_data = (dual_data + step * (operator.A(x_bar) - measured)) / (1 + step)
        dual_grad = dual_grad + step * gradient(x_bar, ndim)
        dual_grad = dual_grad / (dual_grad.abs().pow(2).sum(0).sqrt() / weight).clamp_min(1)
        x_new = x - step * (operator.A_adjoint(dual_data) + gradient_adjoint(dual_grad, ndim))
        x_bar = 2 * x_new - x
        x = x_new
        objective.append(float(data_fit(kspace, operator, x) + weight * total_variation(x, ndim)))
    return MRIReconstruction(x, objective)
