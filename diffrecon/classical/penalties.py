"""Penalties for MAP PET reconstruction: relative difference prior (RDP) and quadratic with uniform or MR-guided
(Bowsher) neighbour weights, a quadratic anchor to a given image, and sums of these.

Every penalty follows the :class:`Penalty` protocol, so :func:`diffrecon.classical.pet.em_ascent_step` takes
any of them (or a :class:`PenaltySum`)."""
from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from diffrecon.checks import InputError, check_finite, check_shape


@runtime_checkable
class Penalty(Protocol):
    """A penalty R(x) ≥ 0 subtracted from the log-likelihood, on images (B, nx, ny, nz).

    ``curvature`` is the diagonal of a Newton-like preconditioner: non-negative, and such that the gradient is
    curvature × (x − z) for some image z (for a neighbourhood penalty a weighted mean of the neighbours, so z ≥ 0
    for x ≥ 0; for an anchor the anchor). A preconditioned step on the penalty then moves each voxel at most to
    z, not past it, whatever the penalty's strength or the activity units.
    """

    def value(self, image: torch.Tensor) -> torch.Tensor:
        """R(x) per batch item: (B,)."""

    def gradient(self, image: torch.Tensor) -> torch.Tensor:
        """∇R(x): (B, nx, ny, nz)."""

    def curvature(self, image: torch.Tensor) -> torch.Tensor:
        """Non-negative diagonal curvature of R at x: (B, nx, ny, nz) or broadcastable to it."""


def neighbour_offsets(ndim_neighbourhood: int = 26) -> list[tuple[int, int, int]]:
    """Offsets of the 26- or 6-neighbourhood in 3D, or (2) of the two axial neighbours along z only (the
    slice-coupling penalty of 3D reconstruction with 2D priors)."""
    if ndim_neighbourhood == 2:
        return [(0, 0, -1), (0, 0, 1)]
    if ndim_neighbourhood not in (6, 26):
        raise InputError(f"neighbourhood must be 2 (z only), 6 or 26, got {ndim_neighbourhood}")
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=3) if any(o)]
    return [o for o in offsets if ndim_neighbourhood == 26 or sum(map(abs, o)) == 1]


def _shift(volume: torch.Tensor, offset: tuple[int, int, int]) -> torch.Tensor:
    """volume[j + offset] for every voxel j of (B, nx, ny, nz), edge-replicated at the border."""
    padded = F.pad(volume[:, None], (1, 1, 1, 1, 1, 1), mode="replicate")[:, 0]
    nx, ny, nz = volume.shape[-3:]
    ox, oy, oz = offset
    return padded[:, 1 + ox:1 + ox + nx, 1 + oy:1 + oy + ny, 1 + oz:1 + oz + nz]


