"""Modality spaces: what differs between PET and MRI around the one sampler (:mod:`diffrecon.methods.sampler`).

A space checks the data and the prior, computes the reference image and the scale between prior units and the
data, maps the network's images to the images the data-consistency steps work on and back, clamps the denoised
estimate, and reports the data fit.

The scale is the prior's intensity convention applied to the reference image (``ScoreModel.intensity_scale``;
the bundle declares it, the modality's is the default):

- :class:`PETSpace`: non-negative activity. The reference is an OSEM image of the data; the scale is its emission
  mean (the PET prior's training images were divided by theirs); network images are activity / scale, x̂₀ is
  clamped >= 0; the data fit is the Poisson log-likelihood and deviance of each sample against the discrepancy
  target (:func:`~diffrecon.methods.discrepancy.poisson_discrepancy`).
- :class:`MRISpace`: complex images. The reference is the zero-filled (one coil) or CG-SENSE image; the scale is
  the 99.9th percentile of its magnitude (the MR prior's images lie in [0, 1]); the data-consistency steps work in
  prior units (k-space divided by the scale); a complex image enters the network as its real and imaginary parts,
  two images of the batch (Chung and Ye 2022, Alg. 3), demodulated by its smooth phase; the data fit is ‖A x − y‖ /
  ‖y‖ of each sample and its deviance against σ² m (:func:`~diffrecon.methods.discrepancy.gaussian_discrepancy`). Volumes (x, y, z) are scored slice by slice (the axial prior in a :class:`TriPlanarScore`).
"""
from __future__ import annotations

from typing import Any

import torch

from diffrecon.checks import InputError, check_at_least, check_auto, check_integer, check_positive
from diffrecon.classical.mri import cg_sense, zero_filled
from diffrecon.classical.pet import PETReconstruction, osem
from diffrecon.methods.base import Stopwatch
from diffrecon.methods.discrepancy import (TARGET_ITERATIONS, Discrepancy, gaussian_discrepancy,
                                           poisson_discrepancy)
from diffrecon.methods.sampler import Call
from diffrecon.physics.fidelity import GaussianLeastSquares, PoissonLikelihood
from diffrecon.physics.mri_fft import fft_centered, ifft_centered
from diffrecon.physics.mri_operators import MRIOperator
from diffrecon.physics.pet import PETAcquisitionModel, subset_views
from diffrecon.priors.guidance import check_guidance, guided_score
from diffrecon.priors.prior import ScoreModel
from diffrecon.priors.volume import TriPlanarScore

MAX_REFERENCE_ITERATIONS = 2
"""The most iterations of the "auto" OSEM reference (the fixed count before 2026-12-07)."""
REFERENCE_CG_ITERATIONS = 4  # CG-SENSE reference of multi-coil data (the registry's cg-sense default)
PHASE_RESOLUTION = 0.03  # k-space width (fraction of each axis) of the low-pass that estimates the smooth phase


def check_prior_fits(prior: ScoreModel, model: PETAcquisitionModel, tolerance: float = 0.05) -> None:
    """Raise :class:`InputError` unless ``prior`` scores (..., x, y, z) volumes of the model's grid: 3 spatial
    dims, slices large enough for its networks (any size of at least a few voxels: the prior pads other sizes to its
    networks' multiple), and (where the prior knows it) the voxel size it was trained at, within ``tolerance``."""
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


class ModalitySpace:
    """What both spaces share: the physics they take and the prior bundle a refusal points to."""

    modality: str
    physics_type: type
    physics_label: str  # the physics type with its article, for the refusal
    physics_name: str  # what the physics is called in the hint
    default_prior: str

    @classmethod
    def prior_hint(cls, kind: str) -> str:
        return f"diffrecon.priors.bundle.fit_prior({cls.default_prior!r}, {cls.physics_name}, {kind!r})"

    @classmethod
    def check_physics(cls, physics: Any) -> None:
        if not isinstance(physics, cls.physics_type):
            raise InputError(f"physics must be {cls.physics_label}, got {type(physics).__name__}")

    def check_prior(self, prior: ScoreModel) -> None:
        """Refuse, when the method is built, a prior this space cannot use with its settings (default: none)."""

    def description(self) -> str:
        """What the method's one-line description adds for this space's settings (default: nothing)."""
        return ""


