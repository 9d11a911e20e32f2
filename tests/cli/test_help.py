"""Every sub-command answers --help (argparse exits 0) with its usage and options; ``recon --help`` gives every
default, per method as the registry's constructors set them."""
from __future__ import annotations

import inspect
import re

import pytest

from diffrecon import __version__
from diffrecon.cli import COMMAND_MODULES, main


@pytest.mark.parametrize("command", COMMAND_MODULES)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as raised:
        main([command, "--help"])
    assert raised.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: diffrecon {command}") and "--" in text


def test_recon_help_lists_dicom_inputs_and_export(capsys):
    with pytest.raises(SystemExit):
        main(["recon", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "DICOM export and PACS" in text and "--pacs-host" in text and "--export-source-dicom" in text
    assert "anatomical MR for bowsher: NIfTI or DICOM series folder" in text


def test_unknown_method_is_refused(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["recon", "--method", "fbp", "--out", "x"])
    assert raised.value.code == 2 and "invalid choice: 'fbp'" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["--version"])
    assert raised.value.code == 0 and capsys.readouterr().out == f"diffrecon {__version__}\n"


def _recon_help(capsys, monkeypatch) -> str:
    """``diffrecon recon --help`` on one line per option (a wide terminal), whitespace collapsed."""
    monkeypatch.setenv("COLUMNS", "10000")
    with pytest.raises(SystemExit):
        main(["recon", "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("option,key", [("--steps STEPS", "steps"), ("--warm-start WARM_START", "warm_start"),
                                        ("--iterations ITERATIONS", "iterations"), ("--beta BETA", "beta"),
                                        ("--lam LAM", "lam")])
def test_recon_help_gives_every_methods_default_from_the_registry(capsys, monkeypatch, option, key):
    from diffrecon.methods.registry import METHODS, method_parameters

    text = _recon_help(capsys, monkeypatch)
    listed = re.search(rf" {option} [^[]*?Default per method: (.*?) --[a-z]", text)
    assert listed, f"{option}: no per-method defaults in the help"
    shown = {name: value for group in listed[1].split("; ")
             for names, _, value in [group.rpartition(" ")] for name in names.split(", ")}
    expected = {name: str(parameters[key].default) for name in METHODS
                if key in (parameters := method_parameters(name))
                and parameters[key].default is not inspect.Parameter.empty}
    assert shown == expected
    if key in ("steps", "warm_start"):  # every diffusion method (those taking a prior) is listed
        assert set(shown) == {name for name in METHODS if "prior" in method_parameters(name)}


def test_recon_help_gives_the_plain_defaults(capsys, monkeypatch):
    text = _recon_help(capsys, monkeypatch)
    for option, default in [("--samples NUM_SAMPLES", 1), ("--seed SEED", 0), ("--mask MASK", "random"),
                            ("--coils COILS", 8), ("--center-fraction CENTER_FRACTION", 0.08)]:
        assert re.search(rf" {option} [^[]*?default {default}\b", text), option


def _option_help(command: str, capsys, monkeypatch) -> dict[str, str]:
    """``diffrecon COMMAND --help``: each option's first spelling -> its help text, whitespace collapsed."""
    monkeypatch.setenv("COLUMNS", "10000")
    with pytest.raises(SystemExit):
        main([command, "--help"])
    lines = capsys.readouterr().out.splitlines()
    texts: dict[str, str] = {}
    option = None
    for line in lines:
        match = re.match(r"^  (--[a-z][a-z0-9-]*)", line)
        if match:
            option = match[1]
            texts[option] = line
        elif option and line.startswith("    "):
            texts[option] += line
        else:
            option = None
    return {key: " ".join(text.split()) for key, text in texts.items()}


@pytest.mark.parametrize("command", COMMAND_MODULES)
def test_every_option_with_a_default_says_which(command, capsys, monkeypatch):
    """An option that takes a value and has one when left out says what it is in --help (recon's method options
    list theirs per method); switches (store_true/false) and options without a value when left out need not."""
    import argparse

    from diffrecon.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    texts = _option_help(command, capsys, monkeypatch)
    missing = []
    for action in commands.choices[command]._actions:
        if not action.option_strings or action.nargs == 0 or action.required:
            continue
        if action.default in (None, [], argparse.SUPPRESS):
            continue
        if "default" not in texts[action.option_strings[0]].lower():
            missing.append(action.option_strings[0])
    assert not missing, f"{command} --help gives no default for {missing}"