class NeighbourhoodPenalty(ABC):
    """R(x) = ½ Σ_j Σ_k w_jk φ(x_j, x_k) over a 3D neighbourhood, with weights w (n_offsets, nx, ny, nz).

    Subclasses give the symmetric pair potential φ and its derivative in the first argument. Weights are
    inverse distances, zero towards neighbours outside the image, optionally multiplied by a selection mask
    (Bowsher). Asymmetric weights are handled exactly in the gradient.
    """

    def __init__(self, beta: float, shape: tuple[int, int, int], voxel_size_mm: tuple[float, float, float],
                 neighbourhood: int = 26, selection: torch.Tensor | None = None):
        if not np.isfinite(beta) or beta < 0:
            raise InputError(f"beta must be a finite number >= 0, got {beta!r}")
        self.beta = float(beta)
        self.offsets = neighbour_offsets(neighbourhood)
        voxel = np.asarray(voxel_size_mm, dtype=np.float64)
        inside = _inside_masks(self.offsets, shape)
        distances = torch.tensor([np.linalg.norm(np.asarray(o) * voxel) / voxel.min() for o in self.offsets])
        weights = inside.float() / distances.float()[:, None, None, None]
        if selection is not None:
            check_shape("selection", selection, weights.shape)
            weights = weights * selection.to(weights.dtype).cpu()
        self.weights = weights
        # w_jk + w_kj, with w_kj read from voxel k = j + o towards offset -o (only where k is in the image)
        mirror = {offset: i for i, offset in enumerate(self.offsets)}
        self.pair_weights = inside * torch.stack([
            weights[i] + _shift(weights[mirror[tuple(-o for o in offset)]][None], offset)[0]
            for i, offset in enumerate(self.offsets)])

    def _on(self, name: str, image: torch.Tensor) -> torch.Tensor:
        """A weight table on ``image``'s device and dtype, copied there once."""
        table = getattr(self, name)
        if table.device != image.device or table.dtype != image.dtype:
            table = table.to(image.device, image.dtype)
            setattr(self, name, table)
        return table

    @abstractmethod
    def potential(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """φ(a, b), symmetric in its arguments."""

    @abstractmethod
    def potential_derivative(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """∂φ/∂a."""

    @abstractmethod
    def potential_secant_curvature(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(∂φ/∂a) / (a − b) > 0, continued by its limit ∂²φ/∂a² at a = b."""

    def value(self, image: torch.Tensor) -> torch.Tensor:
        """Penalty β R(x) per batch item of ``image`` (B, nx, ny, nz)."""
        return 0.5 * self.beta * self._neighbour_sum("weights", self.potential, image).flatten(1).sum(1)

    def gradient(self, image: torch.Tensor) -> torch.Tensor:
        """Gradient of β R(x) with respect to ``image`` (B, nx, ny, nz)."""
        return 0.5 * self.beta * self._neighbour_sum("pair_weights", self.potential_derivative, image)

    def curvature(self, image: torch.Tensor) -> torch.Tensor:
        """Secant curvature ½β Σ_k (w_jk + w_kj) φ'(x_j, x_k) / (x_j − x_k) of β R(x).

        It equals the Hessian diagonal where the image is locally flat, and unlike the Hessian it stays large
        where a voxel is far above its neighbours (RDP's Hessian vanishes there), so the gradient is curvature ×
        (x_j − a weighted mean of the neighbours) as :class:`Penalty` asks.
        """
        return 0.5 * self.beta * self._neighbour_sum("pair_weights", self.potential_secant_curvature, image)

    def _neighbour_sum(self, table: str, function, image: torch.Tensor) -> torch.Tensor:
        """Σ_o w[o, j] f(x_j, x_{j+o}) for every voxel j, with the weight table ``table``."""
        weights = self._on(table, image)
        total = torch.zeros_like(image)
        for index, offset in enumerate(self.offsets):
            total += weights[index] * function(image, _shift(image, offset))
        return total


class RelativeDifferencePenalty(NeighbourhoodPenalty):
    """Relative difference prior (Nuyts et al. 2002): φ(a, b) = (a − b)² / (a + b + γ|a − b| + ε).

    ``gamma`` sets edge preservation (2 is common in PET), ``epsilon`` keeps φ finite where a + b = 0.
    """

    def __init__(self, beta: float, shape: tuple[int, int, int], voxel_size_mm: tuple[float, float, float],
                 gamma: float = 2.0, epsilon: float = 1e-6, neighbourhood: int = 26,
                 selection: torch.Tensor | None = None):
        super().__init__(beta, shape, voxel_size_mm, neighbourhood, selection)
        if gamma < 0 or epsilon <= 0:
            raise InputError(f"RDP needs gamma >= 0 and epsilon > 0, got gamma={gamma}, epsilon={epsilon}")
        self.gamma, self.epsilon = float(gamma), float(epsilon)

    def potential(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d = a - b
        return d ** 2 / (a + b + self.gamma * d.abs() + self.epsilon)

    def potential_derivative(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d = a - b
        denominator = a + b + self.gamma * d.abs() + self.epsilon
        return (2 * d * denominator - d ** 2 * (1 + self.gamma * torch.sign(d))) / denominator ** 2

    def potential_secant_curvature(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        spread = self.gamma * (a - b).abs()
        return (a + 3 * b + spread + 2 * self.epsilon) / (a + b + spread + self.epsilon) ** 2


class QuadraticPenalty(NeighbourhoodPenalty):
    """Quadratic smoothing φ(a, b) = (a − b)²; with Bowsher weights, the MR-guided Bowsher prior."""

    def potential(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b) ** 2

    def potential_derivative(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 2 * (a - b)

    def potential_secant_curvature(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.full_like(a, 2.0)


class AnchorPenalty:
    """λ/2 ‖x − x̂‖²: pulls the image towards an anchor x̂ (PET-DDS's proximity to the denoised estimate).

    Args:
        lam: λ >= 0, one for the batch or one per batch item (B,).
        anchor: x̂, one image (nx, ny, nz) for the whole batch or one per batch item (B, nx, ny, nz).
    """

    def __init__(self, lam: float | torch.Tensor, anchor: torch.Tensor):
        strength = torch.as_tensor(lam, dtype=torch.float32)
        if strength.dim() > 1 or not torch.isfinite(strength).all() or (strength < 0).any():
            raise InputError(f"lam (anchor strength) must be a finite number >= 0 or one per batch item, got {lam!r}")
        anchor = torch.as_tensor(anchor)
        if anchor.dim() not in (3, 4):
            raise InputError(f"anchor must be (nx, ny, nz) or (B, nx, ny, nz), got shape {tuple(anchor.shape)}")
        check_finite("anchor", anchor)
        self.lam = float(strength) if strength.dim() == 0 else strength.reshape(-1, 1, 1, 1)
        self.anchor = anchor

    def _difference(self, image: torch.Tensor) -> torch.Tensor:
        """x − x̂, with x̂ moved to the images' device and dtype once."""
        anchor = self.anchor = self.anchor.to(image.device, image.dtype)
        batch_ok = anchor.dim() == 3 or anchor.shape[0] in (1, image.shape[0])
        if anchor.shape[-3:] != image.shape[-3:] or not batch_ok:
            raise InputError(f"anchor has shape {tuple(anchor.shape)}; expected (nx, ny, nz) or (B, nx, ny, nz) "
                             f"matching the images {tuple(image.shape)}")
        return image - anchor

    def _strength(self, image: torch.Tensor) -> float | torch.Tensor:
        """λ, a per-item λ moved to the images' device and dtype once."""
        if torch.is_tensor(self.lam):
            self.lam = self.lam.to(image.device, image.dtype)
        return self.lam

    def value(self, image: torch.Tensor) -> torch.Tensor:
        """λ/2 ‖x − x̂‖² per batch item."""
        return 0.5 * (self._strength(image) * self._difference(image).square()).flatten(1).sum(1)

    def gradient(self, image: torch.Tensor) -> torch.Tensor:
        """λ (x − x̂)."""
        return self._strength(image) * self._difference(image)

    def curvature(self, image: torch.Tensor) -> torch.Tensor:
        """λ everywhere."""
        return self._strength(image) * torch.ones_like(image)


class PenaltySum:
    """The sum of penalties, e.g. PET-DDS's anchor plus an RDP; itself a :class:`Penalty` (values, gradients and
    curvatures add, and the sum keeps the protocol's property: Σ c_i (x − z_i) = (Σ c_i)(x − z̄))."""

    def __init__(self, *penalties: Penalty):
        if not penalties or not all(isinstance(p, Penalty) for p in penalties):
            raise InputError("PenaltySum needs one or more penalties with value, gradient and curvature methods")
        self.penalties = penalties

    def value(self, image: torch.Tensor) -> torch.Tensor:
        return sum(p.value(image) for p in self.penalties)

    def gradient(self, image: torch.Tensor) -> torch.Tensor:
        return sum(p.gradient(image) for p in self.penalties)

    def curvature(self, image: torch.Tensor) -> torch.Tensor:
        return sum(p.curvature(image) for p in self.penalties)


def bowsher_selection(anatomy: torch.Tensor, n_selected: int, neighbourhood: int = 26) -> torch.Tensor:
    """For each voxel, keep the ``n_selected`` neighbours most similar in the anatomical image (Bowsher et al.
    2004): returns a (n_offsets, nx, ny, nz) 0/1 mask for :class:`NeighbourhoodPenalty`'s ``selection``."""
    anatomy = torch.as_tensor(anatomy, dtype=torch.float32)
    if anatomy.dim() != 3:
        raise InputError(f"anatomical image must be one (nx, ny, nz) volume, got shape {tuple(anatomy.shape)}")
    check_finite("anatomical image", anatomy)
    offsets = neighbour_offsets(neighbourhood)
    if not 1 <= n_selected <= len(offsets):
        raise InputError(f"n_selected (Bowsher neighbours) must be in [1, {len(offsets)}], got {n_selected}")
    differences = torch.stack([(anatomy - _shift(anatomy[None], offset)[0]).abs() for offset in offsets])
    differences[~_inside_masks(offsets, anatomy.shape)] = float("inf")  # never select outside the image
    chosen = differences.topk(n_selected, dim=0, largest=False).indices
    return torch.zeros_like(differences).scatter_(0, chosen, 1.0)


def _inside_masks(offsets: list[tuple[int, int, int]], shape: tuple[int, ...]) -> torch.Tensor:
    """(n_offsets, nx, ny, nz) masks: True where voxel j + offset lies inside the image."""
    inside = torch.ones(len(offsets), *shape, dtype=torch.bool)
    for index, offset in enumerate(offsets):
        for axis, o in enumerate(offset):
            if o:
                inside[index].narrow(axis, 0 if o < 0 else shape[axis] - 1, 1).fill_(False)
    return inside
