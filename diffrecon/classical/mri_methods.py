"""The classical MRI methods by name, for the command line and benchmark scripts."""
from __future__ import annotations

import torch

from diffrecon.checks import check_choice
from diffrecon.classical.mri import MRIReconstruction, cg_sense, zero_filled
from diffrecon.classical.mri_tv import tv_reconstruct
from diffrecon.physics.mri_operators import MRIOperator

METHODS = ("zero-filled", "cg-sense", "tv")
# CG-SENSE stops early (its only regularisation); TV runs PDHG to near convergence.
DEFAULT_ITERATIONS = {"zero-filled": 0, "cg-sense": 4, "tv": 200}
DEFAULT_TV_LAM = 0.01


def reconstruct_mri(method: str, kspace: torch.Tensor, operator: MRIOperator, iterations: int | None = None,
                    lam: float = DEFAULT_TV_LAM) -> MRIReconstruction:
    """Run ``method`` (one of ``METHODS``); ``lam`` is the relative TV weight (tv only)."""
    check_choice("method", method, METHODS)
    iterations = DEFAULT_ITERATIONS[method] if iterations is None else iterations
    if method == "zero-filled":
        return zero_filled(kspace, operator, "rss")
    if method == "cg-sense":
        return cg_sense(kspace, operator, iterations)
    return tv_reconstruct(kspace, operator, lam=lam, iterations=iterations)
