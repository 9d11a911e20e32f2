"""Score-MRI and DDS with the shipped MR prior on small images: data consistency at every step, complex images
with their phase, recovery beyond zero-filled, determinism by seed, volumes coupled along z, and refusals of
bad input before sampling."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.classical.mri import conjugate_gradient
from diffrecon.methods import build_method
from diffrecon.methods.dds_mri import DDS
from diffrecon.classical.mri_tv import AxisTV, forward_difference, forward_difference_adjoint
from diffrecon.methods.mri_diffusion import solve_consistency
from diffrecon.methods.spaces import smooth_phase
from diffrecon.methods.score_mri import ScoreMRI
from diffrecon.metrics import nrmse
from diffrecon.physics.mri_coils import birdcage_maps
from diffrecon.physics.mri_masks import sampling_mask
from diffrecon.physics.mri_operators import MRIOperator
from diffrecon.physics.mri_simulation import simulate_kspace


def _phase(shape: tuple[int, int], radians: float = 1.0) -> torch.Tensor:
    x, y = torch.meshgrid(torch.linspace(-1, 1, shape[0]), torch.linspace(-1, 1, shape[1]), indexing="ij")
    return torch.exp(1j * radians * (0.7 * x + 0.5 * y ** 2))


@pytest.fixture(scope="module")
def brain() -> torch.Tensor:
    """A test-split phantom T1 slice as the prior's images (128 x 128 at 1.5 mm), with a smooth phase."""
    from diffrecon.data.phantoms import make_subject
    from diffrecon.physics.geometry import ImageGrid

    t1 = make_subject(20001, ImageGrid((128, 128, 1), (1.5, 1.5, 1.5)), split="test").t1[..., 0]
    return torch.as_tensor(t1) * _phase((128, 128))


def _single_coil(image: torch.Tensor, acceleration: float = 4, snr_db: float | None = None):
    mask = sampling_mask("random", tuple(image.shape), acceleration, center_fraction=0.08, seed=1).mask
    return simulate_kspace(image, mask, snr_db=snr_db, seed=2)


def _multi_coil(image: torch.Tensor, coils: int = 4, acceleration: float = 4, snr_db: float | None = None):
    mask = sampling_mask("random", tuple(image.shape), acceleration, center_fraction=0.08, seed=1).mask
    return simulate_kspace(image, mask, birdcage_maps(tuple(image.shape), coils), snr_db=snr_db, seed=2)


def _recorder():
    steps = []
    return steps, lambda step, image: steps.append((step, image.clone()))


def test_score_mri_is_consistent_with_the_sampled_lines_after_every_step(brain, mr_priors):
    kspace, operator = _single_coil(brain)
    steps, callback = _recorder()
    method = ScoreMRI(mr_priors["ve"], steps=4, callback=callback, progress=False)
    result = method(kspace, operator, generator=torch.Generator().manual_seed(0))
    assert [s for s, _ in steps] == [0, 1, 2, 3]
    sampled = operator.mask.expand_as(kspace)
    for _, estimate in steps:
        torch.testing.assert_close(operator.A(estimate)[:, sampled], kspace[sampled][None], rtol=1e-4,
                                   atol=1e-4 * kspace.abs().max())
    assert max(result.report["data_residual"]) < 1e-5
    assert result.report["network_evaluations"] == 8 and result.report["variant"] == "complex"


def test_real_score_mri_takes_the_real_part_of_the_projection(brain, mr_priors):
    """Chung and Ye's Algorithm 2: x <- Re F⁻¹[(1 − M) F x + y], consistent up to the imaginary part it drops."""
    kspace, operator = _single_coil(brain.abs())
    result = ScoreMRI(mr_priors["ve"], steps=4, variant="real", warm_start=0.3, progress=False)(kspace, operator)
    assert not result.samples.is_complex() and result.report["variant"] == "real"
    assert max(result.report["data_residual"]) < 0.05


