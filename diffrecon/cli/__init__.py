"""The ``diffrecon`` command line: one module per sub-command, each with ``register(subparsers)``.

Heavy imports (torch, monai, ...) stay inside the command functions so that ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from diffrecon import __version__
from diffrecon.checks import InputError

# Sub-command modules in diffrecon/cli/, in the order `diffrecon --help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("demo", "simulate", "recon", "personalise", "dicom2nifti", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffrecon", description="PET and MRI reconstruction with diffusion priors.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"diffrecon.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as error:
        print(f"diffrecon {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
