"""The ``diffrecon`` command line: one module per sub-command, each with ``register(subparsers)``.

Heavy imports (torch, monai, ...) stay inside the command functions so that ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence

from diffrecon import __version__
from diffrecon.checks import InputError

# Sub-command modules in diffrecon/cli/, in the order `diffrecon --help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("demo", "simulate", "recon", "cohort", "personalise", "dicom2nifti", "export")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffrecon", description="PET and MRI reconstruction with diffusion priors.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"diffrecon.cli.{name}").register(subparsers)
    return parser


def option_names(parser: argparse.ArgumentParser, argv: Sequence[str]) -> dict[str, str]:
    """Each option's Python name (its dest, as the library calls the parameter) -> the option as the user typed it
    (``--samples`` or ``--num-samples``), else its first spelling."""
    typed = {arg.partition("=")[0] for arg in argv}
    return {action.dest: next((option for option in action.option_strings if option in typed),
                              action.option_strings[0])
            for action in parser._actions if action.option_strings}


def in_option_names(message: str, names: dict[str, str]) -> str:
    """``message`` with each parameter refused in the library's wording, "<name> must ..." or "<name> (<value>) must
    ...", named by its option instead (``num_samples must be`` -> ``--samples must be``); other words are left."""
    if not names:
        return message
    pattern = "|".join(map(re.escape, sorted(names, key=len, reverse=True)))
    return re.sub(rf"(?<![\w-])({pattern})(?= (?:\([^)]*\) )?must\b)", lambda match: names[match[1]], message)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except InputError as error:
        commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
        message = in_option_names(str(error), option_names(commands.choices[args.command], argv))
        print(f"diffrecon {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
