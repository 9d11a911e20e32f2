"""A bundle run without ``--output_dir`` writes to ``outputs`` in the folder it runs in (not inside the bundle,
which may be the source tree or an installed package), and prints the metrics table of its report once, at the
end, as ``diffrecon demo`` does (:func:`diffrecon.io.results.metrics_table`)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from diffrecon.bundle import inference_configs
from diffrecon.io.results import metrics_table
from tests.bundles.conftest import BUNDLES
from tests.bundles.test_pet_diffusion_bundles import DEMO2D, TINY

RUNS = {  # bundle -> (config files, tiny settings, result name)
    "pet_lisch": ([str(p) for p in inference_configs(BUNDLES / "pet_lisch")], ["--demo", DEMO2D, *TINY],
                  "pet-lisch"),
    "naive_mri": ([str(p) for p in inference_configs(BUNDLES / "naive_mri")],
                  ["--steps", "2", "--num_samples", "2", "--warm_start", "0.3"], "naive"),
    "pet_classical": ([str(BUNDLES / "pet_classical/configs/inference.json")], [], "osem"),
}


@pytest.mark.parametrize("bundle", sorted(RUNS))
def test_default_outputs_in_the_working_folder_and_metrics_printed(bundle, tmp_path):
    configs, settings, name = RUNS[bundle]
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(configs),
                           "--meta_file", str(BUNDLES / bundle / "configs/metadata.json"),
                           "--bundle_root", str(BUNDLES / bundle), *settings],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "outputs" / f"{name}.json").read_text())
    assert not (BUNDLES / bundle / "outputs").exists()
    table = metrics_table(report["metrics"])
    assert table.startswith("| method | PSNR (dB) | SSIM | NRMSE |") and f"| {name} | " in table
    assert done.stdout.count(table) == 1 and done.stdout.rstrip().endswith(table), done.stdout[-2000:]


@pytest.mark.parametrize("bundle,settings,name", [
    ("pet_fdg_prior", ["--orientation", "axial"], "axial"),
    ("pet_fdg_mr_prior", ["--orientation", "axial"], "axial"),
    ("mr_t1_prior", ["--form", "vp"], "vp"),
])
def test_prior_samples_go_to_the_working_folder(bundle, settings, name, tmp_path):
    """A prior bundle's sampling run without ``--output_dir`` writes ``samples/`` where it runs, not in the bundle."""
    config = BUNDLES / bundle / "configs" / "inference.json"
    done = subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config),
                           "--bundle_root", str(BUNDLES / bundle), "--num_samples", "1", "--steps", "2", *settings],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "samples" / f"{name}_samples.npy").is_file()
    assert (tmp_path / "samples" / f"{name}_samples.png").is_file()
    assert not (BUNDLES / bundle / "samples").exists()
