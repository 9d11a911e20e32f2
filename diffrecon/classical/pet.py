"""Classical PET reconstruction: MLEM, OSEM, and MAP with the relative difference or Bowsher prior (BSREM).

All share one loop over iterations and view subsets, built on :func:`em_ascent_step`, which diffusion methods
call on their own images too. With no penalty and unit relaxation the step x ← x + (x / s_m) ∇L_m(x) is exactly
the (OS)EM update x ← x / s_m · A_mᵀ(y / ȳ), so OSEM with one subset is MLEM. With a penalty it is BSREM (Ahn &
Fessler 2003) with a decaying relaxation and the diagonal Newton-like preconditioner
D = 1 / (s_m / (x + δ) + c_R(x) / M): the inverse of the EM curvature s/x of the likelihood plus the penalty's
curvature c_R, two terms in the same units, so the iterates scale with the activity units. The floor δ (a small
fraction of the mean activity) lets a voxel that reached zero move again; with the penalty's secant curvature
(see :class:`~diffrecon.classical.penalties.Penalty`) a full step cannot fall below −δ.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from diffrecon.checks import InputError, check_nonnegative, check_shape
from diffrecon.classical.penalties import Penalty
from diffrecon.physics.pet import PETAcquisitionModel, data_ratio, poisson_log_likelihood, subset_views

# δ of the preconditioner floor as a fraction of the image's mean activity in the field of view
PRECONDITIONER_FLOOR = 1e-2


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


def map_em(measured: torch.Tensor, model: PETAcquisitionModel, penalty: Penalty, iterations: int = 20,
           n_subsets: int = 8, relaxation: float = 1.0, relaxation_decay: float = 0.1,
           **options) -> PETReconstruction:
    """MAP reconstruction with ``penalty`` (RDP, or quadratic with Bowsher weights) by BSREM.

    The relaxation of iteration n is ``relaxation / (1 + relaxation_decay * n)``, which makes the
    ordered-subsets iterates converge to the MAP solution.
    """
    return reconstruct_pet(measured, model, iterations, n_subsets=n_subsets, penalty=penalty,
                           relaxation=relaxation, relaxation_decay=relaxation_decay, **options)


def em_ascent_step(image: torch.Tensor, measured: torch.Tensor, model: PETAcquisitionModel,
                   views: Sequence[int] | None = None, *, penalty: Penalty | None = None, n_subsets: int = 1,
                   relaxation: float = 1.0, fov_mask: torch.Tensor | None = None,
                   expected: torch.Tensor | None = None) -> torch.Tensor:
    """One EM-preconditioned ascent step on the Poisson log-likelihood of the views ``views`` minus a penalty.

    Without a penalty and with unit relaxation this is the (OS)EM update x / s_m · A_mᵀ(y / ȳ). With a
    penalty it is the BSREM step x + α D (∇L_m(x) − ∇R(x) / M), D = 1 / (s_m / (x + δ) + c_R(x) / M), δ =
    ``PRECONDITIONER_FLOOR`` × the image's mean in the field of view (see the module notes). The result is
    clamped to >= 0 and is 0 outside the field of view.

    Args:
        image: current activity images (B, nx, ny, nz), >= 0.
        measured: counts of all views, (B or 1, n_sinograms, n_views, n_bins) or (n_sinograms, n_views, n_bins),
            as :meth:`PETAcquisitionModel.check_data` returns them (not checked again at every step).
        model: the acquisition model ȳ = m ⊙ A(PSF x) + b.
        views: the views of the subset (None: all views).
        penalty: a :class:`~diffrecon.classical.penalties.Penalty` to subtract (None: maximum likelihood).
        n_subsets: M, the number of subsets the caller cycles through; each step takes 1/M of the penalty.
        relaxation: step size α (1 is the full EM step).
        fov_mask: voxels to reconstruct (nx, ny, nz); default every voxel the scanner sees.
        expected: ȳ of ``image`` on ``views`` when the caller has it (e.g. from a log-likelihood), which saves
            the forward projection.

    Returns:
        The next images (B, nx, ny, nz).
    """
    check_shape("image", image, model.grid.shape, "(B, nx, ny, nz) on the image grid")
    if image.dim() != 4:
        raise InputError(f"image must be a batch (B, nx, ny, nz), got shape {tuple(image.shape)}")
    mask = _fov_mask(model, fov_mask)
    sensitivity = model.sensitivity(views)
    data = measured if views is None else measured[..., list(views), :]
    expected = model.forward(image, views) if expected is None else expected
    gradient = model.adjoint(data_ratio(data, expected), views) - sensitivity
    if penalty is None:
        preconditioner = torch.where(sensitivity > 0, image / sensitivity.clamp_min(1e-12), 0.0)
    else:
        mean = (image * mask).flatten(1).sum(1) / mask.sum().clamp_min(1)
        floored = image + PRECONDITIONER_FLOOR * mean[:, None, None, None]
        scale = sensitivity + floored * penalty.curvature(image) / n_subsets
        preconditioner = torch.where(sensitivity > 0, floored / scale.clamp_min(1e-12), 0.0)
        gradient = gradient - penalty.gradient(image) / n_subsets
    return (image + relaxation * preconditioner * mask * gradient).clamp_min(0)


def reconstruct_pet(measured: torch.Tensor, model: PETAcquisitionModel, iterations: int, *, n_subsets: int = 1,
                    penalty: Penalty | None = None, relaxation: float = 1.0,
                    relaxation_decay: float = 0.0, initial: torch.Tensor | None = None,
                    fov_mask: torch.Tensor | None = None, progress: bool = True,
                    description: str = "PET recon") -> PETReconstruction:
    """The shared (OS)EM / BSREM loop: :func:`em_ascent_step` over the subsets, ``iterations`` times.

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
    result = PETReconstruction(image)
    bar = tqdm(range(int(iterations)), desc=description, disable=not progress, leave=False)
    expected = None  # ȳ of the image on all views, from the last log-likelihood: MLEM's next step reuses it
    for iteration in bar:
        step = relaxation / (1 + relaxation_decay * iteration)
        for views in subsets:
            image = em_ascent_step(image, data, model, views, penalty=penalty, n_subsets=len(subsets),
                                   relaxation=step, fov_mask=mask, expected=expected if len(subsets) == 1 else None)
        expected = model.forward(image)
        log_likelihood = poisson_log_likelihood(data, expected).sum().item()
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


def uniform_image(model: PETAcquisitionModel, data: torch.Tensor, fov_mask: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """(OS)EM's start: per batch item of ``data`` (B, n_sinograms, n_views, n_bins), the uniform image over the
    field of view whose expected trues match the data's counts less the background."""
    mask = _fov_mask(model, fov_mask)
    trues = data.flatten(1).sum(1) - (0 if model.additive is None else model.additive.sum())
    uniform_counts = model.linear(mask[None]).sum()
    level = (trues.clamp_min(0) / uniform_counts).clamp_min(1e-6)
    return level[:, None, None, None] * mask


def _initial_image(model: PETAcquisitionModel, data: torch.Tensor, mask: torch.Tensor,
                   initial: torch.Tensor | None) -> torch.Tensor:
    if initial is None:
        return uniform_image(model, data, mask)
    initial = torch.as_tensor(initial, dtype=torch.float32, device=model.device)
    check_shape("initial image", initial, model.grid.shape, "the image grid (nx, ny, nz)")
    check_nonnegative("initial image", initial)
    if initial.dim() == 3:
        initial = initial[None].expand(data.shape[0], -1, -1, -1)
    return initial.clone() * mask
