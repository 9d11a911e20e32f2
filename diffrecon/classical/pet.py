"""Classical PET reconstruction: MLEM, OSEM, and MAP with the relative difference or Bowsher prior (BSREM).

All share one loop over iterations and view subsets. With no penalty and unit relaxation the update
x ← x + (x / s_m) ∇L_m(x) is exactly the (OS)EM update x ← x / s_m · A_mᵀ(y / ȳ), so OSEM with one subset is
MLEM. With a penalty it is BSREM (Ahn & Fessler 2003) with a decaying relaxation and the preconditioner
x / (s_m + β H_R(x) / M), H_R the penalty's Hessian diagonal (as in Tsai et al. 2018), which keeps strong
penalties from overshooting to zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from diffrecon.checks import InputError, check_nonnegative, check_shape
from diffrecon.classical.penalties import NeighbourhoodPenalty
from diffrecon.physics.pet import PETAcquisitionModel, data_ratio, subset_views


@dataclass
class PETReconstruction:
    """A reconstructed image (same batch layout as the data) and its per-iteration history."""

    image: torch.Tensor
    log_likelihood: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)


def mlem(measured: torch.Tensor, model: PETAcquisitionModel, iterations: int = 20, **options) -> PETReconstruction:
    """Maximum-likelihood expectation maximisation (Shepp & Vardi 1982). Options as :func:`reconstruct_pet`."""
    return reconstruct_pet(measured, model, iterations, n_subsets=1, **options)


def osem(measured: torch.Tensor, model: PETAcquisitionModel, iterations: int = 4, n_subsets: int = 8,
         **options) -> PETReconstruction:
    """Ordered-subsets EM (Hudson & Larkin 1994). Options as :func:`reconstruct_pet`."""
    return reconstruct_pet(measured, model, iterations, n_subsets=n_subsets, **options)


def map_em(measured: torch.Tensor, model: PETAcquisitionModel, penalty: NeighbourhoodPenalty, iterations: int = 20,
           n_subsets: int = 8, relaxation: float = 1.0, relaxation_decay: float = 0.1,
           **options) -> PETReconstruction:
    """MAP reconstruction with ``penalty`` (RDP, or quadratic with Bowsher weights) by BSREM.

    The relaxation of iteration n is ``relaxation / (1 + relaxation_decay * n)``, which makes the
    ordered-subsets iterates converge to the MAP solution.
    """
    return reconstruct_pet(measured, model, iterations, n_subsets=n_subsets, penalty=penalty,
                           relaxation=relaxation, relaxation_decay=relaxation_decay, **options)


def reconstruct_pet(measured: torch.Tensor, model: PETAcquisitionModel, iterations: int, *, n_subsets: int = 1,
                    penalty: NeighbourhoodPenalty | None = None, relaxation: float = 1.0,
                    relaxation_decay: float = 0.0, initial: torch.Tensor | None = None,
                    fov_mask: torch.Tensor | None = None, progress: bool = True,
                    description: str = "PET recon") -> PETReconstruction:
    """The shared (OS)EM / BSREM loop.

    Args:
        measured: counts (n_sinograms, n_views, n_bins), optionally with a leading batch dimension.
        model: the acquisition model ȳ = m ⊙ A(PSF x) + b.
        iterations: full passes through the data.
        n_subsets: ordered subsets of views per iteration.
        penalty: MAP penalty (None: maximum likelihood).
        relaxation, relaxation_decay: step size α_n = relaxation / (1 + relaxation_decay * n).
        initial: start image (nx, ny, nz) or batched, >= 0; default a uniform image matching the data's counts.
        fov_mask: voxels to reconstruct (others are kept at 0); default every voxel the scanner sees.
        progress: show a progress bar with the log-likelihood.
        description: progress bar label.

    Returns:
        The image, the Poisson log-likelihood after each iteration and, for MAP, the objective L − βR.
    """
    if int(iterations) < 1:
        raise InputError(f"iterations must be >= 1, got {iterations}")
    data = model.check_data(measured, "measured sinogram")
    unbatched = data.dim() == 3
    data = data[None] if unbatched else data
    subsets = subset_views(model.projector.n_views, n_subsets)
    mask = _fov_mask(model, fov_mask)
    image = _initial_image(model, data, mask, initial)
    sensitivities = [model.sensitivity(views) for views in subsets]
    result = PETReconstruction(image)
    bar = tqdm(range(int(iterations)), desc=description, disable=not progress, leave=False)
    for iteration in bar:
        step = relaxation / (1 + relaxation_decay * iteration)
        for views, sensitivity in zip(subsets, sensitivities):
            scale = sensitivity if penalty is None else sensitivity + penalty.curvature(image) / len(subsets)
            preconditioner = torch.where(sensitivity > 0, image / scale.clamp_min(1e-12), 0.0) * mask
            expected = model.forward(image, views)
            gradient = model.adjoint(data_ratio(data[..., views, :], expected), views) - sensitivity
            if penalty is not None:
                gradient = gradient - penalty.gradient(image) / len(subsets)
            image = (image + step * preconditioner * gradient).clamp_min(0)
        log_likelihood = model.log_likelihood(image, data).sum().item()
        result.log_likelihood.append(log_likelihood)
        if penalty is not None:
            result.objective.append(log_likelihood - penalty.value(image).sum().item())
        bar.set_postfix(loglik=f"{log_likelihood:.6g}")
    result.image = image[0] if unbatched else image
    return result


def _fov_mask(model: PETAcquisitionModel, fov_mask: torch.Tensor | None) -> torch.Tensor:
    if fov_mask is None:
        return (model.sensitivity() > 0).float()
    fov_mask = torch.as_tensor(fov_mask, device=model.device)
    check_shape("fov_mask", fov_mask, model.grid.shape, "the image grid (nx, ny, nz)")
    return (fov_mask > 0).float()


def _initial_image(model: PETAcquisitionModel, data: torch.Tensor, mask: torch.Tensor,
                   initial: torch.Tensor | None) -> torch.Tensor:
    if initial is None:
        trues = data.flatten(1).sum(1) - (0 if model.additive is None else model.additive.sum())
        uniform_counts = model.linear(mask[None]).sum()
        level = (trues.clamp_min(0) / uniform_counts).clamp_min(1e-6)
        return level[:, None, None, None] * mask
    initial = torch.as_tensor(initial, dtype=torch.float32, device=model.device)
    check_shape("initial image", initial, model.grid.shape, "the image grid (nx, ny, nz)")
    check_nonnegative("initial image", initial)
    if initial.dim() == 3:
        initial = initial[None].expand(data.shape[0], -1, -1, -1)
    return initial.clone() * mask
