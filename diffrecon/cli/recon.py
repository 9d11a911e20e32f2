"""``diffrecon recon``: reconstruct PET or MRI data with any registered method; the method picks the modality.

Argument parsing only: the case is loaded by :mod:`diffrecon.io.cases` (options in :mod:`.recon_pet` and
:mod:`.recon_mri`), the method comes from :mod:`diffrecon.methods.registry` and is called as
``method(data, physics, num_samples=..., generator=...)``, and the result is written by
:func:`diffrecon.pipeline.reconstruct_case` (NIfTI mean, std and samples, JSON report, PNG panel), as the
bundles do, and optionally exported as DICOM to a PACS. A new method needs no code here: its hyperparameters
come from the named options below or from ``--set NAME=VALUE``.
"""
from __future__ import annotations

import argparse
import json
import textwrap
from typing import Any

from diffrecon.checks import InputError, check_output_dir
from diffrecon.cli import recon_mri, recon_pet
from diffrecon.cli.export import add_export_arguments, check_export_args, export_from_args, print_export_report
from diffrecon.io.figures import PET_COLORMAPS
from diffrecon.methods.registry import (METHODS, check_options, method_names, method_parameters,
                                        parameter_defaults, required_inputs)

# options that are method hyperparameters, by constructor parameter name
HYPERPARAMETERS = ("iterations", "subsets", "beta", "gamma", "neighbours", "lam", "steps", "warm_start", "guidance")
LOADERS = {"PT": recon_pet, "MR": recon_mri}  # the case's options and loading, per modality


def per_method_defaults(key: str) -> str:
    """The defaults of hyperparameter ``key`` as read from the methods' constructors, methods that share one
    grouped in registry order, e.g. "pet-dds, pet-lisch 8; score-mri 30"."""
    groups: dict[str, list[str]] = {}
    for name, value in parameter_defaults(key).items():
        groups.setdefault(str(value), []).append(name)
    return "; ".join(f"{', '.join(names)} {value}" for value, names in groups.items())


class MethodDefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each hyperparameter's text with its per-method defaults (:func:`per_method_defaults`), read
    only when the help is shown so that parsing imports no method, and wraps lines at spaces only so that
    method names and options keep their hyphens."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action) or ""
        if action.dest in HYPERPARAMETERS:
            text += f". Default per method: {per_method_defaults(action.dest)}".replace("%", "%%")
        return text

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recon", help="reconstruct PET or MRI data (any method) -> NIfTI + JSON + PNG [+ DICOM/PACS]",
        formatter_class=MethodDefaultsFormatter,
        description="Reconstruct a PET sinogram or MRI k-space. The method decides which inputs are needed: PET "
                    "methods take a sinogram and acquisition factors, MRI methods k-space and a sampling mask (or "
                    "an image to undersample). Methods: " +
                    "; ".join(f"{e.name} ({e.modality}): {e.summary}" for e in METHODS.values()))
    parser.add_argument("--method", required=True, choices=method_names(), help="reconstruction method")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--colormap", default=None, choices=PET_COLORMAPS,
                        help="colour map of a PET result's panel: gray_r (inverted grey, the default) or hot; MRI "
                             "panels are grey")
    method = parser.add_argument_group("method options (each method takes some of them; others are refused)")
    # the hyperparameters' help ends with their defaults per method, read from the registry
    method.add_argument("--iterations", type=int, default=None,
                        help="number of iterations; pet-lisch: K of its likelihood schedule, auto: where OSEM meets "
                             "the data's discrepancy target")
    method.add_argument("--subsets", type=int, default=None, help="ordered subsets of the EM updates")
    method.add_argument("--beta", type=float, default=None, help="penalty strength (map-rdp, bowsher)")
    method.add_argument("--gamma", type=float, default=None, help="RDP edge-preservation parameter (map-rdp); "
                                                                  "weight of the data in DDS's conjugate-gradient "
                                                                  "step (dds; --set gamma=auto: the discrepancy "
                                                                  "principle)")
    method.add_argument("--bowsher-neighbours", dest="neighbours", type=int, default=None,
                        help="neighbours kept per voxel, of 26 (bowsher)")
    method.add_argument("--lam", type=float, default=None, help="TV weight relative to max|A^H y| (tv); Tikhonov "
                                                                "weight (cg-sense); relative anchor strength "
                                                                "(pet-dds; auto: the discrepancy principle)")
    method.add_argument("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
                        help="any other method option (a JSON value or a string), e.g. --set steps=20")
    method.add_argument("--steps", type=int, default=None, help="reverse diffusion steps = network evaluations per "
                                                                "sample")
    method.add_argument("--warm-start", type=float, default=None, help="start the reverse process at this fraction "
                                                                       "of the noise schedule from the noised OSEM "
                                                                       "(PET) or zero-filled/CG-SENSE (MRI) image")
    method.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance strength w >= 0 of an MR-conditioned prior (--prior "
                             "pet_fdg_mr_prior with --mr): the noise prediction is (1 + w) eps(x, MR) - w eps(x, 0); 0: "
                             "the conditional prediction alone; without --mr, the prior's unconditional score (w 0)")
    method.add_argument("--num-samples", "--samples", type=int, default=1, help="posterior samples (diffusion "
                                                                                "methods): mean, std and samples "
                                                                                "are written (default %(default)s)")
    method.add_argument("--prior", default=None, help="prior bundle (name or folder) for diffusion methods; "
                                                      "default the shipped pet_fdg_prior (PET) or mr_t1_prior "
                                                      "(MRI)")
    method.add_argument("--seed", type=int, default=0, help="seed of every random draw (mask, simulated noise, "
                                                            "samples; default %(default)s)")
    method.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default %(default)s)")
    recon_pet.add_arguments(parser.add_argument_group("PET inputs"))
    recon_mri.add_arguments(parser.add_argument_group("MRI inputs"))
    add_export_arguments(parser.add_argument_group("DICOM export and PACS (optional; as diffrecon export)"))
    parser.set_defaults(func=run)


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    """The method's hyperparameters given on the command line (named options and ``--set``)."""
    options = {key: getattr(args, key) for key in HYPERPARAMETERS if getattr(args, key) is not None}
    for item in args.settings:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise InputError(f"--set {item!r}; expected NAME=VALUE with a Python identifier as NAME")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def run(args: argparse.Namespace) -> None:
    check_output_dir("--out", args.out)  # before the heavy imports: a folder that cannot be written costs no seconds
    from diffrecon.io.export import std_note
    from diffrecon.io.results import as_volume
    from diffrecon.pipeline import BUNDLE_INPUTS, DEFAULT_PRIORS, check_colormap, method_for_case, reconstruct_case
    from diffrecon.priors.bundle import check_prior_modality

    modality = METHODS[args.method].modality
    if modality == "MR" and args.export_source_dicom:
        raise InputError("--export-source-dicom: k-space files carry no patient position, so an MRI result cannot "
                         "join a source study; leave the option out to export it as a new study")
    check_colormap(args.colormap, modality)
    options = method_options(args)
    required = required_inputs(args.method)
    images = [key for key in required if key not in BUNDLE_INPUTS]  # e.g. the Bowsher MR, from the case
    for key in images:
        if not getattr(args, key, None):
            raise InputError(f"--{key.replace('_', '-')} is required for the {args.method} method")
    guiding = bool(getattr(args, "mr", None)) and "mr" not in images  # the MR guidance of a PET diffusion method
    if guiding:
        if "mr" not in method_parameters(args.method):
            raise InputError(f"--mr: method {args.method} takes no MR image")
        images.append("mr")
    check_options(args.method, {**options, **dict.fromkeys(required)})
    if "prior" in required and args.prior:  # before the case is loaded or simulated
        check_prior_modality(args.prior, modality, args.method, name="--prior")
    export = check_export_args(args, modality)  # before the reconstruction: options, source, PACS answering
    case = LOADERS[modality].load(args, images=images)
    for image, note in case.info.get("resampled", {}).items():
        print(f"{image}: {note}")
    method = method_for_case(args.method, case, options, args.prior, mr=True if guiding else None)
    if "prior" in required:  # which prior bundle made the result, in its report
        case.info["prior"] = str(args.prior or DEFAULT_PRIORS[modality])
    result, written = reconstruct_case(case, method, args.out, num_samples=args.num_samples, seed=args.seed,
                                       colormap=args.colormap)
    summary = ", ".join(f"{key} NRMSE {m['nrmse']:.4f}" for key, m in written.get("metrics", {}).items())
    print(f"wrote {args.method}.nii.gz, .png and .json in {args.out}" + (f" ({summary})" if summary else ""))
    description = result.report["description"]
    report = export_from_args(args, as_volume(result.mean), case.affine, modality=modality,
                              method_description=description,
                              std_volume=None if result.std is None else as_volume(result.std), options=export,
                              std_note=std_note(result.report))
    if report is not None:
        rerun = (f"diffrecon export --result {args.out}/{args.method}.nii.gz --modality {modality} "
                 f"--method-description '{description}'")
        if result.std is not None:
            rerun += f" --std {args.out}/{args.method}_std.nii.gz"
            if std_note(result.report):
                rerun += f" --std-note '{std_note(result.report)}'"
        print_export_report(report, "recon", f"rerun `{rerun}` with the same export options to send what is missing")