@pytest.mark.parametrize("variant", ["ssos", "hybrid"])
def test_coilwise_score_mri_keeps_every_coil_consistent(variant, brain, mr_priors):
    kspace, operator = _multi_coil(brain, coils=3)
    steps, callback = _recorder()
    method = ScoreMRI(mr_priors["ve"], steps=2, variant=variant, sense_every=1, callback=callback, progress=False)
    result = method(kspace, operator, num_samples=2, generator=torch.Generator().manual_seed(0))
    assert steps[-1][1].shape == (2, 3, 128, 128)  # coil images of each sample
    sampled = operator.mask.expand_as(kspace)
    per_coil = MRIOperator(operator.mask)
    for _, coil_images in steps:
        coil_kspace = per_coil.A(coil_images)
        torch.testing.assert_close(coil_kspace[:, sampled], kspace[sampled].expand(2, -1), rtol=1e-4,
                                   atol=1e-4 * kspace.abs().max())
    assert result.samples.shape == (2, 128, 128)
    assert result.samples.is_complex() == (variant == "hybrid")  # SSOS gives the root-sum-of-squares magnitude


def test_diffusion_mri_keeps_the_phase_of_complex_images(brain, mr_priors):
    kspace, operator = _single_coil(brain, acceleration=2)
    inside = brain.abs() > 0.3 * brain.abs().max()
    for method in (DDS(mr_priors["vp"], steps=6, gamma=10, progress=False),
                   ScoreMRI(mr_priors["ve"], steps=6, warm_start=0.3, progress=False)):
        image = method(kspace, operator, generator=torch.Generator().manual_seed(0)).mean
        error = torch.angle(image * brain.conj())[inside].abs()
        assert float(error.mean()) < 0.1, method.name  # radians; the truth's phase spans 1.2 rad


def test_dds_recovers_more_than_zero_filled_and_cg_sense(brain, mr_priors):
    kspace, operator = _multi_coil(brain, coils=4, acceleration=6, snr_db=30)
    reference = brain.abs()
    dds = DDS(mr_priors["vp"], steps=10, gamma=10, progress=False)(kspace, operator,
                                                                    generator=torch.Generator().manual_seed(0))
    baselines = [build_method(name)(kspace, operator).mean.abs() for name in ("zero-filled", "cg-sense")]
    assert nrmse(dds.mean.abs(), reference) < 0.8 * min(nrmse(b, reference) for b in baselines)
    assert max(dds.report["data_residual"]) < 0.05  # about the noise (30 dB)


@pytest.mark.parametrize("coils", [1, 3])
def test_dds_reconstructs_k_space_of_any_size(coils, brain, mr_priors):
    """21 x 27 images, which the prior's network (multiples of 8) does not take as they are, are padded for it: the
    result has the image shape and fits the sampled k-space."""
    image = brain[50:71, 40:67]
    kspace, operator = _single_coil(image) if coils == 1 else _multi_coil(image, coils=coils)
    result = DDS(mr_priors["vp"], steps=3, progress=False)(kspace, operator, num_samples=2,
                                                           generator=torch.Generator().manual_seed(0))
    assert result.samples.shape == (2, 21, 27) and result.mean.shape == image.shape
    assert torch.isfinite(result.samples).all() and max(result.report["data_residual"]) < 0.1


@pytest.mark.parametrize("make", [lambda p: DDS(p["vp"], steps=3, progress=False),
                                  lambda p: ScoreMRI(p["ve"], steps=2, progress=False)])
def test_samples_are_determined_by_the_seed(make, brain, mr_priors):
    kspace, operator = _single_coil(brain, snr_db=30)
    method = make(mr_priors)
    first, again, other = (method(kspace, operator, num_samples=2, generator=torch.Generator().manual_seed(seed))
                           for seed in (3, 3, 4))
    torch.testing.assert_close(first.samples, again.samples, rtol=0, atol=0)
    assert not torch.allclose(first.samples, other.samples)
    assert not torch.allclose(first.samples[0], first.samples[1])  # samples differ from each other
    assert (first.std > 0).any() and first.report["seed"] == 3


def test_warm_start_takes_the_requested_steps_only(brain, mr_priors):
    kspace, operator = _single_coil(brain)
    steps, callback = _recorder()
    result = DDS(mr_priors["vp"], steps=4, warm_start=0.3, callback=callback, progress=False)(kspace, operator)
    assert len(steps) == 4 and result.report["network_evaluations"] == 4
    assert result.report["network_images"] == 8  # real and imaginary parts
    assert result.report["settings"]["warm_start"] == 0.3


