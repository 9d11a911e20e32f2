"""Helpers to run the bundles' configs with tiny overrides on a folder of tiny NIfTI volumes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow

from diffrecon.io.nifti import save_nifti

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
COMMON = BUNDLES / "common"
TINY_NETWORK = {"channels": [8, 8, 8], "attention_levels": [False, False, False], "norm_num_groups": 4,
                "num_head_channels": 8}


@pytest.fixture
def nifti_folder(tmp_path) -> Path:
    """Three smooth 16^3 'heads' (bright shell, dimmer core) as NIfTI files."""
    folder = tmp_path / "site_images"
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 16)] * 3, indexing="ij"))
    radius = np.sqrt((grid ** 2).sum(0))
    for i in range(3):
        head = np.where(radius < 0.5, 1.0, np.where(radius < 0.8, 3.0 + i, 0.0)).astype(np.float32)
        save_nifti(folder / f"subject{i}.nii.gz", head, np.eye(4))
    return folder


def tiny_overrides(data: Path, out: Path) -> dict:
    """Overrides for a seconds-long run: the tiny network, one epoch, two images per batch."""
    return {"dataset_dir": str(data), "output_dir": str(out), "cache_dir": str(out / "cache"), "epochs": 1,
            "batch_size": 2, "repeats": 1, "val_interval": 1, "log_every": 1, "num_threads": 1, **TINY_NETWORK}


def train_configs(bundle: str, *common: str) -> list[str]:
    """Config files of a prior bundle's training run: its train.json (bundle-specific settings), the shared
    common/prior_train.json, then the named common overlays (e.g. "prior_finetune.json")."""
    return [str(BUNDLES / bundle / "configs" / "train.json"), str(COMMON / "prior_train.json"),
            *(str(COMMON / name) for name in common)]


def refusal(config_files: list[str], bundle_root: Path, *argv: str) -> str:
    """The bad-input error a ``python -m monai.bundle run`` command line gets, found in this process: the settings
    checked against the config files as the bundles' guard does, then the run itself (MONAI's ``run`` with the
    settings Fire would parse), up to the :class:`InputError` MONAI wraps. The one-line printing of that error is
    tested once through a real subprocess (tests/bundles/test_command_line.py)."""
    from fire.parser import DefaultParseValue
    from monai.bundle.scripts import run

    from diffrecon.bundle import check_command_line, command_line_settings, input_error_in

    try:
        check_command_line(["run", "--config_file", str(config_files), *argv])
        settings = {key: DefaultParseValue(value) if isinstance(value, str) else value
                    for key, value in command_line_settings(argv).items()}
        run(config_file=config_files, bundle_root=str(bundle_root), **settings)
    except Exception as error:  # noqa: BLE001 - what matters is the InputError MONAI may have wrapped
        cause = input_error_in(error)
        if cause is None:
            raise
        return str(cause)
    raise AssertionError(f"the run with {argv} was not refused")


def assert_refused(config_files: list[str], bundle_root: Path, out: Path, message: str, *argv: str) -> None:
    """The run is refused with ``message`` before its output folder ``out`` is created."""
    error = refusal(config_files, bundle_root, "--output_dir", str(out), *argv)
    assert message in error, error
    assert not out.exists()


def run_training(bundle: str, configs: list[str], **overrides) -> ConfigWorkflow:
    """A bundle's training configs (full paths, in order) through MONAI's ConfigWorkflow: initialise, run,
    finalise; the workflow, to read its trainer and evaluator."""
    root = BUNDLES / bundle
    workflow = ConfigWorkflow(workflow_type="train", config_file=configs,
                              meta_file=str(root / "configs/metadata.json"),
                              logging_file=str(root / "configs/logging.conf"), bundle_root=str(root), **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return workflow
