from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.classical.penalties import (AnchorPenalty, Penalty, PenaltySum, QuadraticPenalty,
                                           RelativeDifferencePenalty, bowsher_selection)

SHAPE = (6, 5, 4)


def _bowsher_weighted(penalty_class, beta: float = 1.3):
    return penalty_class(beta=beta, shape=SHAPE, voxel_size_mm=(2.0, 2.0, 3.0),
                         selection=bowsher_selection(torch.rand(SHAPE), n_selected=5))


@pytest.mark.parametrize("penalty_class", [RelativeDifferencePenalty, QuadraticPenalty])
def test_penalty_gradient_matches_autograd_with_asymmetric_weights(penalty_class):
    penalty = _bowsher_weighted(penalty_class)
    x = (torch.rand(2, *SHAPE) + 0.1).double().requires_grad_(True)
    penalty.value(x).sum().backward()
    torch.testing.assert_close(penalty.gradient(x.detach()), x.grad)


@pytest.mark.parametrize("penalty_class", [RelativeDifferencePenalty, QuadraticPenalty])
def test_curvature_is_the_secant_to_a_neighbour_mean(penalty_class):
    """gradient = curvature × (x − z) with z a weighted mean of the neighbours, so z lies within the image's
    range (a preconditioned penalty step cannot go negative); on a flat image the curvature is the Hessian
    diagonal."""
    penalty = _bowsher_weighted(penalty_class)
    x = (torch.rand(2, *SHAPE) * torch.tensor([1.0, 1e3])[:, None, None, None]).double()
    x[0, 2, 2, 1] = 0.0
    curvature = penalty.curvature(x)
    assert curvature.min() > 0
    target = x - penalty.gradient(x) / curvature
    low, high = x.flatten(1).min(1).values, x.flatten(1).max(1).values
    assert (target.flatten(1) >= low[:, None] * (1 - 1e-9)).all()
    assert (target.flatten(1) <= high[:, None] * (1 + 1e-9)).all()
    flat = torch.full((1, *SHAPE), 2.0, dtype=torch.float64)
    for voxel in [(0, 2, 2, 1), (0, 0, 4, 3)]:
        step = torch.zeros_like(flat)
        step[voxel] = 1e-5
        second = (penalty.gradient(flat + step)[voxel] - penalty.gradient(flat - step)[voxel]) / 2e-5
        assert penalty.curvature(flat)[voxel].item() == pytest.approx(second.item(), rel=1e-5)


def test_anchor_penalty_value_gradient_curvature():
    anchor = torch.rand(SHAPE).double()
    penalty = AnchorPenalty(0.7, anchor)
    x = torch.rand(3, *SHAPE).double()
    torch.testing.assert_close(penalty.value(x), 0.35 * ((x - anchor) ** 2).flatten(1).sum(1))
    torch.testing.assert_close(penalty.gradient(x), 0.7 * (x - anchor))
    torch.testing.assert_close(penalty.curvature(x), torch.full_like(x, 0.7))
    per_item = AnchorPenalty(0.7, anchor[None].repeat(3, 1, 1, 1) + torch.arange(3.0)[:, None, None, None])
    torch.testing.assert_close(per_item.gradient(x)[2], 0.7 * (x[2] - anchor - 2))
    assert isinstance(penalty, Penalty) and isinstance(_bowsher_weighted(QuadraticPenalty), Penalty)


def test_sum_of_penalties_has_the_gradient_of_the_sum():
    rdp = _bowsher_weighted(RelativeDifferencePenalty, beta=0.8)
    anchor = AnchorPenalty(2.0, torch.rand(SHAPE))
    total = PenaltySum(anchor, rdp)
    x = (torch.rand(2, *SHAPE) + 0.1).double()
    gradient = total.gradient(x)
    for voxel in [(0, 1, 2, 3), (1, 5, 0, 0), (1, 3, 3, 2)]:
        step = torch.zeros_like(x)
        step[voxel] = 1e-6
        difference = (total.value(x + step) - total.value(x - step))[voxel[0]] / 2e-6
        assert gradient[voxel].item() == pytest.approx(difference.item(), rel=1e-6)
    torch.testing.assert_close(total.value(x), anchor.value(x) + rdp.value(x))
    torch.testing.assert_close(total.curvature(x), anchor.curvature(x) + rdp.curvature(x))


def test_bad_penalty_inputs_are_refused():
    with pytest.raises(InputError, match="n_selected"):
        bowsher_selection(torch.rand(4, 4, 4), n_selected=27)
    with pytest.raises(InputError, match="beta"):
        RelativeDifferencePenalty(beta=-1, shape=(4, 4, 4), voxel_size_mm=(1, 1, 1))
    with pytest.raises(InputError, match="lam"):
        AnchorPenalty(float("nan"), torch.zeros(4, 4, 4))
    with pytest.raises(InputError, match="anchor must be"):
        AnchorPenalty(1.0, torch.zeros(4, 4))
    with pytest.raises(InputError, match="anchor contains"):
        AnchorPenalty(1.0, torch.full((4, 4, 4), float("inf")))
    with pytest.raises(InputError, match="anchor has shape"):
        AnchorPenalty(1.0, torch.zeros(2, 4, 4, 4)).gradient(torch.zeros(3, 4, 4, 4))
    with pytest.raises(InputError, match="PenaltySum"):
        PenaltySum(torch.zeros(3))
