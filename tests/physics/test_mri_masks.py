"""Sampling masks: realised acceleration within 5%, calibration region, reproducibility, clear errors."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.physics.mri_masks import MASK_KINDS, calibration_width, sampling_mask

ONE_D = ("random", "gaussian1d", "equispaced")


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("acceleration", [2, 4, 6.5, 8])
def test_realised_acceleration_is_within_five_percent(kind, acceleration):
    result = sampling_mask(kind, (96, 96), acceleration, center_fraction=0.08, seed=1)
    realised = result.mask.numel() / result.mask.sum().item()
    assert realised == pytest.approx(result.acceleration)
    assert abs(realised - acceleration) <= 0.05 * acceleration
    assert result.mask.shape == (96, 96) and result.mask.dtype == torch.bool


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_same_seed_same_mask_other_seed_other_mask(kind):
    first = sampling_mask(kind, (64, 64), 4, seed=5).mask
    assert torch.equal(first, sampling_mask(kind, (64, 64), 4, seed=5).mask)
    assert not torch.equal(first, sampling_mask(kind, (64, 64), 4, seed=6).mask)


@pytest.mark.parametrize("kind", ONE_D)
def test_line_masks_keep_whole_lines_and_the_centre(kind):
    result = sampling_mask(kind, (20, 100), 4, center_fraction=0.1, seed=0)
    lines = result.mask[0]
    assert torch.equal(result.mask, lines.expand(20, 100))  # readout fully sampled
    assert result.calibration == (10,)
    assert lines[45:55].all()


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_the_centre_is_where_espirit_looks_on_odd_axes_too(kind):
    """An even centre on an odd axis (4 of 27 lines) starts at n // 2 - 2 = 11, where sigpy's ESPIRiT crops its
    calibration region: all of it counts."""
    result = sampling_mask(kind, (21, 27), 4, center_fraction=0.15, seed=0)
    rows = slice(None) if kind in ONE_D else slice(9, 12)  # 2D kinds: 3 of 21 rows, from 21 // 2 - 1 = 9
    assert result.calibration[-1] == 4 and result.mask[rows, 11:15].all()
    assert calibration_width(result.mask) >= min(result.calibration)


def test_two_d_masks_on_a_volume_undersample_the_phase_plane():
    result = sampling_mask("poisson", (5, 40, 32), 4, center_fraction=0.1, seed=0)
    assert torch.equal(result.mask, result.mask[0].expand(5, 40, 32))
    assert result.calibration == (4, 3) and result.mask[0, 18:22, 15:18].all()


def test_equispaced_lines_are_evenly_spaced_outside_the_acs_block():
    lines = sampling_mask("equispaced", (4, 128), 4, center_fraction=0.0, seed=2).mask[0]
    gaps = torch.diff(torch.nonzero(lines).flatten())
    assert set(gaps.tolist()) <= {4}


def test_acceleration_one_samples_everything():
    assert sampling_mask("gaussian2d", (16, 16), 1).mask.all()


@pytest.mark.parametrize("acceleration, message", [(0.5, "acceleration must be a number >= 1"),
                                                    (7.5, "impossible for 16 phase-encode lines"),
                                                    (40, "impossible for 16 phase-encode lines")])
def test_bad_accelerations_are_named(acceleration, message):
    with pytest.raises(InputError, match=message):
        sampling_mask("random", (8, 16), acceleration)


def test_a_centre_larger_than_the_budget_is_refused():
    with pytest.raises(InputError, match="center_fraction 0.5 keeps 32 central samples"):
        sampling_mask("random", (8, 64), 4, center_fraction=0.5)


def test_unknown_kind_is_named():
    with pytest.raises(InputError, match="unknown mask kind 'radial'"):
        sampling_mask("radial", (8, 8), 2)
