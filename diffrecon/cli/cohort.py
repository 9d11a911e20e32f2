"""``diffrecon cohort``: reconstruct a folder or manifest of studies with one or more methods on Ray.

Argument parsing only: the cases, the workers and the summary are :func:`diffrecon.cohort.run_cohort`; the DICOM
and PACS options are those of ``diffrecon export`` (:func:`diffrecon.cli.export.check_export_args`), checked once
before any work and applied to every result.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from diffrecon.checks import InputError
from diffrecon.cli.export import add_export_arguments, check_export_args, export_requested


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cohort", help="reconstruct many studies x methods on Ray (resumable) -> one summary table",
        description="Reconstruct every case of a folder or manifest with every method of its modality, each (case, "
                    "method) pair in a Ray worker that keeps its prior loaded. Outputs go to OUT/<case>/<method>/ "
                    "(written under a temporary name, then renamed), complete pairs are skipped on a rerun, a bad "
                    "case is reported and the cohort goes on, a worker that dies is retried. A local Ray is started "
                    "unless --address names a cluster. Writes OUT/summary.csv, summary.md and summary.parquet "
                    "(docs/cohort.md). Exit status 1 when a pair failed.")
    parser.add_argument("--cases", required=True,
                        help="a folder whose sub-folders are cases (diffrecon simulate folders, sinogram + factor "
                             "files, k-space files), a manifest .csv (a 'case' column and loader columns), or "
                             "demo[:N] (N built-in phantom cases, default 4)")
    parser.add_argument("--method", dest="methods", action="append", required=True, metavar="NAME",
                        help="a reconstruction method (repeat for several)")
    parser.add_argument("--out", required=True, help="output folder (created; reused to resume)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="[METHOD:]NAME=VALUE",
                        help="a method option (a JSON value or a string), for METHOD only or for every method that "
                             "takes NAME, e.g. --set osem:iterations=2")
    parser.add_argument("--num-samples", "--samples", type=int, default=1,
                        help="posterior samples of the diffusion methods (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every pair's samples (default %(default)s)")
    parser.add_argument("--prior", default=None, help="prior bundle of the diffusion methods (default the "
                                                      "modality's shipped one)")
    parser.add_argument("--device", default="auto", help="torch device; auto: the worker's GPU if it has one, else "
                                                         "the CPU (default)")
    ray_group = parser.add_argument_group("Ray")
    ray_group.add_argument("--address", default=None,
                           help="Ray cluster to join: auto (from a cluster node), ray://HEAD:10001 (Ray client) or "
                                "HEAD:6379; default: a local Ray started by this command")
    ray_group.add_argument("--workers", type=int, default=None,
                           help="workers (Ray actors) to start; default as many as the CPUs / GPUs hold")
    ray_group.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per worker (default 1)")
    ray_group.add_argument("--gpus-per-worker", type=float, default=0.0,
                           help="GPUs per worker; a fraction shares a GPU between workers (default 0)")
    ray_group.add_argument("--retries", type=int, default=2,
                           help="retries of a pair whose worker died or that raised; bad input is not retried "
                                "(default %(default)s)")
    ray_group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    add_export_arguments(parser.add_argument_group(
        "DICOM export and PACS (optional; as diffrecon export, for every result; each case's source series is its "
        "manifest column export_source_dicom or its folder's source/ sub-folder)"))
    parser.set_defaults(func=run)


def method_options(methods: list[str], settings: list[str]) -> dict[str, dict[str, Any]]:
    """Each method's options from ``--set [METHOD:]NAME=VALUE`` (JSON values, else strings).

    Raises:
        InputError: a malformed item, a METHOD not among --method, a NAME no method takes (named).
    """
    from diffrecon.methods.registry import METHODS, method_parameters

    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise InputError(f"--method {unknown[0]!r} is unknown; expected one of {', '.join(METHODS)}")
    options: dict[str, dict[str, Any]] = {name: {} for name in methods}
    for item in settings:
        head, sep, text = item.partition("=")
        target, _, key = head.rpartition(":")
        if not sep or not key.isidentifier():
            raise InputError(f"--set {item!r}; expected [METHOD:]NAME=VALUE with a Python identifier as NAME")
        if target and target not in options:
            raise InputError(f"--set {item!r}: method {target!r} is not among --method {', '.join(methods)}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        chosen = [target] if target else [name for name in methods if key in method_parameters(name)]
        if not chosen:
            raise InputError(f"--set {item!r}: none of the methods {', '.join(methods)} takes {key!r}")
        for name in chosen:
            options[name][key] = value
    return options


def run(args: argparse.Namespace) -> None:
    from diffrecon.cohort import ExportSettings, run_cohort
    from diffrecon.methods.registry import METHODS

    options = method_options(args.methods, args.settings)
    export = None
    if export_requested(args) or args.export_source_dicom or args.export_deidentify:
        if args.export_source_dicom:
            raise InputError("--export-source-dicom: in a cohort each case has its own source series; give it in "
                             "the manifest column export_source_dicom or as a source/ sub-folder of the case folder")
        modality = "PT" if any(METHODS[name].modality == "PT" for name in options) else "MR"
        checked = check_export_args(args, modality)  # before any work: options, key, PACS answering
        assert checked is not None  # export options were given (else check_export_args refused)
        export = ExportSettings(checked.targets, checked.units, checked.deidentifier, checked.retries,
                                checked.backoff, args.export_dicom_dir)
    result = run_cohort(args.cases, options, args.out, num_samples=args.num_samples, seed=args.seed,
                        prior=args.prior, device=args.device, address=args.address, workers=args.workers,
                        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
                        retries=args.retries, export=export, progress=args.progress)
    print(result.summary_line())
    for row in result.failed:
        print(f"diffrecon cohort: {row['case']}/{row['method']} failed: {row['error']}", file=sys.stderr)
    if result.failed:
        raise SystemExit(1)
