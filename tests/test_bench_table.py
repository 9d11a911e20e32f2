"""scripts/bench_table.py: records of several files merged, one prior named by its folder whatever the checkout,
and configurations compared with a reference on the cases both have."""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_table.py"
FIGURES = {"psnr_db": 30.0, "ssim": 0.9, "crc_hot_lesions": 0.5, "crc_cold_lesions": 0.1, "white_matter_cov": 0.2,
           "seconds": 1.0, "seconds_network": 0.5, "seconds_physics": 0.5, "seconds_gradient": 0.0,
           "network_evaluations": 8}


def _write(path: Path, records: list[tuple]) -> None:
    lines = []
    for method, settings, subject, noise, nrmse, *prior in records:
        key = json.dumps(["demo", "1%", subject, noise, method, settings, 2, *prior])
        lines.append(json.dumps({"method": method, "settings": settings, "nrmse": nrmse, "key": key, "seed": subject,
                                 "noise_seed": noise, **FIGURES}))
    path.write_text("\n".join(lines) + "\n")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_paired_comparison_over_common_cases_with_priors_named_by_folder(tmp_path):
    _write(tmp_path / "a.jsonl", [("bowsher", {"beta": 0.2}, 1, 0, 0.20), ("bowsher", {"beta": 0.2}, 2, 0, 0.10),
                                  ("bowsher", {"beta": 0.2}, 3, 0, 0.30)])
    _write(tmp_path / "b.jsonl", [("pet-dds", {"guidance": 2.0}, 1, 0, 0.24, "/one/checkout/bundles/mr_prior"),
                                  ("pet-dds", {"guidance": 2.0}, 2, 0, 0.09, "/another/bundles/mr_prior")])
    result = _run(str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--against", '["bowsher", {"beta": 0.2}]')
    assert result.returncode == 0, result.stderr
    guided = [row for row in result.stdout.splitlines() if "pet-dds" in row]
    assert len(guided) == 2  # one summary row and one paired row: both checkouts' records are one configuration
    assert '"mr_prior"' in guided[0] and "| 2 |" in guided[0]
    # case 1: +20%, case 2: -10%: mean +5%, lower on one; case 3 has no guided run and is left out
    assert guided[1].endswith("| 2 | +5.0% | 1 of 2 |")


def test_a_reference_that_matches_nothing_is_refused_by_name(tmp_path):
    _write(tmp_path / "a.jsonl", [("osem", {"iterations": 8}, 1, 0, 0.2)])
    result = _run(str(tmp_path / "a.jsonl"), "--against", '["bowsher", {"beta": 0.2}]')
    assert result.returncode != 0 and "--against" in result.stderr and "matches 0 configurations" in result.stderr
