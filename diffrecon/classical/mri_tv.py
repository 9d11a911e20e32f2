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


def gradient(image: torch.Tensor, ndim: int) -> torch.Tensor:
    """Forward differences along the last ``ndim`` axes, stacked first: (ndim, ..., *spatial)."""
    parts = []
    for axis in range(-ndim, 0):
        diff = torch.diff(image, dim=axis)
        parts.append(torch.cat([diff, torch.zeros_like(diff.narrow(axis, 0, 1))], dim=axis))
    return torch.stack(parts)


def gradient_adjoint(field: torch.Tensor, ndim: int) -> torch.Tensor:
    """Adjoint of :func:`gradient` (minus the divergence)."""
    total = torch.zeros_like(field[0])
    for index, axis in enumerate(range(-ndim, 0)):
        g = field[index].narrow(axis, 0, field.shape[axis] - 1)
        padded = torch.cat([torch.zeros_like(g.narrow(axis, 0, 1)), g, torch.zeros_like(g.narrow(axis, 0, 1))], axis)
        total = total - torch.diff(padded, dim=axis)
    return total


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
