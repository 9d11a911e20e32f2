"""Low-rank adapters (LoRA, Hu et al. 2022) attached to a prior's networks and removed again, for adaptation of a
frozen prior to the measured data (steerable conditional diffusion, Barbano et al. 2025).

As in the SCD reference: every convolution and linear layer inside the networks' residual and attention blocks
(their time-embedding projections included; not the input and output convolutions, the samplers or the top-level
time MLP) gets W x + up(down(x)) with ``down`` of the layer's kind and kernel, ``up`` a 1 x 1 (or linear) map
initialised to zero, so the adapted network starts equal to the prior. The base weights are frozen while attached;
:func:`remove_adapters` puts the original layers back, leaving the shipped weights untouched.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from diffrecon.checks import InputError, check_integer

ADAPTED_BLOCKS = ("ResnetBlock", "Attention")  # class-name parts of the blocks whose layers get adapters
LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class LoRALayer(nn.Module):
    """A frozen layer plus a low-rank update: base(x) + scale · up(down(x))."""

    def __init__(self, base: nn.Module, rank: int, scale: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.base, self.scale = base, float(scale)
        with torch.random.fork_rng(devices=[]):  # the layers' default initialisation, overwritten below
            if isinstance(base, nn.Linear):
                self.down = nn.Linear(base.in_features, rank, bias=False)
                self.up = nn.Linear(rank, base.out_features, bias=False)
            else:
                conv = type(base)
                self.down = conv(base.in_channels, rank, base.kernel_size, base.stride, base.padding, base.dilation,
                                 bias=False)
                self.up = conv(rank, base.out_channels, 1, bias=False)
        with torch.no_grad():
            self.down.weight.copy_(torch.randn(self.down.weight.shape, generator=generator) / rank)
        nn.init.zeros_(self.up.weight)
        self.to(device=base.weight.device, dtype=base.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.up(self.down(x))


def _targets(network: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, layer) of every layer to adapt (module notes)."""
    found, seen = [], set()
    for block in network.modules():
        if not any(part in type(block).__name__ for part in ADAPTED_BLOCKS):
            continue
        for parent in block.modules():
            for attribute, child in parent.named_children():
                if isinstance(child, LAYERS) and id(child) not in seen:
                    seen.add(id(child))
                    found.append((parent, attribute, child))
    return found


def attach_adapters(model: nn.Module, rank: int, scale: float = 1.0, seed: int = 0) -> list[nn.Parameter]:
    """Attach rank-``rank`` adapters to every network of ``model`` (a prior, a tri-planar score: all of its
    networks) and freeze the rest; returns the adapters' parameters (what an optimiser updates). The random
    down-projections are drawn from ``seed``, so that a run is reproducible and does not touch the global random
    state.

    Raises:
        InputError: adapters already attached, no layer to adapt, or ``rank`` larger than a layer's input or
            output channels (named), before anything is changed.
    """
    rank = check_integer("rank", rank)
    if not math.isfinite(scale):
        raise InputError(f"scale must be a finite number, got {scale!r}")
    if any(isinstance(module, LoRALayer) for module in model.modules()):
        raise InputError("the model already has adapters; remove_adapters first")
    targets = _targets(model)
    if not targets:
        raise InputError(f"{type(model).__name__} has no residual or attention block layers to adapt")
    for parent, attribute, layer in targets:
        sizes = (layer.in_features, layer.out_features) if isinstance(layer, nn.Linear) else (layer.in_channels,
                                                                                             layer.out_channels)
        if rank > min(sizes):
            raise InputError(f"rank ({rank}) exceeds the {min(sizes)} channels of layer {attribute!r} "
                             f"({type(layer).__name__} {sizes[0]} -> {sizes[1]}); use a rank <= {min(sizes)}")
    model.requires_grad_(False)
    parameters = []
    generator = torch.Generator().manual_seed(seed)
    for parent, attribute, layer in targets:
        adapter = LoRALayer(layer, rank, scale, generator)
        setattr(parent, attribute, adapter)
        parameters += [adapter.down.weight, adapter.up.weight]
    return parameters


def remove_adapters(model: nn.Module) -> int:
    """Put the original layers back in place of every adapter of ``model``; returns how many were removed."""
    removed = 0
    for parent in list(model.modules()):
        for attribute, child in list(parent.named_children()):
            if isinstance(child, LoRALayer):
                setattr(parent, attribute, child.base)
                removed += 1
    return removed

