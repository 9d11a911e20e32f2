"""The README's set-up commands are what CI runs."""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.io.nifti import load_nifti
from diffrecon.metrics import psnr
from diffrecon.physics.geometry import get_preset

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1, commands
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_commands[0] in ci_lines


def _readme_demo_arguments() -> list[str]:
    """The arguments of the README's one ``diffrecon demo`` command (after the pinned-torch install)."""
    demo = [c for c in _readme_commands() if "diffrecon demo" in c]
    assert len(demo) == 1 and "torch==2.13.0" in demo[0], demo
    command = next(part for part in demo[0].split("&&") if "diffrecon demo" in part)
    return shlex.split(command)[1:]


def test_readme_demo_command_runs_the_demo(tmp_path):
    """The README's demo command, on the one-slice preset at full counts (seconds instead of a minute), writes
    the volumes on the preset's grid, the panel and a metrics table whose figures beat trivial images."""
    arguments = _readme_demo_arguments()
    assert arguments[:3] == ["demo", "--out", "demo_out"], arguments
    assert main([*arguments[:2], str(tmp_path), *arguments[3:], "--preset", "demo2d", "--count-level", "full"]) == 0
    grid = get_preset("demo2d").grid
    images = {}
    for name in ("truth_fdg", "osem", "map_rdp", "pet_lisch", "mu_map", "t1"):
        images[name], affine = load_nifti(tmp_path / f"{name}.nii.gz")
        assert images[name].shape == grid.shape, name
        np.testing.assert_allclose(affine, grid.affine)
    assert (tmp_path / "panel.png").stat().st_size > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    table = (tmp_path / "metrics.md").read_text()
    truth = images["truth_fdg"]
    constant = psnr(np.full_like(truth, truth.mean()), truth)  # ~16 dB on this slice
    for name, key in (("OSEM", "osem"), ("MAP-RDP", "map_rdp"), ("PET-LiSch", "pet_lisch")):
        row = metrics[name]
        assert row["psnr_db"] == pytest.approx(psnr(images[key], truth), abs=1e-3)
        assert row["psnr_db"] > constant + 6 and row["ssim"] > 0.6 and row["nrmse"] < 0.4, row
        assert 0 < row["crc_hot_lesions"] <= 1.2 and 0 < row["white_matter_cov"] < 0.5, row
        assert f"| {name} | {row['psnr_db']:.2f} | {row['ssim']:.3f} |" in table
        # EM keeps the measured activity: the image total is the truth's within a few percent
        assert images[key].sum() == pytest.approx(truth.sum(), rel=0.05)


def test_readme_python_examples_run(tmp_path, monkeypatch):
    """Both README snippets: a case folder written by ``diffrecon simulate`` (the first snippet's "sim"), and a
    phantom reconstructed in memory; one OSEM iteration each."""
    snippets = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(snippets) == 2, snippets
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--out", "sim", "--seed", "20000", "--preset", "demo2d"]) == 0
    namespaces: list[dict] = [{}, {}]
    for snippet, namespace in zip(snippets, namespaces):
        exec(compile(snippet.replace("iterations=4", "iterations=1").replace('build_method("osem")',
                                                                            'build_method("osem", iterations=1)'),
                     "README.md", "exec"), namespace)
    case, result = namespaces[0]["case"], namespaces[0]["result"]
    assert result.mean.shape == case.physics.grid.shape and result.report["settings"]["iterations"] == 1
    image, subject = namespaces[1]["image"], namespaces[1]["subject"]
    assert image.shape == subject.fdg.shape and image.min() >= 0 and image.sum() > 0