class PETSpace(ModalitySpace):
    """Non-negative activity images (module notes).

    Args:
        osem_iterations: iterations of the OSEM image that sets the scale (and the warm start); "auto": up to
            :data:`MAX_REFERENCE_ITERATIONS`, fewer where the data's discrepancy aim is met first (OSEM stopped by
            the discrepancy principle: at low counts one iteration already fits the noise). The OSEM run goes on to
            the iterations the target is set from (:data:`~diffrecon.methods.discrepancy.TARGET_ITERATIONS`).
        osem_subsets: its view subsets.
        mr: the subject's T1 (or other MR) on the PET image grid, for a prior conditioned on it (an MR-guided PET
            prior such as pet_fdg_mr_prior); scaled to the prior's condition units here. None: without a conditional
            prior, or for its unconditional score.
        guidance: classifier-free guidance strength w >= 0 of a conditional prior: the network's noise prediction
            is (1 + w) eps(x, mr) - w eps(x, 0) (:class:`~diffrecon.priors.guidance.GuidedScore`); 0 with an MR: the
            conditional prediction alone.
    """

    modality, default_prior = "PT", "pet_fdg_prior"
    physics_type, physics_label, physics_name = PETAcquisitionModel, "a PETAcquisitionModel", "physics"

    def __init__(self, osem_iterations: int | str, osem_subsets: int, mr: Any = None, guidance: float = 0.0) -> None:
        self.osem_iterations = check_auto("osem_iterations", osem_iterations, check_integer, "an integer >= 1")
        self.osem_subsets = check_integer("osem_subsets", osem_subsets)
        self.guidance = check_guidance(guidance)
        self.mr = mr
        self.conditional = False

    def settings(self) -> dict[str, Any]:
        guided = {"guidance": self.guidance, "mr": self.mr is not None} if self.conditional else {}
        return {"osem_iterations": self.osem_iterations, "osem_subsets": self.osem_subsets, **guided}

    def description(self) -> str:
        """The guidance of a conditional prior, so the report and the figure title say the run was MR-guided."""
        if not self.conditional:
            return ""
        return f", MR-guided w={self.guidance:g}" if self.mr is not None else ", MR prior without an MR"

    def check_prior(self, prior: ScoreModel) -> None:
        """Refuse an MR or guidance for an unconditional prior, guidance without an MR for a conditional one, and
        a bad MR (:func:`~diffrecon.priors.guidance.guided_score`); its grid is checked against the physics' at the
        call, before any work."""
        self.conditional = guided_score(prior, self.mr, self.guidance) is not prior

    def prepare(self, data: torch.Tensor, physics: PETAcquisitionModel, prior: ScoreModel, num_samples: int,
                generator: torch.Generator | None) -> Call:
        """Check the counts and the prior, run OSEM, set the scale."""
        fidelity = PoissonLikelihood(physics, data)
        prior = guided_score(prior, self.mr, self.guidance)
        check_prior_fits(prior, physics)
        subset_views(physics.projector.n_views, self.osem_subsets, "osem_subsets")
        clock = Stopwatch(fidelity.data.device)
        with clock("physics"):
            reference, run, discrepancy = self._reference(fidelity)
        scale = prior.intensity_scale(reference, "emission_mean")
        return Call(fidelity.data, physics, prior, fidelity.data, reference, scale, clock, generator, num_samples,
                    fidelity, extras={"osem": run}, discrepancy=discrepancy)

    def _reference(self, fidelity: PoissonLikelihood) -> tuple[torch.Tensor, PETReconstruction, Discrepancy]:
        """The OSEM reference image, the OSEM run it is part of (its curve, for PET-LiSch's schedule) and the
        discrepancy target, set from that run's image at :data:`~diffrecon.methods.discrepancy.TARGET_ITERATIONS`.
        The reference has ``osem_iterations`` iterations, or ("auto") the first at which the deviance meets the
        aim (``Discrepancy.aim``), at most :data:`MAX_REFERENCE_ITERATIONS`."""
        data, model = fidelity.data, fidelity.model
        fixed = self.osem_iterations != "auto"
        images, curve = [], []
        image = None
        for _ in range(max(TARGET_ITERATIONS, self.osem_iterations if fixed else MAX_REFERENCE_ITERATIONS)):
            run = osem(data, model, 1, self.osem_subsets, initial=image, progress=False)
            image = run.image
            images.append(image)
            curve += run.log_likelihood
        discrepancy = poisson_discrepancy(fidelity, images[TARGET_ITERATIONS - 1])
        chosen = self.osem_iterations if fixed else MAX_REFERENCE_ITERATIONS
        if not fixed and discrepancy.available:
            saturated = fidelity.saturated()
            met = [k for k in range(1, chosen + 1) if 2 * (saturated - curve[k - 1]) <= discrepancy.aim]
            chosen = met[0] if met else chosen
        return images[chosen - 1], PETReconstruction(image, curve), discrepancy

    def represent(self, call: Call) -> None:
        """Nothing to set up: activity images are real."""

    def to_network(self, image: torch.Tensor, call: Call) -> torch.Tensor:
        return image / call.scale

    def from_network(self, x: torch.Tensor, call: Call, clamp: bool = True) -> torch.Tensor:
        """Activity of the network's images, clamped >= 0 (always: counts need non-negative activity)."""
        return call.scale * x.clamp_min(0)

    @staticmethod
    def guidance_objective(image: torch.Tensor, call: Call) -> torch.Tensor:
        """What DPS descends, per sample: log of the Poisson deviance, whose gradient ∇D / D is Singh et al.'s
        normalised PET-DPS step (the likelihood gradient over the negative log-likelihood)."""
        return call.fidelity.deviance(image).log()

    def output(self, image: torch.Tensor, call: Call) -> torch.Tensor:
        return image

    def data_fit(self, image: torch.Tensor, call: Call, evaluations: int) -> dict[str, Any]:
        guided = {"network_evaluations_per_step": call.score.evaluations_per_call} if self.conditional else {}
        with call.clock("physics"):
            return {"final_log_likelihood": call.fidelity.value(image).tolist(), **guided,
                    **call.discrepancy.report(call.fidelity.deviance(image))}


