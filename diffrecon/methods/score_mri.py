"""Score-MRI (Chung and Ye, Medical Image Analysis 2022): predictor-corrector sampling of the reverse VE SDE
with a hard k-space projection after the corrector and after the predictor.

Variants (their Algorithms 2-5), all with one magnitude prior:

- ``real``: a real image, x <- Re F⁻¹[(1 − M) F x + y] (single coil).
- ``complex``: real and imaginary parts through the prior, the same projection without Re (single coil).
- ``ssos``: every coil image sampled as a complex image with its own projection, then root-sum-of-squares
  (multi-coil; a magnitude result).
- ``hybrid``: coil-wise as ``ssos``, and every ``sense_every`` steps the coil images are combined by the coil
  maps, take a Kaczmarz step x <- x + w Aᴴ(y − A x) with the SENSE operator (w falling linearly from 1.0 to
  0.2 over the run) and are expanded again; the result is the SENSE-combined complex image.

``auto`` picks ``complex`` for single-coil and ``hybrid`` for multi-coil k-space. The reference runs 2000
steps (4000 network evaluations) from noise; our default starts warm (CCDF: from the noised CG-SENSE or
zero-filled image at half the schedule) and takes 30 steps (60 network evaluations), which beat 50 steps from
noise and a 20-step start at 0.3 on validation slices (``scripts/bench_mri.py``; the trade-off against steps
in docs/mri_diffusion.md). ``warm_start=None`` starts from noise as the reference. The hybrid variant's SENSE
step comes every 5 steps (0.6-0.7 dB above every 10 on validation since the coil maps were fixed, 2026-12-04).

Volumes are coupled along z by total variation (``slice_tv`` 0.03, DDS's value): on validation volume 10000 (32
slices, Poisson disc R = 4 in y and z) 29.56 dB against DDS's 29.36 and CG-SENSE's 24.34; the uncoupled run was
not measured (DDS without the coupling: 20.1 dB). ``plane_tv`` (within the slice) is off: not tuned for Score-MRI.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import tqdm

from diffrecon.checks import InputError, check_choice, check_integer, check_positive
from diffrecon.methods.base import Reconstruction
from diffrecon.methods.mri_diffusion import (SCALE_QUANTILE, MRIDiffusionMethod, solve_consistency, to_channels,
                                             to_complex)
from diffrecon.physics.mri_coils import rss, sense_combine
from diffrecon.physics.mri_operators import MRIOperator
from diffrecon.priors.prior import ScoreModel
from diffrecon.priors.steps import langevin_corrector, reverse_diffusion_predictor, ve_timesteps

VARIANTS = ("auto", "real", "complex", "ssos", "hybrid")
COILWISE = ("ssos", "hybrid")


class ScoreMRI(MRIDiffusionMethod):
    """Score-MRI; arguments as :class:`~diffrecon.methods.mri_diffusion.MRIDiffusionMethod` plus:

    Args:
        snr: signal-to-noise ratio of the Langevin corrector (the reference's 0.16).
        variant: one of :data:`VARIANTS` (module notes).
        sense_every: steps between the SENSE steps of the hybrid variant (the reference: 50 of 500).
        sense_weights: first and last Kaczmarz weight of the hybrid variant.
    """

    name = "score-mri"
    prior_form = "ve"

    def __init__(self, prior: ScoreModel, steps: int = 30, snr: float = 0.16, variant: str = "auto",
                 sense_every: int = 5, sense_weights: tuple[float, float] = (1.0, 0.2),
                 warm_start: float | None = 0.5, phase_correction: bool = True, slice_tv: float = 0.03,
                 slice_rho: float = 1.0, plane_tv: float = 0.0, plane_rho: float = 0.01, tv_iterations: int = 1,
                 chunk_size: int = 16,
                 callback: Callable[[int, torch.Tensor], None] | None = None, progress: bool = True) -> None:
        super().__init__(prior, steps, warm_start, phase_correction, slice_tv, slice_rho, plane_tv, plane_rho,
                         tv_iterations, chunk_size, callback, progress)
        check_positive("snr", snr)
        self.snr = float(snr)
        self.variant = check_choice("variant", variant, VARIANTS)
        self.sense_every = check_integer("sense_every", sense_every)
        if len(sense_weights) != 2 or not all(0 < float(w) <= 1 for w in sense_weights):
            raise InputError(f"sense_weights must be two weights in (0, 1], got {sense_weights!r}")
        self.sense_weights = tuple(float(w) for w in sense_weights)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "snr": self.snr, "variant": self.variant, "sense_every": self.sense_every,
                "sense_weights": list(self.sense_weights)}

    def variant_for(self, operator: MRIOperator) -> str:
        """The variant used for data of ``operator`` (``auto`` resolved); refuses one that does not fit."""
        multi_coil = operator.coil_maps is not None
        variant = self.variant if self.variant != "auto" else ("hybrid" if multi_coil else "complex")
        if multi_coil and variant not in COILWISE:
            raise InputError(f"variant {variant!r} is for single-coil k-space; this k-space has {operator.n_coils} "
                             "coils: use 'ssos' or 'hybrid'")
        if not multi_coil and variant in COILWISE:
            raise InputError(f"variant {variant!r} needs multi-coil k-space (a coil axis, n_coils first, and coil "
                             f"maps); this k-space has shape {operator.kspace_shape} without coils: use 'complex' "
                             "or 'real'")
        return variant

    def reconstruct(self, data: torch.Tensor, physics: MRIOperator, num_samples: int,
                    generator: torch.Generator | None) -> Reconstruction:
        variant = self.variant_for(physics)
        start = self.prepare(data, physics)
        kspace, y, reference, scale = start.kspace, start.measured, start.reference, start.scale
        score, clock = start.score, start.clock
        ndim = physics.ndim
        gain = torch.ones((), device=y.device)  # coil images in their own units: each scaled to about [0, 1]
        if variant in COILWISE:
            projector = MRIOperator(physics.mask)  # one coil at a time: the coil axis is a batch axis
            maps = physics.coil_maps.to(kspace.device)
            reference = maps * reference.unsqueeze(-ndim - 1)
            gain = torch.quantile(reference.abs().flatten(1), SCALE_QUANTILE, dim=1).clamp_min(1e-6)
            gain = gain.reshape(-1, *(1,) * ndim)
            reference = reference / gain
        else:
            projector = physics
            reference = reference.real if variant == "real" else reference
        measured = y / gain

        def project(x: torch.Tensor) -> torch.Tensor:
            x = x + projector.A_adjoint(measured - projector.A(x))
            return x.real if variant == "real" else x

        def sense_step(x: torch.Tensor, weight: float) -> torch.Tensor:
            combined = sense_combine(x * gain, maps, ndim)
            combined = combined + weight * physics.A_adjoint(y - physics.A(combined))
            return maps * combined.unsqueeze(-ndim - 1) / gain

        last = self.prior.schedule.num_train_timesteps - 1
        times, sigmas = ve_timesteps(self.prior.schedule, self.steps,
                                     None if self.warm_start is None else self.warm_start * last)
        sense_at = [i for i in range(self.steps) if (i + 1) % self.sense_every == 0 or i == self.steps - 1]
        weights = dict(zip(sense_at, torch.linspace(*self.sense_weights, len(sense_at)).tolist()))
        phase = self.phase(reference, ndim)
        channels = to_channels(reference, ndim, phase)
        x = float(sigmas[0]) * torch.randn((num_samples, *channels.shape), generator=generator, device=y.device)
        if self.warm_start is not None:
            x = x + channels
        with clock("physics"):
            x = project(to_complex(x, ndim, phase))
        couplings = self.new_couplings(physics)
        bar = tqdm(range(self.steps), desc=self.description(), disable=not self.progress, leave=False)
        with torch.no_grad():
            for i in bar:
                for corrector in (True, False):
                    with clock("network"):
                        parts = to_channels(x, ndim, phase)
                        gradient = score.score(parts, times[i])
                        if corrector:
                            parts = langevin_corrector(parts, gradient, self.snr, score.spatial_dims, generator)
                        else:
                            parts = reverse_diffusion_predictor(parts, gradient, float(sigmas[i]),
                                                                float(sigmas[i + 1]), generator,
                                                                add_noise=i < self.steps - 1)
                    with clock("physics"):
                        x = project(to_complex(parts, ndim, phase))
                with clock("physics"):
                    if couplings:
                        x = solve_consistency(x, measured, projector, 1, couplings=couplings,
                                              admm_iterations=self.tv_iterations)
                    if variant == "hybrid" and i in weights:
                        x = project(sense_step(x, weights[i]))
                self.after_step(i, x * gain, scale)
        x = x * gain
        if variant == "ssos":
            samples, consistent, operator = rss(x, ndim) * scale, x * scale, projector
        elif variant == "hybrid":
            samples = consistent = sense_combine(x, maps, ndim) * scale
            operator = physics
        else:
            samples = consistent = x * scale
            operator = physics
        return self.finish(samples, kspace, operator, consistent, clock, 2 * self.steps,
                           2 * self.steps * self.slices_per_call(channels, physics), scale, {"variant": variant})
