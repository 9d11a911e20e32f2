"""The contract every reconstruction method shares, classical or diffusion.

A method is an object configured once with its hyperparameters (and prior) and called on the data and the
physics, as deepinv's ``solver(y, physics)``::

    result = OSEM(iterations=4, subsets=8)(measured, model)
    result = SomeDiffusionMethod(prior, steps=50)(measured, model, num_samples=4, generator=g)

It returns one :class:`Reconstruction`: the image or posterior mean, optional std and samples, and a
JSON-serialisable report (method, settings, seed, timings, data fit).
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from diffrecon.checks import InputError
from diffrecon.uncertainty.calibration import StdCalibration


@dataclass
class Reconstruction:
    """What every method returns.

    Attributes:
        mean: the image (classical methods) or the posterior mean of the samples, on the physics' grid.
        std: voxel-wise posterior standard deviation (None for deterministic methods).
        samples: (num_samples, *image shape) posterior samples (None for deterministic methods).
        report: JSON-serialisable dict: method, settings, num_samples, seed, seconds, and what the method adds
            (log-likelihood per iteration, objective, network evaluations, ...).
    """

    mean: torch.Tensor
    std: torch.Tensor | None = None
    samples: torch.Tensor | None = None
    report: dict[str, Any] = field(default_factory=dict)


def summarize_samples(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and voxel-wise standard deviation of ``samples`` (num_samples, ...); complex samples are
    summarised by their magnitude's spread around the complex mean. One sample has std 0."""
    if samples.dim() < 1 or samples.shape[0] < 1:
        raise InputError(f"samples has shape {tuple(samples.shape)}; expected (num_samples >= 1, ...)")
    mean = samples.mean(0)
    if samples.shape[0] == 1:
        return mean, torch.zeros(mean.shape, dtype=mean.real.dtype, device=mean.device)
    return mean, (samples - mean).abs().pow(2).sum(0).div(samples.shape[0] - 1).sqrt()


class Stopwatch:
    """Seconds spent per named part (e.g. "network", "physics"), synchronising CUDA so GPU time is counted."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, {}

    @contextmanager
    def __call__(self, part: str):
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class Method(ABC):
    """Base of every reconstruction method: validates the call, times it and fills the common report.

    Subclasses set ``name`` and ``modality`` ("PT" or "MR"), take their hyperparameters in ``__init__`` (checked
    there, before any data is seen), return them from :meth:`settings`, and implement :meth:`reconstruct`.
    Deterministic methods (``deterministic = True``) accept only ``num_samples=1``.

    ``std_calibrations``: recalibration factors of the std fitted on validation subjects
    (:func:`diffrecon.uncertainty.fit_std_calibration`), each for its own scope (scanner, count level or
    acceleration, samples); the first that applies to the call's physics and data
    (:meth:`~diffrecon.uncertainty.StdCalibration.applies_to`) multiplies the result's std and the report says so
    under "std_calibration". Set it to () on an instance for the raw sample std.
    """

    name: ClassVar[str]
    modality: ClassVar[str]
    deterministic: ClassVar[bool] = False
    std_calibrations: tuple[StdCalibration, ...] = ()

    def __call__(self, data: torch.Tensor, physics: Any, *, num_samples: int = 1,
                 generator: torch.Generator | None = None) -> Reconstruction:
        """Reconstruct ``data`` measured through ``physics``; see the class docstring of the method."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise InputError(f"num_samples must be an integer >= 1, got {num_samples!r}")
        if self.deterministic and num_samples != 1:
            raise InputError(f"{self.name} is deterministic; num_samples must be 1, got {num_samples}")
        start = time.perf_counter()
        result = self.reconstruct(data, physics, num_samples, generator)
        report = {"method": self.name, "description": self.description(), "settings": self.settings(),
                  "num_samples": num_samples, "seed": None if generator is None else generator.initial_seed()}
        calibration = None if result.std is None else next(
            (c for c in self.std_calibrations if c.applies_to(physics, data, num_samples, self.settings())), None)
        if calibration is not None:
            result.std = calibration.apply(result.std)
            report["std_calibration"] = calibration.to_dict()
        result.report = {**report, **result.report, "seconds": time.perf_counter() - start}
        return result

    @abstractmethod
    def reconstruct(self, data: torch.Tensor, physics: Any, num_samples: int,
                    generator: torch.Generator | None) -> Reconstruction:
        """The method itself, on validated call arguments."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """Every hyperparameter, JSON-serialisable (goes into the report)."""

    def description(self) -> str:
        """One line naming the method and its main settings (DICOM SeriesDescription, figure titles)."""
        return f"{self.name.upper()} " + ", ".join(f"{key}={value}" for key, value in self.settings().items())