def to_channels(image: torch.Tensor, ndim: int, phase: torch.Tensor | None = None) -> torch.Tensor:
    """A complex image (..., *spatial), demodulated by ``phase`` (e^{iφ}) if given, as its real and imaginary
    parts (..., 2, *spatial), a real image as (..., 1, *spatial): the images the network sees."""
    if phase is not None:
        image = image * phase.conj()
    if not image.is_complex():
        return image.unsqueeze(-ndim - 1)
    return torch.stack((image.real, image.imag), dim=-ndim - 1)


def to_complex(channels: torch.Tensor, ndim: int, phase: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of :func:`to_channels`: (..., 2, *spatial) -> complex (modulated by ``phase``), (..., 1, *spatial)
    -> real."""
    parts = channels.unbind(-ndim - 1)
    if len(parts) == 1:
        return parts[0]
    image = torch.complex(parts[0], parts[1])
    return image if phase is None else image * phase


def smooth_phase(image: torch.Tensor, ndim: int) -> torch.Tensor:
    """e^{iφ} of the smooth phase φ of a complex ``image`` (..., *spatial): the phase of its low-pass (a Gaussian
    window over the central :data:`PHASE_RESOLUTION` of k-space, the calibration region)."""
    kspace = fft_centered(image, ndim)
    window = torch.ones((), device=image.device)
    for axis, n in enumerate(image.shape[-ndim:]):
        k = (torch.arange(n, device=image.device) - n // 2) / (PHASE_RESOLUTION * n)
        window = window.unsqueeze(-1) * torch.exp(-0.5 * k ** 2) if axis else torch.exp(-0.5 * k ** 2)
    low = ifft_centered(kspace * window, ndim)
    return torch.where(low.abs() > 0, low / low.abs().clamp_min(torch.finfo(low.real.dtype).tiny), 1)


class MRISpace(ModalitySpace):
    """Complex images in prior units (module notes).

    Args:
        phase_correction: the prior sees the image times e^{-iφ}, φ its smooth phase estimated from the reference
            (:func:`smooth_phase`), so that it sees images close to the real, non-negative magnitude images it was
            trained on; off, it sees the real and imaginary parts as they are (as the reference implementation),
            which fails for images with phase (docs/mri_diffusion.md). Our choice.
        chunk_size: slices per network call for volumes.
        clip: the Tweedie estimate (real and imaginary parts, prior units) is clamped to [-clip, clip] (DDPM's
            clipping of x̂₀; the prior's images lie in [0, 1]); None: not clamped.
        noise_sigma: σ of the complex k-space noise (E|n|² = σ², the data's units) that sets the discrepancy target;
            "auto": the operator's (a noise scan of the file), else estimated from the k-space; 0: noise-free data
            (hard consistency).
    """

    modality, default_prior = "MR", "mr_t1_prior"
    physics_type, physics_label, physics_name = MRIOperator, "an MRIOperator", "operator"

    def __init__(self, phase_correction: bool, chunk_size: int, clip: float | None = None,
                 noise_sigma: float | str = "auto") -> None:
        self.phase_correction = bool(phase_correction)
        self.noise_sigma = check_auto("noise_sigma", noise_sigma, check_at_least,
                                      "the k-space noise σ >= 0 in its units (0: noise-free)")
        self.chunk_size = check_integer("chunk_size", chunk_size)
        if clip is not None:
            check_positive("clip", clip)
        self.clip = None if clip is None else float(clip)

    def settings(self) -> dict[str, Any]:
        return {"phase_correction": self.phase_correction, "noise_sigma": self.noise_sigma}

    def score_model(self, prior: ScoreModel, operator: MRIOperator) -> ScoreModel:
        """The prior for images of ``operator``'s shape: itself for slices, axial slice by slice for volumes;
        raises :class:`InputError` if the prior cannot take the image size (too few voxels along an axis; the
        prior pads any other size to its network's multiple)."""
        if prior.spatial_dims != 2:
            raise InputError(f"prior scores {prior.spatial_dims}D images; the MRI methods need a 2D slice prior "
                             "(volumes are scored slice by slice)")
        try:
            prior.check_image(torch.empty(operator.shape[:2], device="meta"))
        except InputError as error:  # in the user's words: the image, not the k-space or the network's input x
            minimum = getattr(prior, "min_size", None)
            need = f"it needs at least {minimum} voxels along each axis" if minimum else str(error)
            raise InputError(f"the image of {' x '.join(map(str, operator.shape))} voxels is too small for the prior: "
                             f"{need}") from None
        if operator.ndim == 2:
            return prior
        return TriPlanarScore({"axial": prior}, chunk_size=self.chunk_size)

    def prepare(self, data: torch.Tensor, physics: MRIOperator, prior: ScoreModel, num_samples: int,
                generator: torch.Generator | None) -> Call:
        """Check the k-space, fit the prior to its image size, compute the reference image and the scale."""
        kspace = physics.check_kspace(data)
        score = self.score_model(prior, physics)
        clock = Stopwatch(kspace.device)
        with clock("physics"):
            if physics.coil_maps is None:
                image = zero_filled(kspace, physics).image
            else:
                image = cg_sense(kspace, physics, REFERENCE_CG_ITERATIONS).image
        scale = prior.intensity_scale(image, "magnitude_peak")
        if not scale > 0:
            raise InputError("kspace: the reference image is zero everywhere; nothing was measured")
        measured = kspace / scale
        mask = physics.mask.to(kspace.device).bool()
        measurements = int(mask.sum()) * (kspace.numel() // mask.numel())
        discrepancy = gaussian_discrepancy(kspace, mask, measurements, self.noise_sigma, scale, physics.noise_sigma)
        return Call(kspace, physics, score, measured, image / scale, scale, clock, generator, num_samples,
                    GaussianLeastSquares(physics, measured), discrepancy=discrepancy)

    def represent(self, call: Call) -> None:
        """The smooth phase of the (method's) reference, which the prior's images are demodulated by."""
        reference = call.reference
        if self.phase_correction and reference.is_complex():
            call.phase = smooth_phase(reference, call.physics.ndim)

    def to_network(self, image: torch.Tensor, call: Call) -> torch.Tensor:
        return to_channels(image, call.physics.ndim, call.phase)

    def from_network(self, x: torch.Tensor, call: Call, clamp: bool = True) -> torch.Tensor:
        """The image of the network's images, clamped to [-clip, clip] first where set and ``clamp`` (denoised
        estimates; not noisy images)."""
        if clamp and self.clip is not None:
            x = x.clamp(-self.clip, self.clip)
        return to_complex(x, call.physics.ndim, call.phase)

    @staticmethod
    def guidance_objective(image: torch.Tensor, call: Call) -> torch.Tensor:
        """What DPS descends, per sample: the residual norm ‖A x − y‖ (prior units), as the reference code (not
        squared: the step ζ / ‖y − A x̂₀‖ of the paper)."""
        return call.fidelity.deviance(image).sqrt()

    def output(self, image: torch.Tensor, call: Call) -> torch.Tensor:
        return image * call.scale

    def data_fit(self, image: torch.Tensor, call: Call, evaluations: int,
                 fidelity: GaussianLeastSquares | None = None) -> dict[str, Any]:
        """‖A x − y‖ / ‖y‖ per sample (``fidelity``: another operator's, e.g. coil-wise) and the 2D images the
        network saw per sample."""
        fidelity = fidelity or call.fidelity
        shape = call.physics.shape
        per_call = self.to_network(call.reference, call).numel() // (shape[0] * shape[1])
        return {"network_images": evaluations * per_call, "data_residual": fidelity.relative_residual(image),
                **call.discrepancy.report(fidelity.deviance(image))}
