"""The cohort driver: check everything, list the (case, method) pairs still to do, stream them through Ray actors
(:class:`~diffrecon.cohort.worker.PairRunner`, one per worker, each keeping its priors loaded), and write one
summary table.

A local Ray started here is the default (no cluster needed); ``address`` joins a running cluster instead
("auto" on a cluster node, ``ray://head:10001`` from outside). Ray retries a pair whose worker died (SIGKILL, out
of memory, a lost node) or raised anything but :class:`~diffrecon.checks.InputError`, ``retries`` times; bad input
fails the pair at once. A failed pair never stops the others.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import shutil
import socket
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffrecon.checks import InputError, check_device, check_integer, check_output_dir
from diffrecon.cohort.cases import CaseSpec, find_cases
from diffrecon.cohort.worker import (CohortSettings, ExportSettings, PairRunner, completed_row, one_line,
                                     partial_dirs)

# one row per (case, method), in this column order (CSV and Parquet; the markdown shows a subset)
COLUMNS = ("case", "method", "modality", "status", "error", "attempts", "samples", "nfe", "method_s", "network_s",
           "physics_s", "wall_s", "worker", "worker_rss_mb", "device", "nrmse", "psnr_db", "ssim", "crc_hot_lesions",
           "crc_cold_lesions", "export", "export_error", "output")
MARKDOWN = {"case": ("case", "{}"), "method": ("method", "{}"), "status": ("status", "{}"),
            "attempts": ("attempts", "{}"), "nfe": ("NFE", "{}"), "wall_s": ("wall (s)", "{:.1f}"),
            "nrmse": ("NRMSE", "{:.3f}"), "psnr_db": ("PSNR (dB)", "{:.2f}"), "ssim": ("SSIM", "{:.3f}"),
            "crc_hot_lesions": ("CRC hot", "{:.2f}"), "worker": ("worker", "{}"), "device": ("device", "{}"),
            "export": ("export", "{}"), "error": ("error", "{}")}
LOCK = ".cohort.lock"
ADDRESS = re.compile(r"(local|auto|ray://[\w.\-]+:\d+|[\w.\-]+:\d+)")


@dataclass
class CohortResult:
    """The summary rows (one per pair, in plan order), where they were written, and how long the run took."""

    rows: list[dict[str, Any]]
    out: Path
    seconds: float
    workers: int

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == "failed"]

    def summary_line(self) -> str:
        """What was done, how fast, where the summary is (the command line and the bundle print it)."""
        done = self.count("done")
        rate = f", {3600 * done / self.seconds:.0f} pairs/hour" if done else ""
        idle = "" if done or self.failed else " (nothing to do)"
        return (f"{done} done, {self.count('skipped')} already complete, {len(self.failed)} failed of "
                f"{len(self.rows)} (case, method) pairs in {self.seconds:.1f} s on {self.workers} worker(s)"
                f"{rate}{idle}; summary: {self.out / 'summary.md'}")


def method_settings(methods: Iterable[str] | Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each method's options, checked (unknown methods and options refused, named), without progress bars."""
    from diffrecon.methods.registry import METHODS, check_options, method_parameters, required_inputs

    methods = dict(methods) if isinstance(methods, Mapping) else {name: {} for name in methods}
    if not methods:
        raise InputError("methods is empty; expected at least one method name")
    settings = {}
    for name, options in methods.items():
        if name not in METHODS:
            raise InputError(f"methods: unknown method {name!r}; expected some of {', '.join(METHODS)}")
        options = dict(options or {})
        check_options(name, {**options, **dict.fromkeys(required_inputs(name))})
        if "progress" in method_parameters(name):  # one progress bar for the whole cohort
            options.setdefault("progress", False)
        settings[name] = options
    return settings