def test_dds_clamps_the_tweedie_estimate(brain, mr_priors):
    # from pure noise the first Tweedie estimate (x - σ ε̂) / α divides the network's error by α ≈ 0.006: unclamped,
    # the first data-consistent image is tens of times brighter than the object (and volumes undersampled along z
    # never recover from it, docs/mri_diffusion.md); clamped to the prior's range it stays near the object's
    kspace, operator = _single_coil(brain)
    first = {}
    for clip in (1.0, None):
        steps, callback = _recorder()
        DDS(mr_priors["vp"], steps=2, warm_start=None, clip=clip, callback=callback, progress=False)(
            kspace, operator, generator=torch.Generator().manual_seed(0))
        first[clip] = float(steps[0][1].abs().max() / brain.abs().max())
    assert first[1.0] < 3 < 10 < first[None]


@pytest.mark.parametrize("make", [lambda prior, weight: DDS(prior["vp"], steps=3, slice_tv=weight, progress=False),
                                  lambda prior, weight: ScoreMRI(prior["ve"], steps=3, warm_start=0.3,
                                                                 slice_tv=weight, progress=False)])
def test_volumes_are_coupled_along_z_by_slice_tv(make, mr_priors):
    volume = torch.zeros(16, 16, 6)
    volume[4:12, 4:12, :] = 1.0
    mask = sampling_mask("random", (16, 16, 6), 3, center_fraction=0.2, seed=0).mask
    kspace, operator = simulate_kspace(volume, mask, snr_db=15, seed=0)
    jumps = {}
    for weight in (0.0, 0.05):
        result = make(mr_priors, weight)(kspace, operator, generator=torch.Generator().manual_seed(0))
        assert result.mean.shape == (16, 16, 6)
        jumps[weight] = float(forward_difference(result.mean, -1).abs().mean())
    assert jumps[0.05] < 0.7 * jumps[0.0]


@pytest.mark.parametrize("make", [lambda prior, weight: DDS(prior["vp"], steps=10, plane_tv=weight, plane_rho=0.3,
                                                               progress=False),
                                  lambda prior, weight: ScoreMRI(prior["ve"], steps=5, warm_start=0.3,
                                                                 plane_tv=weight, plane_rho=0.3, progress=False)])
def test_plane_tv_recovers_a_piecewise_constant_image_better(make, mr_priors):
    image = torch.zeros(32, 32)
    image[8:24, 8:24] = 1.0
    image[12:18, 12:18] = 0.5
    mask = sampling_mask("random", (32, 32), 4, center_fraction=0.1, seed=0).mask
    kspace, operator = simulate_kspace(image, mask, snr_db=10, seed=0)
    variation, error = {}, {}
    for weight in (0.0, 0.05):
        result = make(mr_priors, weight)(kspace, operator, generator=torch.Generator().manual_seed(0))
        assert result.report["settings"]["plane_tv"] == weight
        variation[weight] = sum(float(forward_difference(result.mean, axis).abs().mean()) for axis in (0, 1))
        error[weight] = nrmse(result.mean.abs(), image)
    assert variation[0.05] < 0.7 * variation[0.0] and error[0.05] < 0.9 * error[0.0], (variation, error)


def test_admm_rounds_minimise_the_total_variation_objective():
    """solve_consistency with a plane coupling minimises ½‖Ax − y‖² + μ/2‖x − a‖² + w Σ_a ‖D_a x‖₁: more ADMM
    rounds come closer to the minimum (600 rounds as the reference), the rounds are not a no-op."""
    image = torch.zeros(24, 24)
    image[6:18, 6:18] = 1.0
    mask = sampling_mask("random", (24, 24), 3, center_fraction=0.1, seed=0).mask
    kspace, operator = simulate_kspace(image, mask, snr_db=15, seed=0)
    anchor, mu, weight = torch.zeros_like(kspace), 0.1, 0.02

    def objective(x: torch.Tensor) -> float:
        data = 0.5 * (operator.A(x) - operator.apply_mask(kspace)).abs().pow(2).sum()
        tv = sum(forward_difference(x, axis).abs().sum() for axis in (0, 1))
        return float(data + 0.5 * mu * (x - anchor).abs().pow(2).sum() + weight * tv)

    def solve(rounds: int) -> float:
        coupling = AxisTV(weight, 0.5, (0, 1))
        x = solve_consistency(anchor.clone(), kspace, operator, 5, mu, anchor, [coupling], admm_iterations=rounds)
        return objective(x)

    best = solve(600)
    gaps = [solve(rounds) - best for rounds in (1, 4, 20)]
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-6 * abs(best) and gaps[2] < 0.05 * gaps[0], (gaps, best)


