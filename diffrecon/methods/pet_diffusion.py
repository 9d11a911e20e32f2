"""What the diffusion PET methods share: the prior/grid check, the prior-units <-> activity scale, the DDIM loop
with a data-consistency step on the Tweedie estimate, warm starts, timing of network and physics, the posterior
summary and the report. A method (PET-DDS, PET-LiSch) adds only its data-consistency step.

Each reverse step: the network predicts the noise ε̂ of all samples at once; x̂₀ = Tweedie(x_t), clamped >= 0,
times the scale s is an activity image; the method makes it consistent with the data; divided by s it replaces
x̂₀ in the DDIM update x_{t'} = α' x̂₀ + sqrt(σ'² − s_η²) ε̂ + s_η z. The last step's consistent estimate is the
sample. The scale s is the emission mean of an OSEM image of the data (as the priors' training images were
divided by theirs, :class:`diffrecon.transforms.EmissionNormalize`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from diffrecon.checks import InputError, check_at_least, check_integer
from diffrecon.classical.pet import PETReconstruction, osem
from diffrecon.methods.base import Method, Reconstruction, Stopwatch, summarize_samples
from diffrecon.physics.pet import PETAcquisitionModel, subset_views
from diffrecon.priors.prior import ScoreModel
from diffrecon.priors.schedules import VPSchedule
from diffrecon.priors.steps import ddim_step, ddim_timesteps
from diffrecon.transforms.intensity import emission_mean


def check_prior_fits(prior: ScoreModel, model: PETAcquisitionModel, tolerance: float = 0.05) -> None:
    """Raise :class:`InputError` unless ``prior`` scores (..., x, y, z) volumes of the model's grid: a VP
    schedule, 3 spatial dims, sizes its networks accept, and (where the prior knows it) the voxel size it was
    trained at, within ``tolerance``."""
    if not isinstance(prior, ScoreModel):
        raise InputError(f"prior must be a diffrecon.priors.ScoreModel, got {type(prior).__name__}")
    if not isinstance(prior.schedule, VPSchedule):
        raise InputError(f"prior has a {type(prior.schedule).__name__}; the PET methods sample with DDIM and need "
                         "a VP prior")
    if prior.spatial_dims != 3:
        raise InputError(f"prior scores {prior.spatial_dims}D images; PET methods need a score over (x, y, z) "
                         "volumes: a TriPlanarScore of slice priors (diffrecon.priors.bundle.load_volume_prior, "
                         "e.g. the axial prior alone for single-slice data)")
    prior.check_image(torch.empty((1, *model.grid.shape), device="meta"))
    trained = prior.voxel_size_mm
    if trained is not None:
        grid = model.grid.voxel_size_mm
        if any(abs(g - v) > tolerance * v for g, v in zip(grid, trained)):
            raise InputError(f"the image grid has voxels of {tuple(grid)} mm; the prior was trained at {tuple(trained)} "
                             "mm: reconstruct on a grid of that voxel size (e.g. --grid with a NIfTI image of it)")


class PETDiffusionMethod(Method):
    """Base of the diffusion PET methods; subclasses implement :meth:`consistent` (and may :meth:`prepare`).

    Args:
        prior: a VP score over (..., x, y, z) volumes (a :class:`~diffrecon.priors.TriPlanarScore`).
        steps: reverse steps = network evaluations per sample.
        eta: DDIM stochasticity (0 deterministic given the start noise, 1 ancestral).
        warm_start: None to start from noise at the last timestep; a fraction f in (0, 1) to start at timestep
            f T from the noised OSEM image (SDEdit/CCDF), which needs far fewer steps.
        final_time: fraction of T where sampling stops; the last step's consistent estimate is the result.
        subsets: view subsets of the method's EM steps.
        osem_iterations, osem_subsets: the OSEM image that sets the scale (and the warm start).
        progress: show a progress bar with the mean log-likelihood.
    """

    modality = "PT"

    def __init__(self, prior: ScoreModel, steps: int, eta: float, warm_start: float | None, final_time: float,
                 subsets: int, osem_iterations: int, osem_subsets: int, progress: bool) -> None:
        if not isinstance(prior, ScoreModel):
            raise InputError(f"prior must be a diffrecon.priors.ScoreModel, got {type(prior).__name__}")
        self.prior = prior
        self.steps = check_integer("steps", steps)
        self.eta = check_at_least("eta", eta)
        if self.eta > 1:
            raise InputError(f"eta must be in [0, 1], got {eta!r}")
        if warm_start is not None and not 0 < warm_start < 1:
            raise InputError(f"warm_start must be None or a fraction in (0, 1), got {warm_start!r}")
        self.warm_start = None if warm_start is None else float(warm_start)
        self.final_time = check_at_least("final_time", final_time)
        if self.final_time >= (self.warm_start or 1.0):
            raise InputError(f"final_time ({final_time}) must be below the start ({self.warm_start or 1.0})")
        self.subsets = check_integer("subsets", subsets)
        self.osem_iterations = check_integer("osem_iterations", osem_iterations)
        self.osem_subsets = check_integer("osem_subsets", osem_subsets)
        self.progress = bool(progress)
        self.timesteps = self._timesteps()

    @classmethod
    def load_prior(cls, bundle: str | Path, model: PETAcquisitionModel, device: str | torch.device) -> ScoreModel:
        """The score over the model's image grid from the slice priors of ``bundle`` (a name such as
        "pet_fdg_prior" or a folder): all three orientations for volumes, the axial prior for single slices."""
        from diffrecon.priors.bundle import load_volume_prior

        return load_volume_prior(bundle, model.grid.shape, device)

    def _timesteps(self) -> list[tuple[int, int]]:
        schedule = self.prior.schedule
        last = schedule.num_train_timesteps - 1
        start = last if self.warm_start is None else round(self.warm_start * last)
        return ddim_timesteps(schedule, self.steps, start, round(self.final_time * last))

    def settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "eta": self.eta, "warm_start": self.warm_start, "final_time": self.final_time,
                "subsets": self.subsets, "osem_iterations": self.osem_iterations, "osem_subsets": self.osem_subsets}

    def description(self) -> str:
        start = "" if self.warm_start is None else f" warm start {self.warm_start:g}"
        return f"{self.name.upper()} {self.steps} steps{start}"

    def subset_counts(self) -> dict[str, int]:
        """Every view-subset count the method uses, by setting name: each must fit the scanner's views."""
        return {"subsets": self.subsets, "osem_subsets": self.osem_subsets}

    def prepare(self, data: torch.Tensor, model: PETAcquisitionModel, scale: float,
                reference: PETReconstruction) -> dict[str, Any]:
        """Work done once before sampling (e.g. PET-LiSch's likelihood curve), given the scale and the OSEM run
        that set it: the context that :meth:`consistent` gets at every step and :meth:`summary` at the end,
        beside "views" (the view subsets)."""
        return {}

    def consistent(self, activity: torch.Tensor, data: torch.Tensor, model: PETAcquisitionModel, step: int,
                   context: dict[str, Any]) -> torch.Tensor:
        """The data-consistent version of the denoised ``activity`` (num_samples, nx, ny, nz) at reverse step
        ``step`` (0-based), >= 0."""
        raise NotImplementedError

    def summary(self, context: dict[str, Any]) -> dict[str, Any]:
        """What the method adds to the report (JSON-serialisable)."""
        return {}

    def reconstruct(self, data: torch.Tensor, physics: PETAcquisitionModel, num_samples: int,
                    generator: torch.Generator | None) -> Reconstruction:
        data = physics.check_data(data, "measured sinogram")
        check_prior_fits(self.prior, physics)
        for name, count in self.subset_counts().items():  # before any computation
            subset_views(physics.projector.n_views, count, name)
        views = subset_views(physics.projector.n_views, self.subsets)
        clock = Stopwatch(data.device)
        with clock("physics"):
            osem_run = osem(data, physics, self.osem_iterations, self.osem_subsets, progress=False)
        reference = osem_run.image
        scale = emission_mean(reference)
        with clock("physics"):
            context = {"views": views, **self.prepare(data, physics, scale, osem_run)}
        schedule = self.prior.schedule
        shape = (num_samples, *physics.grid.shape)
        noise = torch.randn(shape, generator=generator, device=data.device)
        first = self.timesteps[0][0]
        alpha, sigma = (float(v) for v in schedule.alpha_sigma(first))
        x = noise if self.warm_start is None else alpha * reference / scale + sigma * noise
        bar = tqdm(self.timesteps, desc=self.description(), disable=not self.progress, leave=False)
        with torch.no_grad():
            for step, (t, t_prev) in enumerate(bar):
                with clock("network"):
                    predicted = self.prior.predict_noise(x, t)
                    denoised = self.prior.tweedie(x, t, predicted).clamp_min(0)
                with clock("physics"):
                    activity = self.consistent(scale * denoised, data, physics, step, context)
                x = ddim_step(activity / scale, predicted, schedule, t, t_prev, self.eta, generator)
                if self.progress:
                    bar.set_postfix(step=step + 1)
            with clock("physics"):
                log_likelihood = physics.log_likelihood(activity, data)
        mean, std = summarize_samples(activity)
        report = self.summary(context)
        report.update(network_evaluations=len(self.timesteps), scale=scale,
                      final_log_likelihood=log_likelihood.tolist(),
                      seconds_network=clock.seconds.get("network", 0.0),
                      seconds_physics=clock.seconds.get("physics", 0.0))
        return Reconstruction(mean, std, activity, report)
