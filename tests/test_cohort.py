"""``diffrecon cohort`` on a real local Ray (2 CPUs) in real processes, over tiny one-slice cases: the results
equal a sequential run's, a bad case is reported while the others complete, a worker killed mid-case is retried
and every pair is written once, a killed command resumes with only what was missing, a complete cohort does no
work; and the cheap refusals (cases, manifests, options) before any work."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from diffrecon.checks import InputError
from diffrecon.cli import main
from diffrecon.cohort import find_cases, run_cohort
from diffrecon.cohort.cases import load_case
from diffrecon.cli.cohort import method_options
from tests.conftest import simulate_case

pytest.importorskip("ray")

SEEDS = (20001, 20002, 20003, 20004)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def case_root(tmp_path_factory) -> Path:
    """Four tiny demo2d cases (diffrecon simulate folders) in one folder."""
    root = tmp_path_factory.mktemp("cohort_cases")
    for seed in SEEDS:
        simulate_case(root / f"s{seed}", seed=seed)
    return root


def manifest(path: Path, cases: list[Path], **columns: str) -> Path:
    """A manifest CSV naming ``cases`` (simulate folders as sinograms), with extra constant ``columns``."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case", "sinogram", *columns])
        for case in cases:
            writer.writerow([case.name, os.path.relpath(case, path.parent), *columns.values()])
    return path


