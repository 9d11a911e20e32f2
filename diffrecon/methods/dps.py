"""DPS, diffusion posterior sampling (Chung, Kim, McCann, Klasky and Ye, ICLR 2023), for PET and MRI.

Each DDIM step is taken with the network's noise prediction and then pulled towards the data by the gradient,
through the network, of the data misfit of the Tweedie estimate x̂₀(x_t) with respect to x_t: x_{t'} −= ζ ∇ₓ g(x̂₀(x_t)).
The misfit g is the space's (:mod:`diffrecon.methods.spaces`): for MRI the residual norm ‖A x̂₀ − y‖ in prior units
(not squared, as the reference code: the paper's step ζ / ‖y − A x̂₀‖ on the squared norm); for PET the logarithm
of the Poisson deviance, whose gradient ∇D / D is Singh et al.'s normalised PET-DPS step (the negative
log-likelihood's gradient over its value; the deviance is that NLL measured from the saturated model, so it is
>= 0). There is no data-consistency step: the last step's x̂₀ is the sample. DPS backpropagates through the network
at every step: about three network evaluations' time, and the activations of one evaluation in memory (the sampler
takes the samples through the network and back one at a time for it).

The reference runs 1000 ancestral steps from noise (η = 1) with ζ' 0.3-1.0 for Gaussian image problems; for the
PET and MR priors here the step counts, start and ζ were chosen on validation subjects (docs/methods.md, "DPS and
the naive sampler").
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from diffrecon.checks import check_positive
from diffrecon.methods.sampler import Call, VPDiffusionMethod
from diffrecon.methods.spaces import MRISpace, PETSpace
from diffrecon.priors.prior import ScoreModel


class DPSMethod(VPDiffusionMethod):
    """DPS in any space; ``zeta``: the step ζ (> 0) of the pull; other arguments as
    :class:`~diffrecon.methods.sampler.VPDiffusionMethod`."""

    needs_gradient = True

    def __init__(self, prior: ScoreModel, space: Any, steps: int, zeta: float, warm_start: float | None, eta: float,
                 final_time: float, callback: Callable[[int, torch.Tensor], None] | None, progress: bool) -> None:
        super().__init__(prior, space, steps, warm_start, eta, final_time, callback, progress)
        check_positive("zeta", zeta)
        self.zeta = float(zeta)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "zeta": self.zeta}

    def description_details(self) -> str:
        return f" zeta={self.zeta:g}"

    def guidance(self, x: torch.Tensor, denoised: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        misfit = self.space.guidance_objective(denoised, call).sum()  # samples are independent: one backward
        (gradient,) = torch.autograd.grad(misfit, x)
        return self.zeta * gradient


class PETDPS(DPSMethod):
    """DPS for PET: a VP score over (..., x, y, z) volumes, the PET space (``osem_iterations`` and
    ``osem_subsets`` set the scale and the warm start; ``mr`` and ``guidance``: MR guidance of an MR-conditioned
    prior, :class:`~diffrecon.methods.spaces.PETSpace`)."""

    name = "pet-dps"
    modality = "PT"

    def __init__(self, prior: ScoreModel, steps: int = 8, zeta: float = 3e4, warm_start: float | None = 0.3,
                 eta: float = 1.0, final_time: float = 0.0, osem_iterations: int | str = "auto",
                 osem_subsets: int = 8, mr: Any = None, guidance: float = 0.0,
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, PETSpace(osem_iterations, osem_subsets, mr, guidance), steps, zeta, warm_start, eta,
                         final_time, callback, progress)


class MRIDPS(DPSMethod):
    """DPS for MRI: the VP form of a 2D slice prior, the MRI space (``phase_correction``, ``chunk_size``,
    ``clip``)."""

    name = "dps"
    modality = "MR"

    def __init__(self, prior: ScoreModel, steps: int = 50, zeta: float = 7.0, warm_start: float | None = 0.35,
                 eta: float = 1.0, final_time: float = 0.0, clip: float | None = 1.0, phase_correction: bool = True,
                 chunk_size: int = 16, noise_sigma: float | str = "auto",
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, MRISpace(phase_correction, chunk_size, clip, noise_sigma), steps, zeta, warm_start,
                         eta, final_time, callback, progress)
