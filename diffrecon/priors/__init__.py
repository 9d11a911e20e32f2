"""Diffusion priors (see DESIGN.md): score networks with their noise schedules, Tweedie estimates, tri-planar
and patch-wise 3D scores, unconditional sampling, shipped weights and training helpers. No physics code."""
from __future__ import annotations

from diffrecon.priors.bundle import load_bundle_prior
from diffrecon.priors.prior import DiffusionPrior, ScoreModel, VarianceExplodingPrior
from diffrecon.priors.sampling import sample
from diffrecon.priors.schedules import VESchedule, VPSchedule
from diffrecon.priors.training import FixedNoisePrepareBatch
from diffrecon.priors.volume import PatchwisePrior, TriPlanarScore
from diffrecon.priors.weights import load_weights, save_weights

__all__ = ["DiffusionPrior", "FixedNoisePrepareBatch", "PatchwisePrior", "ScoreModel", "TriPlanarScore",
           "VESchedule", "VPSchedule", "VarianceExplodingPrior", "load_bundle_prior", "load_weights", "sample",
           "save_weights"]
