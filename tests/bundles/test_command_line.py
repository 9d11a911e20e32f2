"""``python -m monai.bundle run`` as a user runs it: bad input ends in one line and exit status 2, unknown
settings are refused, settings reach the network, the output folder is checked first."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from monai.bundle import ConfigParser

from diffrecon.bundle import (check_command_line, check_settings, command_line_settings, guard_run,
                              inference_configs, input_error_in, one_line_input_errors)
from diffrecon.checks import InputError
from tests.bundles.conftest import BUNDLES, TINY_NETWORK, refusal, train_configs
from tests.bundles.test_bundle_files import tiny_copy


def bundle_run(config_files: list[str], bundle_root, *settings: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config_files),
               "--bundle_root", str(bundle_root), *settings]
    return subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def inference(bundle: str) -> list[str]:
    return [str(path) for path in inference_configs(BUNDLES / bundle)]


def assert_one_line_error(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert message in result.stderr.strip().splitlines()[-1]


def test_command_line_settings_are_read_as_fire_reads_them():
    argv = ["run", "--config_file", "['a.json','b.json']", "--num-samples=2", "--steps", "5", "--finetune",
            "--learning_rate", "-1e-3", "--network_def#channels", "[8,8]", "--", "--help"]
    assert command_line_settings(argv) == {"config_file": "['a.json','b.json']", "num_samples": "2", "steps": "5",
                                           "finetune": True, "learning_rate": "-1e-3",
                                           "network_def#channels": "[8,8]"}


def test_settings_must_exist_or_be_keywords_of_their_component():
    config = ConfigParser({"steps": 5, "network_def": {"_target_": "DiffusionModelUNet", "channels": [8]},
                           "run": ["$print(@steps)"]})
    check_settings(config, ["steps", "network_def#channels", "network_def#dropout_cattn", "config_file", "run_id"])
    with pytest.raises(InputError, match=r"'stpes' \(did you mean 'steps'\?\), 'network_def#chanels' \(did you "
                                         r"mean 'network_def#channels'\?\), 'colour'"):
        check_settings(config, ["stpes", "network_def#chanels", "colour"])


def test_command_line_is_checked_against_its_config_files(tmp_path):
    config = str(BUNDLES / "pet_fdg_prior/configs/inference.json")
    check_command_line(["run", "--config_file", config, "--tracking", "mlflow", "--experiment_name", "x"])
    with pytest.raises(InputError, match="'experiment_name'"):  # a tracking setting, without tracking
        check_command_line(["run", "--config_file", config, "--experiment_name", "x"])
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"config_file": config, "stpes": 3}))
    with pytest.raises(InputError, match="'stpes' \\(did you mean 'steps'\\?\\)"):
        check_command_line(["run", "--args_file", str(args)])


def test_one_line_hook_finds_the_input_error_monai_wrapped(capsys):
    try:
        try:
            raise InputError("unknown orientation 'oblique'")
        except InputError as error:
            raise RuntimeError("Failed to evaluate ConfigExpression") from error
    except RuntimeError as wrapped:
        assert isinstance(input_error_in(wrapped), InputError)
        others = []
        hook = one_line_input_errors(lambda *args: others.append(args))
        with pytest.raises(SystemExit) as exited:
            hook(RuntimeError, wrapped, wrapped.__traceback__)
    assert exited.value.code == 2 and others == []
    assert capsys.readouterr().err == "error: unknown orientation 'oblique'\n"
    hook(ValueError, ValueError("not bad input"), None)
    assert [type(args[1]) for args in others] == [ValueError]


def test_guard_checks_the_output_folder_and_leaves_python_callers_alone(tmp_path):
    hook = sys.excepthook
    guard_run(tmp_path / "new" / "folder")  # can be created
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        guard_run(tmp_path / "file" / "out")
    assert sys.excepthook is hook  # only `python -m monai.bundle` gets the one-line errors


@pytest.mark.parametrize("bundle, config, settings, message", [
    ("pet_fdg_prior", "inference", ["--num_sampels", "1", "--stpes", "5"],
     "unknown settings 'num_sampels' (did you mean 'num_samples'?), 'stpes' (did you mean 'steps'?)"),
    ("mr_t1_prior", "train", ["--epoch", "1"], "unknown setting 'epoch' (did you mean 'epochs'?)"),
    ("pet_fdg_prior", "inference", ["--orientation", "oblique"], "unknown orientation 'oblique'"),
    ("mr_t1_prior", "inference", ["--num_samples", "1", "--steps", "1", "--image_shape", "[6, 60]"],
     "x has spatial shape (6, 60); this prior needs at least 8 voxels"),
    # the shipped weights do not fit a network with other channels: the setting reached the network
    ("pet_fdg_prior", "inference", [f"--{k}={v!r}" for k, v in TINY_NETWORK.items()], "do not fit this network"),
], ids=["misspelt", "misspelt-train", "orientation", "image-size", "network-setting"])
def test_bad_input_through_monai_bundle_run_is_refused(bundle, config, settings, message, tmp_path):
    configs = train_configs(bundle) if config == "train" else inference(bundle)
    assert message in refusal(configs, BUNDLES / bundle, "--output_dir", str(tmp_path / "out"), *settings)


def test_output_folder_is_checked_before_the_work(tmp_path):
    (tmp_path / "file").write_text("")
    result = bundle_run(inference("pet_fdg_prior"), BUNDLES / "pet_fdg_prior", "--output_dir",
                        str(tmp_path / "file" / "samples"))
    assert_one_line_error(result, "is a file, so the folder cannot be created")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc file system here")
def test_an_output_folder_the_file_system_refuses_is_refused_before_the_work():
    assert "output_dir '/proc/diffrecon_out' cannot be created" in refusal(
        inference("pet_fdg_prior"), BUNDLES / "pet_fdg_prior", "--output_dir", "/proc/diffrecon_out")


def test_network_settings_reach_the_sampled_prior(tmp_path):
    """Weights of a tiny network (other channels than the config's), sampled with the channels given on the
    command line: the run succeeds only if the setting builds the network the weights are loaded into."""
    root = tiny_copy("pet_fdg_prior", tmp_path, channels=[8, 8, 16])
    config = root / "configs/inference.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "channels": [16, 32, 64]}))
    result = bundle_run([str(config)], root, "--network_def#channels", "[8, 8, 16]", "--orientation", "sagittal",
                        "--num_samples", "2", "--steps", "2", "--output_dir", str(tmp_path / "samples"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.load(tmp_path / "samples/sagittal_samples.npy").shape == (2, 72, 56)
