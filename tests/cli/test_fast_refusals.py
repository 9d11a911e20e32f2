"""Options the parser can judge are refused (or answered: --help, --version) before torch and MONAI are imported,
so a typo costs a fraction of a second, not the seconds those imports take; so is an output folder that cannot be
written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# each argv exits through argparse (code 0 for --help/--version, 2 for a refusal) without running a command
PARSER_ANSWERS = [
    (["--version"], 0),
    (["--help"], 0),
    (["demo", "--help"], 0),
    (["export", "--help"], 0),
    (["recon", "--method", "nosuch", "--out", "x"], 2),  # bad choice
    (["recon", "--method", "osem", "--out", "x", "--nosuch"], 2),  # unknown option
    (["recon", "--method", "osem", "--out", "x", "--iterations", "abc"], 2),  # bad number
    (["recon", "--method", "osem"], 2),  # missing required option
    (["recon", "--method", "osem", "--out", "x", "--colormap", "jet"], 2),
    ([], 2),  # no command
]
# an output folder that cannot be written is refused (exit status 2) before the heavy imports too
if Path("/proc/self").is_dir():
    PARSER_ANSWERS += [(["recon", "--method", "osem", "--sinogram", "sim", "--out", "/proc/diffrecon_out"], 2),
                       (["demo", "--out", "/proc/diffrecon_out"], 2)]

PROBE = """
import json, sys
from diffrecon.cli import main
try:
    code = main(json.loads(sys.argv[1]))  # 2: an InputError refused by the command before its work
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "heavy": sorted(m for m in ("torch", "monai") if m in sys.modules)}))
"""


@pytest.mark.parametrize("argv,code", PARSER_ANSWERS, ids=lambda value: " ".join(value) if isinstance(value, list)
                         else str(value))
def test_parser_answers_before_torch_and_monai_are_imported(argv, code):
    run = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True,
                         timeout=60, check=True)
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    assert answer == {"code": code, "heavy": []}, run.stderr[-500:]
