"""Bundles are found by name: in $DIFFRECON_BUNDLES first, then among the bundles the package ships (package
data, so a non-editable install finds them)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from diffrecon.bundle import BUNDLES_ENV, PACKAGED_BUNDLES, bundle_path
from diffrecon.checks import InputError
from tests.bundles.conftest import BUNDLES

REPOSITORY = BUNDLES.parent


def test_packaged_bundles_are_the_repository_bundles(monkeypatch):
    monkeypatch.delenv(BUNDLES_ENV, raising=False)
    assert PACKAGED_BUNDLES.resolve() == BUNDLES
    assert bundle_path("pet_fdg_prior") == PACKAGED_BUNDLES / "pet_fdg_prior"
    with pytest.raises(InputError, match="bundles found: .*mr_t1_prior, .*pet_fdg_prior"):
        bundle_path("pet_fdg_priors")


def test_bundle_roots_from_the_environment_come_first(tmp_path, monkeypatch):
    first, second = tmp_path / "site", tmp_path / "other"
    for folder in (first / "pet_fdg_prior", second / "pet_fdg_prior", second / "site_prior"):
        (folder / "configs").mkdir(parents=True)
    monkeypatch.setenv(BUNDLES_ENV, os.pathsep.join([str(first), str(second)]))
    assert bundle_path("pet_fdg_prior") == first / "pet_fdg_prior"
    assert bundle_path("site_prior") == second / "site_prior"
    assert bundle_path("mr_t1_prior") == PACKAGED_BUNDLES / "mr_t1_prior"
    assert bundle_path(second / "site_prior") == second / "site_prior"  # a folder is used as given


def test_a_wheel_ships_the_bundles(tmp_path):
    """Build the wheel a non-editable ``pip install .`` installs (from a copy of the sources, with a training
    run's leftovers that must not ship) and find a bundle from it, outside the repository."""
    pytest.importorskip("setuptools")
    source = tmp_path / "source"
    leave_out = shutil.ignore_patterns("__pycache__", "runs", "samples")
    shutil.copytree(REPOSITORY / "diffrecon", source / "diffrecon", symlinks=True, ignore=leave_out)
    shutil.copytree(BUNDLES, source / "bundles", ignore=leave_out)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPOSITORY / name, source / name)
    (source / "bundles/pet_fdg_prior/runs/axial").mkdir(parents=True)
    (source / "bundles/pet_fdg_prior/runs/axial/model.pt").write_bytes(b"a training run's output")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("diffrecon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for bundle in ("pet_fdg_prior", "mr_t1_prior"):
        shipped = {str(p.relative_to(BUNDLES)) for p in (BUNDLES / bundle).rglob("*")
                   if p.is_file() and not {"runs", "samples"} & set(p.parts)}
        assert {f"diffrecon/bundles/{name}" for name in shipped} <= names
    assert {"diffrecon/bundles/common/prior_train.json", "diffrecon/bundles/common/prior_finetune.json"} <= names
    assert not [name for name in names if "/runs/" in name]
    zipfile.ZipFile(wheel).extractall(tmp_path / "site-packages")
    found = subprocess.run([sys.executable, "-c", "from diffrecon.bundle import bundle_path; "
                            "print(bundle_path('mr_t1_prior').resolve())"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path / "site-packages")})
    assert found.returncode == 0, found.stderr[-3000:]
    assert Path(found.stdout.strip()) == (tmp_path / "site-packages/diffrecon/bundles/mr_t1_prior").resolve()
