"""The work of one (case, method) pair, as a cohort worker does it: load the case, build the method (its prior
loaded once per worker), reconstruct and write through :func:`diffrecon.pipeline.reconstruct_case`, score, export,
and publish the folder atomically.

:class:`PairRunner` has no Ray in it: the driver (:mod:`diffrecon.cohort.run`) makes it a Ray actor, and a plain
loop can call it too. Its outputs land in ``<out>/<case>/<method>/`` only when complete: they are written in a
hidden ``.<method>.partial-*`` folder beside it, then renamed, so a killed worker leaves a partial folder that no
one takes for a result (a retry counts and removes it), and ``cohort.json`` inside a pair's folder marks it done.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from diffrecon.checks import InputError
from diffrecon.cohort.cases import CaseSpec, load_case

RECORD = "cohort.json"  # the pair's summary row, written last inside the folder before it is renamed
ATTEMPT = "attempt.json"  # who is writing a partial folder (host, pid, start), for a person looking at one


@dataclass
class ExportSettings:
    """The :func:`diffrecon.io.export.export_result` settings shared by every result of a cohort; the source
    series is each case's own (:attr:`CaseSpec.export_source`).

    Attributes:
        dicom_root: write each result's series under ``<dicom_root>/<case>/<method>/``; None: inside the pair's
            output folder (``dicom/``), published with it.
    """

    targets: list = field(default_factory=list)
    units: str = "PROPCNTS"
    deidentifier: Any = None
    retries: int = 3
    backoff: float = 1.0
    dicom_root: str | None = None


@dataclass
class CohortSettings:
    """What every pair of a cohort shares.

    Attributes:
        methods: method name -> its options (hyperparameters, as ``diffrecon recon --set``).
        num_samples: posterior samples of the diffusion methods (deterministic methods draw one).
        seed: seed of every pair's samples (as ``diffrecon recon --seed``).
        prior: prior bundle of the diffusion methods; None: the modality's shipped one.
        device: torch device, or "auto": the GPU Ray gave the worker, else the CPU.
        threads: torch threads per worker (its CPUs).
        export: DICOM/PACS export of each result, or None.
    """

    methods: dict[str, dict[str, Any]]
    num_samples: int = 1
    seed: int = 0
    prior: str | None = None
    device: str = "auto"
    threads: int = 1
    export: ExportSettings | None = None


def pair_dir(out: str | Path, case: str, method: str) -> Path:
    """The output folder of one (case, method) pair."""
    return Path(out) / case / method


def partial_dirs(out: str | Path, case: str, method: str) -> list[Path]:
    """Partial folders a pair's earlier attempts left behind (killed, or failed before publishing)."""
    return sorted(Path(out, case).glob(f".{method}.partial-*"))


