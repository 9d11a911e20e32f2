"""The README's set-up commands are what CI runs."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    commands = _readme_commands()
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1, commands
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_commands[0] in ci_lines


def test_readme_demo_command_runs_the_demo():
    demo = [c for c in _readme_commands() if "diffrecon demo" in c]
    assert len(demo) == 1 and "torch==2.13.0" in demo[0]


def test_readme_python_example_runs():
    snippets = re.findall(r"```python\n(.+?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    assert snippets
    namespace: dict = {}
    exec(compile(snippets[0].replace("iterations=4", "iterations=1"), "README.md", "exec"), namespace)
    image, subject = namespace["image"], namespace["subject"]
    assert image.shape == subject.fdg.shape and image.min() >= 0 and image.sum() > 0