def cohort(*args: str, **popen) -> subprocess.Popen:
    """``diffrecon cohort`` in a process of its own (its own local Ray of 2 CPUs, no progress bar)."""
    return subprocess.Popen([sys.executable, "-m", "diffrecon", "cohort", "--no-progress", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    """The exit status and output of a cohort process; the timeout only guards against a hang (a loaded machine
    has taken over 120 s for a 20 s run)."""
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def summary(out: Path) -> dict[tuple[str, str], dict[str, str]]:
    with open(out / "summary.csv", newline="") as handle:
        return {(row["case"], row["method"]): row for row in csv.DictReader(handle)}


def leftovers(out: Path) -> list[Path]:
    return sorted(out.glob("*/.*.partial-*"))


def test_results_equal_a_sequential_run_and_a_bad_case_is_reported(case_root, tmp_path):
    from diffrecon.io.nifti import load_nifti

    bad = tmp_path / "cases" / "broken"
    bad.mkdir(parents=True)
    (bad / "sinogram.npz").write_bytes(b"not a sinogram")
    for seed in SEEDS:
        (tmp_path / "cases" / f"s{seed}").symlink_to(case_root / f"s{seed}")
    out = tmp_path / "out"
    code, stdout, stderr = finish(cohort("--cases", str(tmp_path / "cases"), "--method", "osem", "--method",
                                         "map-rdp", "--out", str(out), "--workers", "2"))
    assert code == 1, stderr[-3000:]  # a pair failed: reported, not fatal
    rows = summary(out)
    assert len(rows) == 10 and "8 done, 0 already complete, 2 failed" in stdout
    for method in ("osem", "map-rdp"):
        row = rows[("broken", method)]
        assert row["status"] == "failed" and row["attempts"] == "1"  # bad input: not retried
        assert "sinogram" in row["error"] and "\n" not in row["error"] and "broken/" + method in stderr
    workers = {row["worker"] for row in rows.values() if row["status"] == "done"}
    assert len(workers) == 2 and {row["device"] for row in rows.values() if row["status"] == "done"} == {"cpu"}
    assert not leftovers(out) and not (out / "broken" / "osem").exists()

    # the same pairs one after the other in this process, as `diffrecon recon` does them
    from diffrecon.io.cases import load_pet_case
    from diffrecon.methods import build_method
    from diffrecon.pipeline import reconstruct_case

    for seed in SEEDS:
        case = load_pet_case(case_root / f"s{seed}")
        for method, options in (("osem", {"progress": False}), ("map-rdp", {"progress": False})):
            _, report = reconstruct_case(case, build_method(method, **options), tmp_path / "seq" / method)
            ours, _ = load_nifti(out / f"s{seed}" / method / f"{method}.nii.gz")
            np.testing.assert_array_equal(ours, load_nifti(tmp_path / "seq" / method / f"{method}.nii.gz")[0])
            row = rows[(f"s{seed}", method)]
            assert row["status"] == "done" and row["attempts"] == "1" and row["nfe"] == "0"
            assert float(row["nrmse"]) == pytest.approx(report["metrics"][method]["nrmse"])
            assert float(row["crc_hot_lesions"]) > 0 and float(row["wall_s"]) > float(row["method_s"]) > 0
    import pyarrow.parquet as pq

    assert pq.read_table(out / "summary.parquet").num_rows == 10
    assert "| s20001 | osem | done |" in (out / "summary.md").read_text()

    # a complete cohort does no work: no Ray is started, nothing is rewritten
    records = {path: path.stat().st_mtime_ns for path in out.glob("*/*/cohort.json")}
    again = run_cohort(manifest(tmp_path / "good.csv", [case_root / f"s{s}" for s in SEEDS]),
                       {"osem": {}, "map-rdp": {}}, out, progress=False)
    assert again.workers == 0 and "(nothing to do)" in again.summary_line()  # no Ray worker was started
    assert {path: path.stat().st_mtime_ns for path in out.glob("*/*/cohort.json")} == records
    assert {row["status"] for row in summary(out).values()} == {"skipped"}


def _partial(out: Path, timeout: float = 90) -> tuple[Path, dict]:
    """The first partial folder that appears under ``out`` and its attempt record (pid of the worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for folder in leftovers(out):
            try:
                return folder, json.loads((folder / "attempt.json").read_text())
            except (OSError, ValueError):
                pass
        time.sleep(0.02)
    raise AssertionError(f"no pair started under {out} within {timeout} s")


def _wait_for_orphans(out: Path, timeout: float = 60) -> None:
    """Wait until the workers of a killed command are gone: Ray workers have process groups of their own and end
    once they notice their raylet died, after the step they are in (a pair they publish then is complete)."""
    pids = {int(row["worker"].rpartition(":")[2]) for row in
            (json.loads(path.read_text()) for path in out.glob("*/*/cohort.json"))}
    for folder in leftovers(out):
        try:
            pids.add(json.loads((folder / "attempt.json").read_text())["pid"])
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)


def test_a_killed_worker_is_retried_and_a_killed_cohort_resumes_with_only_what_was_missing(case_root, tmp_path):
    out = tmp_path / "out"
    cases = manifest(tmp_path / "cases.csv", [case_root / f"s{s}" for s in SEEDS[:3]])
    args = ("--cases", str(cases), "--method", "map-rdp", "--set", "iterations=20", "--out", str(out),
            "--workers", "1")
    process = cohort(*args, start_new_session=True)  # its local Ray in its process group, killed with it
    folder, attempt = _partial(out)
    os.kill(attempt["pid"], signal.SIGKILL)  # the worker, mid-case: Ray restarts it and retries the pair
    deadline = time.monotonic() + 90
    while not list(out.glob("*/map-rdp/cohort.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # then the whole command
    process.communicate(timeout=30)
    _wait_for_orphans(out)
    complete = {path: path.stat().st_mtime_ns for path in out.glob("*/map-rdp/cohort.json")}
    assert 1 <= len(complete) < 3
    killed = json.loads((out / folder.parent.name / "map-rdp" / "cohort.json").read_text())
    assert killed["attempts"] == 2 and killed["worker"] != f"{attempt['host']}:{attempt['pid']}"

    code, stdout, stderr = finish(cohort(*args))  # the rerun: only what was missing
    assert code == 0, stderr[-3000:]
    rows = summary(out)
    assert {row["status"] for key, row in rows.items()
            if out / key[0] / "map-rdp" / "cohort.json" in complete} == {"skipped"}
    assert sum(row["status"] == "done" for row in rows.values()) == 3 - len(complete)
    assert {path: path.stat().st_mtime_ns for path in complete} == complete  # not redone
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/*/cohort.json")) == \
        [f"s{seed}/map-rdp/cohort.json" for seed in SEEDS[:3]]  # each pair written once, nothing else
    assert not leftovers(out) and not (out / ".cohort.lock").exists()


def test_folder_manifest_and_demo_cases_are_listed(case_root, tmp_path):
    specs = find_cases(case_root)
    assert [s.name for s in specs] == [f"s{seed}" for seed in SEEDS] and {s.modality for s in specs} == {"PT"}
    assert set(specs[0].masks) == {"lesion_masks", "white_matter", "labels"}
    listed = find_cases(manifest(tmp_path / "m.csv", [case_root / "s20001"], psf_fwhm="3.5"))
    assert listed[0].options == {"sinogram": str((case_root / "s20001").resolve()), "psf_fwhm": 3.5}
    assert [s.name for s in find_cases("demo:2")] == ["demo_20000", "demo_20001"]


def test_a_folder_case_of_siemens_raw_data_is_an_mri_case(shared_data, tmp_path):
    (tmp_path / "gre").mkdir()
    (tmp_path / "gre" / "kspace.dat").symlink_to(shared_data / "twix_gre_siemens" / "gre.dat")
    (tmp_path / "gre" / "case.json").write_text('{"acceleration": 4}')
    [spec] = find_cases(tmp_path)
    assert spec.modality == "MR" and spec.options["acceleration"] == 4.0
    case = load_case(spec)
    assert case.data.shape == (2, 160, 160) and case.info["acceleration"] == pytest.approx(4.0, rel=0.1)


@pytest.mark.parametrize("rows,message", [
    ("case,sinogram,colour\na,x,red\n", "columns ['colour']"),
    ("case,sinogram\na,missing.npz\n", "row 2: sinogram 'missing.npz' does not exist"),
    ("case,sinogram,kspace\na,{s},{s}\n", "needs exactly one of sinogram (PET), kspace or image (MRI)"),
    ("case,sinogram,acceleration\na,{s},4\n", "columns acceleration are for the other modality"),
    ("case,sinogram,psf_fwhm\na,{s},wide\n", "psf_fwhm is 'wide'; expected a number"),
    ("case,sinogram\na,{s}\na,{s}\n", "case names must be unique; repeated: a"),
])
def test_bad_manifests_are_refused_naming_the_row(case_root, tmp_path, rows, message):
    path = tmp_path / "m.csv"
    path.write_text(rows.format(s=case_root / "s20001"))
    with pytest.raises(InputError) as refused:
        find_cases(path)
    assert message in str(refused.value)


def test_a_folder_with_a_stray_sub_folder_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(InputError, match="sub-folder\\(s\\) 'notes' hold no case"):
        find_cases(tmp_path)


@pytest.mark.parametrize("argv,message", [
    (["--method", "score-mri"], "'score-mri' reconstructs MR data but every case is PT"),
    (["--method", "osem", "--workers", "0"], "--workers must be an integer >= 1"),
    (["--method", "osem", "--num-samples", "0"], "--num-samples must be an integer >= 1"),
    (["--method", "osem", "--address", "cluster"], "address must be 'local'"),
    (["--method", "osem", "--gpus-per-worker", "-1"], "--gpus-per-worker must be a number >= 0"),
    (["--method", "osem", "--set", "beta=0.3"], "none of the methods osem takes 'beta'"),
    (["--method", "osem", "--set", "mlem:iterations=2"], "method 'mlem' is not among --method osem"),
    (["--method", "osem", "--export-source-dicom", "x", "--export-dicom-dir", "d"], "each case has its own source"),
])
def test_bad_options_are_refused_before_any_work(case_root, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main(["cohort", "--cases", str(case_root), "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_method_options_go_to_the_methods_that_take_them():
    assert method_options(["osem", "map-rdp"], ["iterations=3", "map-rdp:beta=0.5", "osem:subsets=4"]) == \
        {"osem": {"iterations": 3, "subsets": 4}, "map-rdp": {"iterations": 3, "beta": 0.5}}


def test_library_call_refuses_an_unknown_method_before_any_work(case_root, tmp_path):
    with pytest.raises(InputError, match="unknown method 'fbp'"):
        run_cohort(case_root, ["fbp"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_worker_exports_each_result_inside_its_pair_folder(case_root, tmp_path):
    """The worker without Ray (as a plain loop would call it): the DICOM export of ``diffrecon export`` with
    shifted dates lands inside the pair's folder, published with it; a second call does nothing."""
    import pydicom

    from diffrecon.cohort import CohortSettings, ExportSettings, PairRunner
    from diffrecon.io.dicom_deid import Deidentifier

    spec = find_cases(case_root)[0]
    export = ExportSettings(units="PROPCNTS", deidentifier=Deidentifier("key", dates="shift"))
    runner = PairRunner(CohortSettings({"osem": {"progress": False, "iterations": 1}}, export=export))
    row = runner.run(spec, "osem", str(tmp_path))
    assert (row["status"], row["export"], row["attempts"]) == ("done", "ok", 1)
    report = json.loads((tmp_path / spec.name / "osem" / "dicom" / "export_report.json").read_text())
    assert report["ok"] and report["series"][0]["instances"] == 1
    ds = pydicom.dcmread(next((tmp_path / spec.name / "osem" / "dicom" / "mean").iterdir()))
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED" and ds.PatientIdentityRemoved == "YES"
    again = runner.run(spec, "osem", str(tmp_path))
    assert again["status"] == "skipped" and again["worker"] == row["worker"] and not leftovers(tmp_path)