def test_forward_difference_adjoint_and_batched_cg():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, generator=generator, dtype=torch.complex128)
    d = torch.randn(3, 4, 5, generator=generator, dtype=torch.complex128)
    for axis in (-1, -2, 1):
        torch.testing.assert_close(torch.vdot(forward_difference(x, axis).flatten(), d.flatten()),
                                   torch.vdot(x.flatten(), forward_difference_adjoint(d, axis).flatten()))
    # per-item CG equals solving each item alone
    scales = torch.tensor([1.0, 5.0, 0.2], dtype=torch.float64).reshape(3, 1, 1)
    normal = lambda v: forward_difference_adjoint(forward_difference(v, -1), -1)  # noqa: E731
    system = lambda v: scales * v + normal(v)  # noqa: E731
    together = conjugate_gradient(system, x, torch.zeros_like(x), 50, batch_ndim=1)
    for i in range(3):
        alone = conjugate_gradient(lambda v: scales[i] * v + normal(v), x[i], torch.zeros_like(x[i]), 50)
        torch.testing.assert_close(together[i], alone)
    torch.testing.assert_close(system(together), x)


def test_smooth_phase_recovers_a_smooth_phase(brain):
    estimate = smooth_phase(brain, 2)
    inside = brain.abs() > 0.3 * brain.abs().max()
    assert float(torch.angle(estimate * brain.conj())[inside].abs().mean()) < 0.05


def test_bad_input_is_refused_before_sampling(brain, mr_priors):
    kspace, operator = _single_coil(brain)
    multi, multi_operator = _multi_coil(brain, coils=2)
    ve, vp = mr_priors["ve"], mr_priors["vp"]
    with pytest.raises(InputError, match="variant 'ssos' needs multi-coil k-space"):
        ScoreMRI(ve, steps=1, variant="ssos")(kspace, operator)
    with pytest.raises(InputError, match="variant 'complex' is for single-coil k-space; this k-space has 2 coils"):
        ScoreMRI(ve, steps=1, variant="complex")(multi, multi_operator)
    with pytest.raises(InputError, match="kspace has shape .*expected trailing shape"):
        DDS(vp, steps=1)(kspace[:, :60], operator)
    nan = kspace.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(InputError, match="kspace contains 1 NaN"):
        DDS(vp, steps=1)(nan, operator)
    with pytest.raises(InputError, match="kspace must be a complex torch tensor"):
        DDS(vp, steps=1)(kspace.real, operator)
    thin_kspace, thin_operator = _single_coil(brain[40:46, :60])
    with pytest.raises(InputError, match=r"^the image of 6 x 60 voxels is too small for the prior: it needs at least "
                                         r"8 voxels along each axis$"):
        DDS(vp, steps=1)(thin_kspace, thin_operator)
    with pytest.raises(InputError, match="score-mri needs the VE form"):
        ScoreMRI(vp)
    with pytest.raises(InputError, match="dds needs the VP form"):
        DDS(ve)
    with pytest.raises(InputError, match=r"warm_start must be a fraction in \(0, 1\) of the noise schedule \(or null: "
                                         r"start from pure noise\), got 1.5"):
        DDS(vp, warm_start=1.5)
    with pytest.raises(InputError, match="clip must be a finite number > 0"):
        DDS(vp, clip=0)
    with pytest.raises(InputError, match="plane_tv must be a finite number >= 0"):
        DDS(vp, plane_tv=-0.1)
    with pytest.raises(InputError, match="plane_rho must be > 0 with plane_tv > 0, got 0"):
        ScoreMRI(ve, plane_tv=0.01, plane_rho=0)
    with pytest.raises(InputError, match="slice_rho must be > 0 with slice_tv > 0, got 0"):
        DDS(vp, slice_rho=0)
    with pytest.raises(InputError, match="nothing was measured"):
        DDS(vp, steps=1)(torch.zeros_like(kspace), operator)
