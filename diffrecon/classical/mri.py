"""Classical MRI reconstruction: zero-filled (RSS or SENSE combine) and CG-SENSE (Pruessmann et al. 2001).

Each function takes the k-space y and the acquisition operator A (:class:`MRIOperator`, single-coil or SENSE)
and returns an :class:`MRIReconstruction`: a complex image (..., *spatial) and the objective per iteration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from diffrecon.checks import InputError, check_choice
from diffrecon.physics.mri_coils import rss, sense_combine
from diffrecon.physics.mri_operators import MRIOperator

COMBINES = ("rss", "sense")


@dataclass
class MRIReconstruction:
    """A complex image and the objective after each iteration (empty for non-iterative methods)."""

    image: torch.Tensor
    objective: list[float] = field(default_factory=list)


def zero_filled(kspace: torch.Tensor, operator: MRIOperator, combine: str = "rss") -> MRIReconstruction:
    """Inverse FFT of the zero-filled k-space, coils combined by root-sum-of-squares (a magnitude image, zero
    phase) or by the coil maps (``"sense"``: Σ conj(S) x_c / Σ |S|²). Single-coil data need no combination."""
    check_choice("combine", combine, COMBINES)
    operator.check_kspace(kspace)
    images = operator.coil_images(kspace)
    if operator.coil_maps is None:
        return MRIReconstruction(images)
    if combine == "rss":
        return MRIReconstruction(rss(images, operator.ndim).to(images.dtype))
    return MRIReconstruction(sense_combine(images, operator.coil_maps.to(images.device), operator.ndim))


def data_fit(kspace: torch.Tensor, operator: MRIOperator, image: torch.Tensor) -> torch.Tensor:
    """½‖A x − y‖² summed over every leading (batch) dimension."""
    return 0.5 * (operator.A(image) - operator.apply_mask(kspace)).abs().pow(2).sum()


def conjugate_gradient(system, rhs: torch.Tensor, initial: torch.Tensor, iterations: int, batch_ndim: int = 0,
                       callback=None) -> torch.Tensor:
    """Solve ``system(x) = rhs`` (a Hermitian positive semi-definite linear map) by conjugate gradients from
    ``initial``, separately for each index of the first ``batch_ndim`` dimensions (so batched samples do not
    share step sizes). An item stops once its residual reaches float precision or its search direction lies in
    the system's null space to float precision (for a projection, such as single-coil AᴴA, that is after one
    step: what is left is rounding noise, which a further step would amplify); ``callback(x)`` runs after every
    iteration."""
    dims = tuple(range(batch_ndim, rhs.ndim))

    def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a.conj() * b).real.sum(dims, keepdim=True)

    x = initial.to(rhs).clone()
    residual = rhs - system(x)
    direction = residual.clone()
    energy = dot(residual, residual)
    eps = torch.finfo(rhs.real.dtype).eps
    tolerance = dot(rhs, rhs) * eps ** 2
    first_curvature = None  # Rayleigh quotient of the first direction: the system's scale
    for _ in range(int(iterations)):
        active = energy > tolerance
        if not active.any():
            break
        q = system(direction)
        length = dot(direction, direction)
        curvature = dot(direction, q)
        if first_curvature is None:
            first_curvature = curvature / length.clamp_min(torch.finfo(length.dtype).tiny)
        active &= curvature > 100 * eps * first_curvature * length
        if not active.any():
            break
        step = torch.where(active, energy / torch.where(active, curvature, 1.0), 0.0)
        x = x + step * direction
        residual = residual - step * q
        new_energy = dot(residual, residual)
        direction = residual + torch.where(active, new_energy / torch.where(active, energy, 1.0), 0.0) * direction
        energy = new_energy
        if callback is not None:
            callback(x)
    return x


def cg_sense(kspace: torch.Tensor, operator: MRIOperator, iterations: int = 10, lam: float = 0.0,
             initial: torch.Tensor | None = None) -> MRIReconstruction:
    """Conjugate gradients on (AᴴA + λI) x = Aᴴ y, i.e. min ½‖A x − y‖² + λ/2 ‖x‖².

    Without Tikhonov regularisation (λ = 0) the number of iterations regularises: early stopping keeps the
    noise amplification of undersampled SENSE in check.

    Args:
        kspace: measured k-space (..., [n_coils,] *spatial).
        operator: the acquisition model A.
        iterations: CG iterations (>= 1).
        lam: Tikhonov weight λ >= 0.
        initial: start image (default zeros).
    """
    if int(iterations) < 1:
        raise InputError(f"iterations must be >= 1, got {iterations}")
    if not lam >= 0:
        raise InputError(f"lam must be >= 0, got {lam!r}")
    operator.check_kspace(kspace)
    rhs = operator.A_adjoint(kspace)
    objective: list[float] = []

    def record(x: torch.Tensor) -> None:
        objective.append(float(data_fit(kspace, operator, x) + 0.5 * lam * x.abs().pow(2).sum()))

    x = conjugate_gradient(lambda v: operator.normal(v) + lam * v, rhs,
                           torch.zeros_like(rhs) if initial is None else initial, iterations, callback=record)
    return MRIReconstruction(x, objective)
