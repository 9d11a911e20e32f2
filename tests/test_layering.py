"""The import direction of DESIGN.md holds: physics and priors know nothing of methods, io knows nothing of
methods, methods know nothing of files, DICOM or bundles, transforms and data read and write no files, and the
command line only parses arguments. Checked on the source (every import statement,
including those inside functions), so a violation fails here before it becomes a cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffrecon"

# layer -> modules it must not import (prefix match on the dotted name); no layer imports the benchmarks or the
# command line, which sit on top of everything
ON_TOP = ("diffrecon.benchmarks", "diffrecon.cli")
FORBIDDEN = {
    "physics": (*ON_TOP, "diffrecon.methods", "diffrecon.priors", "diffrecon.classical", "diffrecon.io",
                "monai.networks.nets", "monai.inferers"),  # no network code (MONAI FFT utilities are fine)
    "priors": (*ON_TOP, "diffrecon.methods", "diffrecon.physics", "diffrecon.classical", "diffrecon.io"),
    "classical": (*ON_TOP, "diffrecon.methods", "diffrecon.priors", "diffrecon.io"),
    "io": (*ON_TOP, "diffrecon.methods", "diffrecon.priors", "diffrecon.classical"),
    "methods": (*ON_TOP, "diffrecon.io", "diffrecon.bundle", "diffrecon.priors.bundle", "pydicom", "pynetdicom",
                "highdicom", "nibabel"),  # methods get priors, they do not load bundles
    "transforms": (*ON_TOP, "diffrecon.io", "diffrecon.methods"),
    "data": (*ON_TOP, "diffrecon.io", "diffrecon.methods"),
    "uncertainty": (*ON_TOP, "diffrecon.methods", "diffrecon.io", "diffrecon.priors", "diffrecon.bundle"),
    "cli": ("diffrecon.benchmarks", "diffrecon.physics"),  # argument parsing only: the work is a library call
}
SCRIPTS = PACKAGE.parent / "scripts"


def imports_of(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Every module named by an import statement in ``path`` under ``root`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer):
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no modules found for layer {layer}"
    violations = [f"{path.relative_to(PACKAGE)} imports {name}" for path in files for name in sorted(imports_of(path))
                  if name.startswith(FORBIDDEN[layer])]
    assert not violations, "\n".join(violations)


def test_the_checker_sees_imports_inside_functions_and_relative_ones(tmp_path):
    source = tmp_path / "diffrecon" / "methods"
    source.mkdir(parents=True)
    (source / "bad.py").write_text("def f():\n    from diffrecon.io.nifti import save_nifti\n"
                                   "from ..io import sinogram\nimport pydicom\n")
    found = imports_of(source / "bad.py", tmp_path)
    assert {"diffrecon.io.nifti", "diffrecon.io", "pydicom"} <= found


def test_scripts_import_the_package_not_each_other():
    """Code two scripts share lives in the package (diffrecon.benchmarks, diffrecon.priors.runs); a script
    importing another through the script folder on sys.path breaks when either moves."""
    scripts = {path.stem for path in SCRIPTS.glob("*.py")}
    violations = [f"{path.name} imports {name}" for path in sorted(SCRIPTS.glob("*.py"))
                  for name in sorted(imports_of(path, SCRIPTS)) if name.split(".")[0] in scripts]
    violations += [f"{path.name} changes sys.path" for path in sorted(SCRIPTS.glob("*.py"))
                   if "sys.path" in path.read_text()]
    assert not violations, "\n".join(violations)
