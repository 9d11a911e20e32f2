"""Data fidelity: how well an image explains the measured data, with its gradient, for every method that needs
one (data consistency, DPS guidance, likelihood terms, reports). Both objects are autograd-compatible: their
:meth:`value` can be differentiated through a network that produced the image (DPS), and :meth:`gradient` gives the
same gradient without autograd.

- :class:`PoissonLikelihood`: PET counts y ~ Poisson(ȳ(x)), ȳ = A x + b with the additive background b; value
  Σ y log ȳ − ȳ (log y! dropped). Its autograd goes through the model's exact adjoint, not through the projector's
  sparse matrices.
- :class:`GaussianLeastSquares`: k-space y = A x + n with complex Gaussian noise of standard deviation σ per
  sample; value −‖A x − y‖² / (2σ²), a log-likelihood as the Poisson one (larger is better).

Both give the deviance, twice the log-likelihood below that of a perfect fit (>= 0): the one measure of misfit the
discrepancy principle and DPS's step normalisation use for either noise model.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from diffrecon.checks import InputError, check_positive
from diffrecon.physics.pet import PETAcquisitionModel, data_ratio, poisson_log_likelihood


class _PETLinear(torch.autograd.Function):
    """m ⊙ A(PSF x) with its exact adjoint as the backward pass."""

    @staticmethod
    def forward(ctx: Any, image: torch.Tensor, model: PETAcquisitionModel, views: tuple[int, ...] | None):
        ctx.model, ctx.views = model, views
        return model.linear(image, views)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        return ctx.model.adjoint(grad, ctx.views), None, None


class _PETAdjoint(torch.autograd.Function):
    """PSFᵀ Aᵀ (m ⊙ s) with the forward model as the backward pass (the adjoint's adjoint)."""

    @staticmethod
    def forward(ctx: Any, sinogram: torch.Tensor, model: PETAcquisitionModel):
        ctx.model = model
        return model.adjoint(sinogram)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        return ctx.model.linear(grad), None


class PoissonLikelihood:
    """Poisson log-likelihood of measured counts ``data`` under ``model`` (with its background).

    Args:
        model: the PET acquisition model.
        data: measured counts, the model's data shape (checked by the model).
    """

    def __init__(self, model: PETAcquisitionModel, data: torch.Tensor) -> None:
        self.model = model
        self.data = model.check_data(data, "measured sinogram")

    def expected(self, image: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """ȳ = A x + b of ``image`` (B, nx, ny, nz), differentiable with respect to the image."""
        subset = None if views is None else tuple(views)
        return self.model.add_background(_PETLinear.apply(image, self.model, subset), subset)

    def measured(self, views: Sequence[int] | None = None) -> torch.Tensor:
        """The measured counts of ``views`` (all views: None)."""
        return self.data if views is None else self.data[..., list(views), :]

    def value(self, image: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """Σ y log ȳ − ȳ per batch item of ``image``."""
        return poisson_log_likelihood(self.measured(views), self.expected(image, views))

    def gradient(self, image: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """∇ of :meth:`value`: Aᵀ(y / ȳ − 1)."""
        subset = None if views is None else list(views)
        ratio = data_ratio(self.measured(views), self.expected(image.detach(), views))
        return self.model.adjoint(ratio - 1, subset)

    def em_step(self, image: torch.Tensor) -> torch.Tensor:
        """One MLEM step x Aᵀ(y / ȳ(x)) / Aᵀ1 of ``image`` (B, nx, ny, nz), differentiable with respect to it
        (SCD's loss through the likelihood steps)."""
        sensitivity = self.model.sensitivity()
        ratio = data_ratio(self.data, self.expected(image))
        return image * _PETAdjoint.apply(ratio, self.model) / sensitivity.clamp_min(torch.finfo(image.dtype).tiny)

    def saturated(self) -> float:
        """The log-likelihood Σ y log y − y of the saturated model ȳ = y: the deviance is twice the log-likelihood
        below it."""
        return float(poisson_log_likelihood(self.data, self.data).sum())

    def deviance(self, image: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """The Poisson deviance 2 Σ [ȳ − y + y log(y / ȳ)] per batch item: twice the log-likelihood below that of
        the saturated model ȳ = y, >= 0, about one per bin where the image is the truth and counts are not low."""
        measured, expected = self.measured(views), self.expected(image, views)
        terms = expected - measured + torch.xlogy(measured, measured) - torch.xlogy(measured, expected)
        return 2 * terms.flatten(-3).sum(-1)


class GaussianLeastSquares:
    """Gaussian log-likelihood −‖A x − y‖² / (2σ²) of k-space ``data`` under an MRI operator.

    Args:
        operator: an :class:`~diffrecon.physics.mri_operators.MRIOperator` (or any object with ``A``,
            ``A_adjoint`` and ``apply_mask``).
        data: measured k-space (zero or anything where not sampled: the mask removes it).
        sigma: noise standard deviation per complex sample (E|n|² = σ²), in the data's units (1: a plain
            least-squares term).
    """

    def __init__(self, operator: Any, data: torch.Tensor, sigma: float = 1.0) -> None:
        check_positive("sigma", sigma)
        if not torch.is_tensor(data) or not data.is_complex():
            raise InputError("data must be complex k-space (a complex tensor)")
        self.operator, self.sigma = operator, float(sigma)
        self.data = operator.apply_mask(data)

    def residual(self, image: torch.Tensor) -> torch.Tensor:
        """A x − y on the sampled positions."""
        return self.operator.A(image) - self.data

    def value(self, image: torch.Tensor) -> torch.Tensor:
        """−‖A x − y‖² / (2σ²) per batch item of ``image`` (..., *spatial): one value per leading index."""
        return -self.residual(image).abs().pow(2).flatten(1).sum(1) / (2 * self.sigma ** 2)

    def gradient(self, image: torch.Tensor) -> torch.Tensor:
        """∇ of :meth:`value` with respect to the (complex) image: −Aᴴ(A x − y) / σ²; for a real image its real
        part."""
        gradient = -self.operator.A_adjoint(self.residual(image.detach())) / self.sigma ** 2
        return gradient if image.is_complex() else gradient.real

    def deviance(self, image: torch.Tensor) -> torch.Tensor:
        """‖A x − y‖² / σ² per batch item: twice the log-likelihood below that of a perfect fit, about one per
        sampled k-space value where the image is the truth."""
        return -2 * self.value(image)

    def relative_residual(self, image: torch.Tensor) -> list[float]:
        """‖A x − y‖ / ‖y‖ of each image of the batch."""
        norm = self.data.abs().pow(2).sum().sqrt()
        return (self.residual(image).abs().pow(2).flatten(1).sum(1).sqrt() / norm).tolist()
