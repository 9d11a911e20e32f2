"""PET-DDS (Singh et al., MELBA 2024): decomposed diffusion sampling for PET.

At each DDIM step the Tweedie estimate, in activity units, is refined by a few EM-preconditioned ascent steps on
the Poisson log-likelihood of view subsets with the anchor λ/2 ‖x − x̂₀‖² (and optionally a relative difference
prior between neighbouring slices, for 3D volumes from 2D priors), clamped non-negative.

η = 0.1, sampling stopped at t = 0.1 T and 5 subset ascent steps per diffusion step follow the reference
implementation; the step count and start are ours, tuned: 8 DDIM steps from a warm start at 0.3 T (the noised OSEM
image; since 2026-12-05 the class default, as in the bundle and PET-LiSch); the reference's 50 steps from noise are
``steps=50, warm_start=None``. The reference has no unit-free λ (its best values span
0.025-400 with the data's units), so ours is relative: λ = ``lam`` · mean sensitivity / scale, which puts the
anchor's curvature at ``lam`` times the EM curvature of a voxel at the image's mean activity in any units;
``rdp_z`` is relative the same way. Both are our choice; ``lam`` = 0.02 was tuned on validation subjects with
``scripts/bench_pet.py`` (docs/pet_diffusion.md; prior version 0.2.0: 0.005-0.02 within 0.5% in 3D, 0.02 and 0.05
equal in 2D), where a warm start (``warm_start=0.3, steps=5``) matched or beat 20-50 steps from noise; 8 steps
from the same start are 2.8% (1% counts) and 4.0% (10%) better in 3D, 2.8% worse on single slices (2026-12-05).

Since 2026-12-07 ``lam`` is by default chosen from the data (``"auto"``): at every reverse step, per sample, the
relative strength at which the refined estimate's Poisson deviance meets the discrepancy target (the expected
deviance of the data, :mod:`diffrecon.methods.discrepancy`), searched in log λ from the previous step's (a few
extra ascent runs per step). The best fixed λ moves 25-fold between 1e5 and 1e4 counts per slice (issue 29); the
searched one follows the data (validation single slices: 0.04 at 10%, about 15 at 1%, about 100 at 0.1% counts).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from diffrecon.checks import check_at_least, check_auto, check_integer
from diffrecon.classical.penalties import AnchorPenalty, PenaltySum, RelativeDifferencePenalty
from diffrecon.classical.pet import em_ascent_step
from diffrecon.methods.sampler import Call, VPDiffusionMethod
from diffrecon.methods.spaces import PETSpace
from diffrecon.physics.pet import subset_views
from diffrecon.priors.prior import ScoreModel
from diffrecon.uncertainty.calibration import phantom_calibration


FALLBACK_LAM = 0.02
"""``lam`` where the data give no discrepancy target (not counts): the fixed default tuned before 2026-12-07."""


STD_CALIBRATIONS = tuple(
    phantom_calibration(factor, f"demo2d {level}", {"steps": 8, "lam": "auto", "warm_start": 0.3, "mr": None}, cases=40,
                        voxels=90494, validation_seeds="10000-10039", scanner="demo2d", trues_per_sinogram=trues,
                        count_tolerance=2.0)
    for factor, level, trues in ((2.649, "1%", 1e4), (2.562, "10%", 1e5)))
"""The recalibration factors of PET-DDS's std (issue 34), fitted on validation phantoms 10000-10039 (three
mixed lesions, noise seed 0) on the demo2d scanner at 1% and 10% counts with 16 samples at the default settings:
the sample std times 2.649 (1%) or 2.562 (10%) makes mean ± 2 std cover 95% of the brain voxels pooled over those
subjects (on test subjects 20000-20019: 94.7% at 1%, 47.1% before; 95.8% at 10%, 58.5% before). Each applies only
within its scope (:meth:`~diffrecon.uncertainty.StdCalibration.applies_to`): the std of fewer samples needs a larger factor, other
scanners and count levels another one (docs/uncertainty.md)."""


@dataclass
class PETDDSState:
    """Per call: the view subsets, the activity units of λ (the anchor's curvature of ``lam`` 1), the optional
    z-RDP, whether λ is searched, the current relative λ per sample and the λ each step chose."""

    views: list[list[int]]
    unit: float
    rdp: RelativeDifferencePenalty | None
    search: bool
    lam: torch.Tensor
    chosen: list[list[float]] = field(default_factory=list)


class PETDDS(VPDiffusionMethod):
    """PET-DDS on the sampler (:mod:`diffrecon.methods.sampler`) in the PET space.

    Args:
        prior: a VP score over (..., x, y, z) volumes (a :class:`~diffrecon.priors.TriPlanarScore`).
        steps, warm_start, eta, final_time, callback, progress: as :class:`~diffrecon.methods.sampler.VPDiffusionMethod`.
        lam: "auto" (the default): at every step and per sample, the relative anchor strength at which the refined
            estimate meets the discrepancy target (the expected Poisson deviance of the data,
            :mod:`diffrecon.methods.discrepancy`), searched from the previous step's; or a fixed relative anchor
            strength (see the module notes): larger trusts the prior more.
        ascent_steps: EM-preconditioned subset ascent steps per diffusion step.
        subsets: view subsets the ascent steps cycle through (continuing across diffusion steps).
        rdp_z: relative strength of a relative difference prior between neighbouring slices (0: off).
        osem_iterations, osem_subsets: the OSEM image that sets the scale and the warm start
            (:class:`~diffrecon.methods.spaces.PETSpace`).
        mr, guidance: the T1 on the PET grid and the classifier-free guidance strength w >= 0 of an MR-conditioned
            prior (:class:`~diffrecon.methods.spaces.PETSpace`).
    """

    name = "pet-dds"
    modality = "PT"
    std_calibrations = STD_CALIBRATIONS

    def __init__(self, prior: ScoreModel, steps: int = 8, lam: float | str = "auto", ascent_steps: int = 5,
                 subsets: int = 8, rdp_z: float = 0.0, eta: float = 0.1, warm_start: float | None = 0.3,
                 final_time: float = 0.1, osem_iterations: int | str = "auto", osem_subsets: int = 8,
                 mr: Any = None, guidance: float = 0.0,
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, PETSpace(osem_iterations, osem_subsets, mr, guidance), steps, warm_start, eta,
                         final_time, callback, progress)
        self.lam = check_auto("lam", lam, check_at_least, "a number >= 0")
        self.rdp_z = check_at_least("rdp_z", rdp_z)
        self.ascent_steps = check_integer("ascent_steps", ascent_steps)
        self.subsets = check_integer("subsets", subsets)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "subsets": self.subsets, "lam": self.lam, "ascent_steps": self.ascent_steps,
                "rdp_z": self.rdp_z}

    def check(self, data: torch.Tensor, physics: Any) -> None:
        subset_views(physics.projector.n_views, self.subsets, "subsets")

    def prepare(self, call: Call) -> PETDDSState:
        model = call.physics
        sensitivity = model.sensitivity()
        unit = float(sensitivity[sensitivity > 0].mean())  # EM curvature of a voxel at activity 1 (all views)
        rdp = None
        if self.rdp_z > 0:
            grid = model.grid
            rdp = RelativeDifferencePenalty(self.rdp_z * unit, grid.shape, grid.voxel_size_mm, neighbourhood=2)
        search = self.lam == "auto" and call.discrepancy.available
        lam = FALLBACK_LAM if self.lam == "auto" else self.lam
        return PETDDSState(subset_views(model.projector.n_views, self.subsets), unit / call.scale, rdp, search,
                           torch.full((call.num_samples,), lam, device=call.data.device))

    def consistent(self, image: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        state: PETDDSState = call.state
        if not state.search:
            return self._ascent(image, state.lam, call, step)
        refined, weight, _ = call.discrepancy.match(lambda w: self._ascent(image, 1 / w, call, step),
                                                    call.fidelity.deviance, 1 / state.lam)
        state.lam = 1 / weight
        state.chosen.append(state.lam.tolist())
        return refined

    def _ascent(self, image: torch.Tensor, lam: torch.Tensor, call: Call, step: int) -> torch.Tensor:
        """The step's subset ascent steps from ``image`` anchored to it with relative strengths ``lam`` (B,)."""
        state: PETDDSState = call.state
        penalty = AnchorPenalty(lam * state.unit, image.clone())
        if state.rdp is not None:
            penalty = PenaltySum(penalty, state.rdp)
        views = state.views
        x = image
        for k in range(self.ascent_steps):
            x = em_ascent_step(x, call.measured, call.physics, views[(step * self.ascent_steps + k) % len(views)],
                               penalty=penalty, n_subsets=len(views))
        return x

    def summary(self, call: Call) -> dict[str, Any]:
        state: PETDDSState = call.state
        return {"lam": state.lam.tolist(), "lam_by_step": state.chosen} if state.search else {}
