"""Every sub-command answers --help (argparse exits 0) with its usage and options."""
from __future__ import annotations

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
