"""PET acquisition model y ~ Poisson(m * A(PSF x) + b): attenuation, normalisation, PSF, background,
ordered subsets, Poisson log-likelihood and its gradient."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from diffrecon.checks import InputError, check_nonnegative, check_shape
from diffrecon.physics.projector import PETProjector
from diffrecon.physics.psf import GaussianPSF


class PETAcquisitionModel:
    """Expected data ȳ = m ⊙ A(PSF x) + b of an activity image x, view subsets included.

    Images are (nx, ny, nz) or batched (B, nx, ny, nz); sinograms follow the same batching. In the vocabulary
    every physics object shares (deepinv's): :meth:`A` is the linear part m ⊙ A(PSF x), :meth:`A_adjoint` its
    adjoint; :meth:`forward` adds the background b.

    Args:
        projector: the line-integral projector A (defines scanner, grid and device).
        multiplicative: m, the product of attenuation factors, detector normalisation and any global
            sensitivity/duration scale: a data-shaped sinogram or None for 1.
        additive: b, expected randoms + scatter: a data-shaped sinogram or None for 0.
        psf_fwhm_mm: image-space Gaussian resolution model (mm, per axis or one value); None for none.
    """

    def __init__(self, projector: PETProjector, multiplicative: torch.Tensor | None = None,
                 additive: torch.Tensor | None = None, psf_fwhm_mm: float | tuple[float, ...] | None = None):
        self.projector = projector
        self.data_shape = projector.sinogram_shape()
        self.multiplicative = self._factor("multiplicative", multiplicative)
        self.additive = self._factor("additive", additive)
        self.psf = GaussianPSF(psf_fwhm_mm, projector.grid.voxel_size_mm) if psf_fwhm_mm else None
        self._sensitivity: dict[tuple[int, ...] | None, torch.Tensor] = {}
        self._gathered: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

    def _factor(self, name: str, factor: torch.Tensor | None) -> torch.Tensor | None:
        if factor is None:
            return None
        factor = torch.as_tensor(factor, dtype=torch.float32, device=self.projector.device)
        if tuple(factor.shape) != self.data_shape:
            raise InputError(f"{name} factors have shape {tuple(factor.shape)}; expected the scanner's data shape "
                             f"{self.data_shape} (n_sinograms, n_views, n_bins)")
        check_nonnegative(f"{name} factors", factor)
        if name == "multiplicative" and not (factor > 0).any():
            raise InputError("multiplicative factors are all zero: no line of response would see any activity; "
                             "expected normalisation x attenuation factors > 0")
        return factor

    @property
    def grid(self):
        return self.projector.grid

    @property
    def device(self) -> torch.device:
        return self.projector.device

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape (nx, ny, nz) of the images this model maps."""
        return tuple(self.grid.shape)

    def _views(self, factor: torch.Tensor | None, views: Sequence[int] | None) -> torch.Tensor | None:
        """The views of ``factor`` (gathered once per factor and subset, then cached)."""
        if factor is None or views is None:
            return factor
        key = (id(factor), tuple(views))
        if key not in self._gathered:
            self._gathered[key] = factor[:, list(views)]
        return self._gathered[key]

    def linear(self, image: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """m ⊙ A(PSF x): the expected trues of ``image`` (B, nx, ny, nz)."""
        blurred = self.psf(image) if self.psf else image
        projection = self.projector.forward(blurred, views)
        multiplicative = self._views(self.multiplicative, views)
        return projection if multiplicative is None else projection * multiplicative

    def A(self, image: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """The linear forward model m ⊙ A(PSF x) (same as :meth:`linear`)."""
        return self.linear(image, views)

    def A_adjoint(self, sinogram: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """Its adjoint PSFᵀ Aᵀ (m ⊙ y) (same as :meth:`adjoint`)."""
        return self.adjoint(sinogram, views)

    def forward(self, image: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """ȳ = m ⊙ A(PSF x) + b."""
        return self.add_background(self.linear(image, views), views)

    def add_background(self, expected_trues: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """``expected_trues`` (of ``views``) plus the background b of those views."""
        additive = self._views(self.additive, views)
        return expected_trues if additive is None else expected_trues + additive

    def adjoint(self, sinogram: torch.Tensor, views: Sequence[int] | None = None) -> torch.Tensor:
        """PSFᵀ Aᵀ (m ⊙ y): the adjoint of :meth:`linear`."""
        multiplicative = self._views(self.multiplicative, views)
        weighted = sinogram if multiplicative is None else sinogram * multiplicative
        image = self.projector.adjoint(weighted, views)
        return self.psf.adjoint(image) if self.psf else image

    def sensitivity(self, views: Sequence[int] | None = None) -> torch.Tensor:
        """Sensitivity image PSFᵀ Aᵀ m (nx, ny, nz) for the given views (cached)."""
        key = None if views is None else tuple(views)
        if key not in self._sensitivity:
            ones = torch.ones(self.projector.sinogram_shape(views), device=self.device)
            self._sensitivity[key] = self.adjoint(ones[None], views)[0]
        return self._sensitivity[key]

    def check_data(self, measured: torch.Tensor, name: str = "sinogram") -> torch.Tensor:
        """Validate measured counts: the scanner's data shape, finite, non-negative and not all zero (per batch
        item); returns float32 on the model's device."""
        measured = torch.as_tensor(measured, dtype=torch.float32)
        check_shape(name, measured, self.data_shape, "(n_sinograms, n_views, n_bins) of the scanner geometry")
        check_nonnegative(name, measured)
        empty = (measured.flatten(-3).sum(-1) == 0).reshape(-1)
        if empty.any():
            which = "" if measured.dim() == 3 else f" (batch items {empty.nonzero().flatten().tolist()})"
            raise InputError(f"{name} holds no counts{which}; expected measured coincidences (a sinogram of zeros "
                             "reconstructs to nothing)")
        return measured.to(self.device)

    def log_likelihood(self, image: torch.Tensor, measured: torch.Tensor,
                       views: Sequence[int] | None = None) -> torch.Tensor:
        """Poisson log-likelihood Σ y log ȳ − ȳ (constant log y! dropped), one value per batch item."""
        data = measured if views is None else measured[..., list(views), :]
        return poisson_log_likelihood(data, self.forward(image, views))

    def gradient(self, image: torch.Tensor, measured: torch.Tensor,
                 views: Sequence[int] | None = None) -> torch.Tensor:
        """Gradient of the log-likelihood: PSFᵀ Aᵀ m ⊙ (y / ȳ − 1)."""
        expected = self.forward(image, views)
        data = measured if views is None else measured[..., list(views), :]
        return self.adjoint(data_ratio(data, expected) - 1, views)


def poisson_log_likelihood(measured: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """Σ y log ȳ − ȳ over the last three (sinogram) axes, for callers that already have ȳ."""
    return (torch.xlogy(measured, expected) - expected).flatten(-3).sum(-1)


def data_ratio(measured: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """y / ȳ with 0 where y = 0 and a tiny floor on ȳ, so bins with no expected counts do not give NaN."""
    floor = torch.finfo(expected.dtype).tiny
    return torch.where(measured > 0, measured / expected.clamp_min(floor), torch.zeros_like(expected))


def attenuation_factors(projector: PETProjector, mu_map: torch.Tensor) -> torch.Tensor:
    """Attenuation correction factors exp(−∫μ) of a μ-map (1/mm) on the projector's grid."""
    mu_map = torch.as_tensor(mu_map, dtype=torch.float32, device=projector.device)
    check_shape("mu_map", mu_map, projector.grid.shape, "the image grid (nx, ny, nz) of the emission image")
    check_nonnegative("mu_map", mu_map)
    if mu_map.max() > 0.1:
        raise InputError(f"mu_map maximum is {mu_map.max().item():.3g}; expected linear attenuation "
                         "coefficients in 1/mm (water is 0.0096/mm at 511 keV)")
    return torch.exp(-projector.forward(mu_map))


def subset_views(n_views: int, n_subsets: int, name: str = "n_subsets") -> list[list[int]]:
    """Split views into ``n_subsets`` interleaved subsets, ordered so consecutive subsets are far apart; ``name``
    is the caller's name for the subset count in the error message."""
    if not 1 <= n_subsets <= n_views:
        raise InputError(f"{name} must be between 1 and the number of views ({n_views}), got {n_subsets}")
    bits = max(1, (n_subsets - 1).bit_length())
    order = sorted(range(n_subsets), key=lambda k: (int(f"{k:0{bits}b}"[::-1], 2), k))
    return [list(range(k, n_views, n_subsets)) for k in order]