def method_table(methods: Iterable[str], options: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """``methods`` with their ``options`` (method name -> options; methods not named take their defaults), as a
    bundle config gives them; options for a method not in ``methods`` are refused, named."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    stray = sorted(set(options or {}) - set(methods))
    if stray:
        raise InputError(f"method_options names {', '.join(map(repr, stray))}, which are not among methods "
                         f"{methods}")
    return {name: dict((options or {}).get(name) or {}) for name in methods}


def plan(cases: list[CaseSpec], methods: Iterable[str]) -> list[tuple[CaseSpec, str]]:
    """The (case, method) pairs, case by case (a worker reuses a loaded case), each case with the methods of its
    modality.

    Raises:
        InputError: a method that matches no case's modality, or cases no method can reconstruct (named).
    """
    from diffrecon.methods.registry import METHODS

    methods = list(methods)
    pairs = [(spec, name) for spec in cases for name in methods if METHODS[name].modality == spec.modality]
    for name in methods:
        if not any(method == name for _, method in pairs):
            raise InputError(f"methods: {name!r} reconstructs {METHODS[name].modality} data but every case is "
                             f"{', '.join(sorted({spec.modality for spec in cases}))}")
    orphans = [spec.name for spec in cases if not any(s is spec for s, _ in pairs)]
    if orphans:
        raise InputError(f"cases {', '.join(map(repr, orphans[:5]))}{' ...' if len(orphans) > 5 else ''} have no "
                         "method of their modality among methods; add one or leave those cases out")
    return pairs


def check_run(num_samples: int, seed: int, workers: int | None, cpus_per_worker: float, gpus_per_worker: float,
              retries: int, address: str | None, device: str) -> None:
    """Refuse bad run settings, named, before any work."""
    check_integer("num_samples", num_samples)
    check_integer("seed", seed, minimum=0)
    if workers is not None:
        check_integer("workers", workers)
    for name, value, low in (("cpus_per_worker", cpus_per_worker, 0.0), ("gpus_per_worker", gpus_per_worker, None)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or (value <= low if low is not None else value < 0):
            raise InputError(f"{name} must be a number {'> 0' if low is not None else '>= 0'}, got {value!r}")
    check_integer("retries", retries, minimum=0)
    if address is not None and not ADDRESS.fullmatch(str(address)):
        raise InputError(f"address must be 'local' (a Ray started here), 'auto' (the cluster this node belongs "
                         f"to), ray://HOST:PORT (Ray client) or HOST:PORT (the head's GCS), got {address!r}")
    if device != "auto":
        check_device("device", device)
        if gpus_per_worker and not str(device).startswith("cuda"):
            raise InputError(f"gpus_per_worker is {gpus_per_worker} but device is {device!r}; expected device "
                             "'auto' or 'cuda'")


def _take_lock(out: Path) -> Path:
    """Claim ``out`` for this run; refuse while another live run on this host holds it."""
    lock = out / LOCK
    host = socket.gethostname()
    try:
        held = json.loads(lock.read_text())
    except (OSError, ValueError):
        held = None
    if isinstance(held, dict) and held.get("host") == host and held.get("pid") != os.getpid():
        try:
            os.kill(int(held["pid"]), 0)
        except (OSError, ValueError, TypeError):
            pass  # a run that was killed: its lock is stale
        else:
            raise InputError(f"out {str(out)!r} is being written by another diffrecon cohort (pid {held['pid']} on "
                             f"{host}); wait for it to end or stop it")
    lock.write_text(json.dumps({"host": host, "pid": os.getpid(), "started": time.time()}))
    return lock


def _clean_partials(out: Path, pairs: list[tuple[CaseSpec, str]]) -> int:
    """Remove what earlier, killed attempts left (no worker of this run is writing yet, or any more)."""
    removed = 0
    for spec, name in pairs:
        for folder in partial_dirs(out, spec.name, name):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _start_ray(address: str | None, workers: int | None, cpus_per_worker: float) -> bool:
    """Connect to Ray (a local instance started here by default); True when this call started it."""
    try:
        import ray
    except ImportError as error:
        raise InputError("diffrecon cohort needs Ray: pip install 'diffrecon[cohort]' (or 'ray[data]')") from error
    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address in (None, "local"):
        cpus = math.ceil(workers * cpus_per_worker) if workers else os.cpu_count()
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, object_store_memory=256 * 2 ** 20,
                 **quiet)
    else:
        ray.init(address=address, **quiet)
    return True


def _worker_count(workers: int | None, cpus_per_worker: float, gpus_per_worker: float, pending: int) -> int:
    """Workers to start: as asked, else as many as the cluster's CPUs (and GPUs) hold; never more than pairs."""
    import ray

    if workers is None:
        resources = ray.cluster_resources()
        workers = int(resources.get("CPU", 1) // cpus_per_worker)
        if gpus_per_worker:
            workers = min(workers, int(resources.get("GPU", 0) // gpus_per_worker))
        if workers < 1:
            raise InputError(f"the Ray cluster has {resources.get('CPU', 0)} CPUs and {resources.get('GPU', 0)} GPUs: "
                             f"not enough for one worker of cpus_per_worker {cpus_per_worker} and gpus_per_worker "
                             f"{gpus_per_worker}")
    return max(1, min(workers, pending))


def _failed(spec: CaseSpec, method: str, error: str, out: Path) -> dict[str, Any]:
    return {"case": spec.name, "method": method, "modality": spec.modality, "status": "failed", "error": error,
            "attempts": max(1, len(partial_dirs(out, spec.name, method)))}


def _stream(pending: list[tuple[CaseSpec, str]], settings: CohortSettings, out: Path, n_workers: int,
            cpus_per_worker: float, gpus_per_worker: float, retries: int, rows: dict, bar: Any) -> None:
    """Run ``pending`` on ``n_workers`` actors, one pair in flight per actor, a finished actor given the next."""
    import ray

    actor_class = ray.remote(PairRunner).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                                                 max_restarts=retries, max_task_retries=retries)
    actors = [actor_class.remote(settings) for _ in range(n_workers)]
    replacements = n_workers * (retries + 1)  # workers that died for good are replaced, within reason
    queue = deque(pending)
    inflight: dict[Any, tuple[int, CaseSpec, str]] = {}

    def submit(index: int) -> None:
        spec, method = queue.popleft()
        ref = actors[index].run.options(retry_exceptions=True).remote(spec, method, str(out))
        inflight[ref] = (index, spec, method)

    try:
        for index in range(min(n_workers, len(queue))):
            submit(index)
        _collect(inflight, queue, submit, actors, actor_class, settings, out, rows, bar, replacements)
    finally:  # stopped early (Ctrl-C, an error here): no worker goes on writing into OUT behind our back
        for actor in actors:
            ray.kill(actor)


def _collect(inflight: dict, queue: deque, submit: Any, actors: list, actor_class: Any, settings: CohortSettings,
             out: Path, rows: dict, bar: Any, replacements: int) -> None:
    """Record each finished pair and give its actor the next one; replace an actor that died for good."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    failed = 0
    while inflight:
        [ref], _ = ray.wait(list(inflight), num_returns=1)
        index, spec, method = inflight.pop(ref)
        try:
            row = ray.get(ref)
        except RayTaskError as error:  # raised in the pair (not bad input) on every attempt
            row = _failed(spec, method, one_line(getattr(error, "cause", None) or error), out)
        except RayActorError as error:  # the worker died on every attempt
            row = _failed(spec, method, f"worker died: {one_line(error)}", out)
            if replacements > 0:
                replacements -= 1
                actors[index] = actor_class.remote(settings)
        rows[(spec.name, method)] = row
        failed += row["status"] == "failed"
        bar.set_postfix(failed=failed, refresh=False)
        bar.update(1)
        if queue:
            submit(index)


def run_cohort(cases: str | Path | list[CaseSpec], methods: Iterable[str] | Mapping[str, Mapping[str, Any]],
               out: str | Path, *, num_samples: int = 1, seed: int = 0, prior: str | None = None,
               device: str = "auto", address: str | None = None, workers: int | None = None,
               cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, retries: int = 2,
               export: ExportSettings | None = None, progress: bool = True) -> CohortResult:
    """Reconstruct every case with every method of its modality on Ray; resumable; one summary table.

    Args:
        cases: a folder of cases, a manifest .csv, ``demo[:N]`` (:func:`~diffrecon.cohort.cases.find_cases`), or
            specs.
        methods: method names, or name -> options (hyperparameters).
        out: output folder: ``<case>/<method>/`` per pair, ``summary.csv|md|parquet``.
        num_samples: posterior samples of the diffusion methods.
        seed: seed of every pair's samples.
        prior: prior bundle of the diffusion methods (default the modality's shipped prior).
        device: "auto" (the worker's GPU if Ray gave it one, else CPU) or a torch device.
        address: None or "local": a Ray started here (stopped at the end); "auto", ``ray://HOST:PORT`` or
            ``HOST:PORT``: a running cluster. A Ray this process already joined is used as it is.
        workers: actors to start (default: as many as the CPUs/GPUs hold); each holds its priors loaded.
        cpus_per_worker, gpus_per_worker: Ray resources of each actor (fractions of a GPU share one).
        retries: Ray retries of a pair whose worker died or that raised (bad input is not retried).
        export: DICOM/PACS export of each result (each case's source series from its spec), or None.
        progress: show one progress bar over the pairs.

    Returns:
        The summary rows (also in ``summary.csv``, ``summary.md`` and, with pyarrow, ``summary.parquet``).

    Raises:
        InputError: bad settings or cases (named), before any work.
    """
    from tqdm.auto import tqdm

    check_run(num_samples, seed, workers, cpus_per_worker, gpus_per_worker, retries, address, device)
    options = method_settings(methods)
    specs = cases if isinstance(cases, list) else find_cases(cases)
    if export is not None:
        mri_sources = [spec.name for spec in specs if spec.modality == "MR" and spec.export_source]
        if mri_sources:
            raise InputError(f"export_source_dicom of MRI case(s) {', '.join(map(repr, mri_sources))}: k-space "
                             "carries no patient position, so an MRI result cannot join a source study")
    pairs = plan(specs, options)
    out = check_output_dir("out", out)
    out.mkdir(parents=True, exist_ok=True)
    lock = _take_lock(out)
    start = time.perf_counter()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    started_ray, n_workers = False, 0
    try:
        _clean_partials(out, pairs)
        pending = []
        for spec, method in pairs:
            done = completed_row(out, spec.name, method)
            if done is None:
                pending.append((spec, method))
            else:
                rows[(spec.name, method)] = {**done, "status": "skipped"}
        settings = CohortSettings(options, num_samples, seed, prior, device, max(1, round(cpus_per_worker)), export)
        with tqdm(total=len(pairs), initial=len(pairs) - len(pending), desc="cohort", unit="pair",
                  disable=not progress, dynamic_ncols=True) as bar:
            if pending:
                started_ray = _start_ray(address, workers, cpus_per_worker)
                n_workers = _worker_count(workers, cpus_per_worker, gpus_per_worker, len(pending))
                _stream(pending, settings, out, n_workers, cpus_per_worker, gpus_per_worker, retries, rows, bar)
    finally:
        ordered = [rows.get((spec.name, method), {"case": spec.name, "method": method, "modality": spec.modality,
                                                  "status": "not run", "error": "the cohort stopped first"})
                   for spec, method in pairs]
        write_summary(ordered, out)
        _clean_partials(out, pairs)
        if started_ray:
            import ray

            ray.shutdown()
        lock.unlink(missing_ok=True)
    return CohortResult(ordered, out, time.perf_counter() - start, n_workers)


def _atomic_write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)


def write_summary(rows: list[dict[str, Any]], out: Path) -> None:
    """``summary.csv`` (every column), ``summary.md`` (a readable subset) and, where pyarrow is installed (it comes
    with ``ray[data]``), ``summary.parquet``."""
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(out / "summary.csv", buffer.getvalue())
    lines = ["| " + " | ".join(header for header, _ in MARKDOWN.values()) + " |", "|---" * len(MARKDOWN) + "|"]
    for row in rows:
        cells = []
        for key, (_, form) in MARKDOWN.items():
            value = row.get(key)
            text = "-" if value is None or value == "" else form.format(value)
            cells.append(text.replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    counts = {status: sum(row["status"] == status for row in rows) for status in ("done", "skipped", "failed")}
    _atomic_write(out / "summary.md", "\n".join(lines) + "\n\n" + ", ".join(f"{n} {s}" for s, n in counts.items())
                  + f" of {len(rows)} (case, method) pairs\n")
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    table = pa.Table.from_pylist([{key: row.get(key) for key in COLUMNS} for row in rows])
    partial = out / ".summary.parquet.partial"
    pq.write_table(table, partial)
    partial.replace(out / "summary.parquet")
