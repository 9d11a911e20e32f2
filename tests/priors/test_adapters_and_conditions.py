"""Condition channels through the slice, patch-wise and tri-planar priors (sliced exactly as the image), and
low-rank adapters: the adapted network starts equal to the prior, trains only its adapters, and removing them
restores the shipped weights."""
from __future__ import annotations

import copy

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet

from diffrecon.checks import InputError
from diffrecon.priors import DiffusionPrior, PatchwisePrior, TriPlanarScore, VPSchedule
from diffrecon.priors.adapters import LoRALayer, attach_adapters, remove_adapters


def randomised(network: torch.nn.Module) -> torch.nn.Module:
    """MONAI zero-initialises the output convolution: random weights everywhere, so outputs depend on inputs."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return network.eval()


def conditional_unet(channels: int = 1) -> DiffusionModelUNet:
    return randomised(DiffusionModelUNet(spatial_dims=2, in_channels=1 + channels, out_channels=1,
                                         channels=(8, 8, 8), attention_levels=(False, False, True), num_res_blocks=1,
                                         norm_num_groups=4, num_head_channels=8))


def test_condition_reaches_the_network_sliced_as_the_volume():
    torch.manual_seed(0)
    prior = DiffusionPrior(conditional_unet(), VPSchedule())
    volume, condition = torch.randn(2, 8, 8, 4), torch.randn(2, 1, 8, 8, 4)
    tri = TriPlanarScore({"sagittal": prior}, chunk_size=3)  # sagittal: (y, z) slices along x, chunked
    noise = tri.predict_noise(volume, 50, condition)
    direct = prior.predict_noise(volume.permute(0, 1, 2, 3).reshape(-1, 8, 4), 50,
                                 condition.permute(0, 2, 1, 3, 4).reshape(-1, 1, 8, 4)).reshape(2, 8, 8, 4)
    torch.testing.assert_close(noise, direct)
    assert not torch.allclose(noise, tri.predict_noise(volume, 50, torch.zeros_like(condition)))
    patches = PatchwisePrior(prior, (8, 4), overlap=0.0).predict_noise(volume[:, 0], 50, condition[:, :, 0])
    torch.testing.assert_close(patches, prior.predict_noise(volume[:, 0], 50, condition[:, :, 0]))


@pytest.mark.parametrize("condition,message", [
    (None, r"takes 1 condition channel\(s\) beside the image; pass condition="),
    (torch.zeros(2, 1, 8, 4), r"condition has shape \(2, 1, 8, 4\); expected \(2, 1, 8, 8\)"),
    (torch.zeros(2, 2, 8, 8), r"expected \(2, 1, 8, 8\)"),
    (torch.zeros(2, 1, 8, 8, device="meta"), "condition is on meta; expected x's device cpu"),
])
def test_a_bad_condition_is_refused(condition, message):
    prior = DiffusionPrior(conditional_unet(), VPSchedule())
    with pytest.raises(InputError, match=message):
        prior.predict_noise(torch.zeros(2, 8, 8), 10, condition)


def _wrapped(kind: str, network: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, int]:
    """A slice prior, a patch-wise prior or a tri-planar score (one network per orientation) of ``network``'s kind,
    an input of its shape and the number of networks."""
    generator = torch.Generator().manual_seed(0)
    prior = DiffusionPrior(network, VPSchedule())
    if kind == "slice":
        return prior, torch.randn(3, 8, 8, generator=generator), 1
    if kind == "patch":
        return PatchwisePrior(prior, (8, 8)), torch.randn(1, 16, 16, generator=generator), 1
    priors = {name: DiffusionPrior(randomised(copy.deepcopy(network)), VPSchedule())
              for name in ("axial", "coronal", "sagittal")}
    return TriPlanarScore(priors), torch.randn(1, 8, 8, 8, generator=generator), 3


@pytest.mark.parametrize("kind", ["slice", "patch", "triplanar"])
def test_adapters_start_equal_train_alone_and_leave_the_prior_untouched(tiny_unet, kind):
    prior, x, networks = _wrapped(kind, randomised(tiny_unet))
    shipped = {key: value.clone() for key, value in prior.state_dict().items()}
    before = prior.predict_noise(x, 100).detach()
    parameters = attach_adapters(prior, rank=2)
    layers = [m for m in prior.modules() if isinstance(m, LoRALayer)]
    assert layers and len(parameters) == 2 * len(layers) and len(layers) % networks == 0  # a set per network
    assert all(not p.requires_grad for name, p in prior.named_parameters() if ".base." in name or "conv_in" in name)
    torch.testing.assert_close(prior.predict_noise(x, 100), before)  # the up maps start at zero
    optimiser = torch.optim.Adam(parameters, lr=1e-2)
    for _ in range(3):
        optimiser.zero_grad()
        prior.predict_noise(x, 100).pow(2).mean().backward()
        optimiser.step()
    assert not torch.allclose(prior.predict_noise(x, 100), before)  # adapted
    assert remove_adapters(prior) == len(layers)
    torch.testing.assert_close(prior.predict_noise(x, 100), before)
    for key, value in prior.state_dict().items():
        assert torch.equal(value, shipped[key]), key


def test_adapter_settings_are_refused_before_any_change(tiny_unet):
    prior = DiffusionPrior(tiny_unet, VPSchedule())
    with pytest.raises(InputError, match=r"rank \(9\) exceeds the 8 channels of layer"):
        attach_adapters(prior, rank=9)
    assert not any(isinstance(m, LoRALayer) for m in prior.modules())
    with pytest.raises(InputError, match="rank must be an integer >= 1"):
        attach_adapters(prior, rank=0)
    attach_adapters(prior, rank=1)
    with pytest.raises(InputError, match="already has adapters"):
        attach_adapters(prior, rank=1)
