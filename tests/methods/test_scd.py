"""SCD (steerable conditional diffusion): the adapters alone are trained, the data loss falls at every adapted step,
the prior is left bit-identical and without adapters (also when sampling fails), and bad settings are refused."""
from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.methods.dds_mri import DDS
from diffrecon.methods.scd import SteeredDDS, SteeredPETDDS, SteeredPETLiSch, Steering
from diffrecon.priors.adapters import LoRALayer
from tests.methods.conftest import unet_volume_prior
from tests.methods.test_mri_diffusion import _single_coil, brain  # noqa: F401 (a fixture)
from tests.methods.test_pet_diffusion import _scan


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def _assert_untouched(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    assert not any(isinstance(module, LoRALayer) for module in model.modules())
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[key], before[key]) for key in before)


def _assert_steered(report: dict, adapted: list[int], iterations: int) -> None:
    losses = report["steering_losses"]
    assert [entry["step"] for entry in losses] == adapted
    assert all(entry["after"] < entry["before"] for entry in losses)  # the data loss falls
    assert all(entry["updates"] == iterations for entry in losses)
    # a forward and a backward pass per update, and a forward pass to measure the last one
    assert report["steering_evaluations"] == len(adapted) * (2 * iterations + 1) and report["seconds_steering"] > 0


def test_scd_dds_trains_only_adapters_lowers_the_loss_and_leaves_the_prior(brain, mr_priors):  # noqa: F811
    kspace, operator = _single_coil(brain[40:88, 40:88], snr_db=30)
    prior = mr_priors["vp"]
    before = _weights(prior)
    method = SteeredDDS(prior, steps=5, adapt_iterations=3, learning_rate=1e-2, skip=2, last=1, stop_at_aim=False,
                        progress=False)
    report = method(kspace, operator).report
    _assert_steered(report, [0, 2, 4], 3)
    _assert_untouched(prior, before)
    assert report["settings"]["rank"] == 4 and report["settings"]["skip"] == 2


def test_scd_does_not_adapt_a_sample_that_meets_the_discrepancy_aim(brain, mr_priors):  # noqa: F811
    """With the floor at the discrepancy aim (the default) a sample whose estimate already fits the data as well as
    the noise allows trains nothing, and the result is the base method's bit for bit (zero-initialised adapters).
    The noise given is large, so every estimate meets the aim."""
    kspace, operator = _single_coil(brain[40:88, 40:88], snr_db=30)
    prior, noise = mr_priors["vp"], float(kspace.abs().max())
    steered = SteeredDDS(prior, steps=4, skip=2, last=1, noise_sigma=noise, progress=False)(
        kspace, operator, generator=torch.Generator().manual_seed(3))
    plain = DDS(prior, steps=4, noise_sigma=noise, progress=False)(kspace, operator,
                                                                   generator=torch.Generator().manual_seed(3))
    assert all(entry["updates"] == 0 and entry["after"] == entry["before"]
               for entry in steered.report["steering_losses"])
    assert steered.report["steering_evaluations"] == 3  # one forward pass per adapted step
    assert torch.equal(steered.mean, plain.mean)


@pytest.mark.parametrize("method,em_steps", [(SteeredPETDDS, 0), (SteeredPETLiSch, 0), (SteeredPETDDS, 1)])
def test_scd_pet_methods_train_only_adapters_and_lower_the_loss(method, em_steps):
    measured, model, _ = _scan()
    prior = unet_volume_prior()
    before = _weights(prior)
    report = method(prior, steps=4, adapt_iterations=2, learning_rate=1e-2, skip=4, last=1, stop_at_aim=False,
                    em_steps=em_steps, progress=False)(measured, model, num_samples=2).report
    assert report["settings"]["em_steps"] == em_steps
    _assert_steered(report, [0, 3], 2)
    _assert_untouched(prior, before)


def test_adapters_are_removed_when_sampling_fails():
    measured, model, _ = _scan()
    prior = unet_volume_prior()
    before = _weights(prior)

    def fail(step, image):
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        SteeredPETDDS(prior, steps=3, callback=fail, progress=False)(measured, model)
    _assert_untouched(prior, before)


@pytest.mark.parametrize("settings,message", [
    ({"rank": 0}, "rank must be an integer >= 1, got 0"),
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0, got 0.0"),
    ({"iterations": 0}, "iterations must be an integer >= 1, got 0"),
    ({"skip": 0}, "skip must be an integer >= 1, got 0"),
    ({"stop_at_aim": "yes"}, "stop_at_aim must be true or false, got 'yes'"),
])
def test_bad_steering_settings_are_refused(settings, message):
    with pytest.raises(InputError, match=message):
        Steering(**settings)


def test_negative_em_steps_are_refused():
    with pytest.raises(InputError, match="em_steps must be an integer >= 0, got -1"):
        SteeredPETDDS(unet_volume_prior(), em_steps=-1)


def test_a_rank_above_the_layers_channels_is_refused_before_sampling():
    measured, model, _ = _scan()
    calls = []
    with pytest.raises(InputError, match=r"rank \(16\) exceeds the 8 channels"):
        SteeredPETDDS(unet_volume_prior(), steps=3, rank=16, callback=lambda *a: calls.append(a),
                      progress=False)(measured, model)
    assert calls == []


def test_the_adapted_steps_are_every_skip_th_and_the_last():
    assert Steering(skip=4, last=2).adapted_steps(10) == [0, 4, 8, 9]
    assert Steering(skip=1, last=0).adapted_steps(3) == [0, 1, 2]


def test_a_steered_run_is_reproducible_and_leaves_the_global_random_state_alone():
    measured, model, _ = _scan()
    prior = unet_volume_prior()
    runs = []
    for _ in range(2):
        torch.manual_seed(len(runs))  # a different global state each time: the adapters must not depend on it
        method = SteeredPETDDS(prior, steps=3, learning_rate=1e-2, skip=1, stop_at_aim=False, progress=False)
        state = torch.get_rng_state()
        runs.append(method(measured, model, generator=torch.Generator().manual_seed(5)).mean)
        assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(runs[0], runs[1])