def completed_row(out: str | Path, case: str, method: str) -> dict[str, Any] | None:
    """The row a complete pair recorded, or None when the pair has no complete output."""
    record = pair_dir(out, case, method) / RECORD
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def one_line(error: BaseException) -> str:
    """The error on one line (a multi-line message's last non-empty line), its type named unless it is bad input
    (an :class:`InputError` message already says what to fix)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[-1] if lines else ""
    return text if isinstance(error, InputError) and text else f"{type(error).__name__}: {text}".rstrip(": ")


class PairRunner:
    """A cohort worker: reconstructs (case, method) pairs one at a time, keeping fitted priors (by method, bundle
    and grid) and the last case loaded, so studies stream through a loaded model."""

    def __init__(self, settings: CohortSettings) -> None:
        import torch

        import diffrecon.pipeline  # noqa: F401 - imported now, so a pair's time is its own work

        self.settings = settings
        torch.set_num_threads(max(1, int(settings.threads)))
        self.priors: dict[tuple, Any] = {}
        self._case: tuple[str, Any] | None = None
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

    def device(self) -> str:
        """The torch device: the setting, or with "auto" the GPU Ray assigned to this worker, else the CPU."""
        if self.settings.device != "auto":
            return self.settings.device
        import torch

        try:
            import ray

            gpus = ray.get_gpu_ids() if ray.is_initialized() else []
        except ImportError:
            gpus = []
        return "cuda" if gpus and torch.cuda.is_available() else "cpu"

    def load(self, spec: CaseSpec, device: str):
        """The case of ``spec`` (the last one is kept: a worker given the same case for another method reuses it)."""
        if self._case is None or self._case[0] != spec.name:
            self._case = None
            self._case = (spec.name, load_case(spec, device))
        return self._case[1]

    def run(self, spec: CaseSpec, method_name: str, out: str) -> dict[str, Any]:
        """Reconstruct ``spec`` with ``method_name`` into ``<out>/<case>/<method>/`` and return its summary row.

        A pair already complete is not redone (status "skipped"). Bad input (:class:`InputError`) gives a row with
        status "failed" and its one-line error; any other exception propagates, so Ray retries the pair.
        """
        final = pair_dir(out, spec.name, method_name)
        done = completed_row(out, spec.name, method_name)
        if done is not None:
            return {**done, "status": "skipped"}
        earlier = partial_dirs(out, spec.name, method_name)
        for folder in earlier:  # attempts that died (Ray retries only once the worker that ran them is gone)
            shutil.rmtree(folder, ignore_errors=True)
        row: dict[str, Any] = {"case": spec.name, "method": method_name, "modality": spec.modality,
                               "attempts": len(earlier) + 1, "worker": self.identity, "started": time.time()}
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.parent / f".{method_name}.partial-{uuid.uuid4().hex[:8]}"
        partial.mkdir()
        start = time.perf_counter()
        (partial / ATTEMPT).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                                   "attempt": row["attempts"], "started": time.time()}))
        try:
            row.update(self._reconstruct(spec, method_name, partial))
        except InputError as error:
            shutil.rmtree(partial, ignore_errors=True)
            return {**row, "status": "failed", "error": one_line(error), "wall_s": time.perf_counter() - start}
        row.update(status="done", error="", wall_s=time.perf_counter() - start, output=f"{spec.name}/{method_name}",
                   worker_rss_mb=_peak_rss_mb(), finished=time.time())
        (partial / ATTEMPT).unlink()
        (partial / RECORD).write_text(json.dumps(row, indent=2))
        try:
            partial.rename(final)
        except OSError:  # published meanwhile by another attempt: that one stands, written once
            shutil.rmtree(partial, ignore_errors=True)
            return {**(completed_row(out, spec.name, method_name) or row), "status": "skipped"}
        return row

    def _reconstruct(self, spec: CaseSpec, method_name: str, folder: Path) -> dict[str, Any]:
        """Load, reconstruct and write into ``folder``; the row's measurements."""
        from diffrecon.methods.registry import METHODS, required_inputs
        from diffrecon.pipeline import DEFAULT_PRIORS, method_for_case, reconstruct_case

        settings = self.settings
        device = self.device()
        case = self.load(spec, device)
        options = settings.methods[method_name]
        method = method_for_case(method_name, case, options, settings.prior, priors=self.priors)
        if "prior" in required_inputs(method_name):  # which prior made the result, in its report
            case = replace(case, info={**case.info, "prior": str(settings.prior or
                                                                 DEFAULT_PRIORS[METHODS[method_name].modality])})
        samples = 1 if method.deterministic else settings.num_samples
        result, written = reconstruct_case(case, method, folder, num_samples=samples, seed=settings.seed)
        report = result.report
        nfe = report.get("network_evaluations", 0) or 0
        row = {"samples": samples, "nfe": nfe, "method_s": report["seconds"],
               "network_s": report.get("seconds_network", 0.0),
               "physics_s": report.get("seconds_physics", report["seconds"] if not nfe else None),
               "device": device, "description": report.get("description", method_name)}
        row.update({key: value for key, value in written.get("metrics", {}).get(method_name, {}).items()})
        row.update(_lesion_metrics(spec, case, result.mean))
        if settings.export is not None:
            row.update(_export(spec, method_name, case, result, folder, settings.export))
        return row


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this worker process so far, in MiB (None where the platform does not say)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _lesion_metrics(spec: CaseSpec, case: Any, mean: Any) -> dict[str, float]:
    """Hot and cold lesion CRC where the case's phantom masks are known (a demo case, a simulate folder)."""
    import numpy as np

    from diffrecon.io.results import as_volume
    from diffrecon.metrics import phantom_metrics

    if case.reference is None:
        return {}
    if {"lesions", "white_matter", "labels"} <= set(case.images):
        lesions, white, labels = case.images["lesions"], case.images["white_matter"], case.images["labels"]
    elif spec.masks:
        from diffrecon.io.nifti import load_nifti

        masks = {key: load_nifti(path)[0] for key, path in spec.masks.items()}
        lesions = np.moveaxis(masks["lesion_masks"], -1, 0) if masks["lesion_masks"].ndim == 4 \
            else masks["lesion_masks"][None]
        white, labels = masks["white_matter"], masks["labels"]
    else:
        return {}
    image, truth = as_volume(mean), as_volume(case.reference)
    if np.asarray(labels).shape != truth.shape or not len(lesions):
        return {}
    metrics = phantom_metrics(image, truth, labels, np.asarray(lesions, dtype=bool), white)
    return {key: metrics[key] for key in ("crc_hot_lesions", "crc_cold_lesions") if np.isfinite(metrics[key])}


def _export(spec: CaseSpec, method_name: str, case: Any, result: Any, folder: Path,
            export: ExportSettings) -> dict[str, Any]:
    """Export the result as DICOM (joining the case's source study) and to the PACS targets; the row's columns."""
    from diffrecon.io.export import export_result
    from diffrecon.io.results import as_volume

    dicom_dir = folder / "dicom" if export.dicom_root is None else pair_dir(export.dicom_root, spec.name, method_name)
    try:
        report = export_result(as_volume(result.mean), case.affine,
                               None if result.std is None else as_volume(result.std), modality=spec.modality,
                               method_description=result.report["description"], source=spec.export_source,
                               targets=export.targets, dicom_dir=dicom_dir, units=export.units,
                               deidentifier=export.deidentifier, retries=export.retries, backoff=export.backoff)
    except InputError:
        raise
    except Exception as error:  # noqa: BLE001 - the reconstruction stands; `diffrecon export` can resend it
        return {"export": "failed", "export_error": one_line(error)}
    return {"export": "ok" if report.ok else "incomplete",
            "export_error": "" if report.ok else report.summary().splitlines()[-1]}
