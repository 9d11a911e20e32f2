"""The MR-guided PET prior bundle (pet_fdg_mr_prior) and its method bundle (pet_mr_guided), with tiny networks in
temporary copies (the shipped weights are trained by scripts/train_priors.py pet-mr-<orientation>): the training
configs train a 2-channel network from an unconditional one's weights, the inference config builds conditional
tri-planar priors, and the method bundle reconstructs the built-in case with its T1 and guidance."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from diffrecon.bundle import inference_configs
from diffrecon.io.nifti import save_nifti
from diffrecon.priors import TriPlanarScore, load_bundle_prior, save_weights
from diffrecon.priors.runs import PRIORS
from diffrecon.priors.weights import state_dict_of
from tests.bundles.conftest import BUNDLES, COMMON, TINY_NETWORK, tiny_overrides
from tests.bundles.test_bundle_files import REQUIRED, tiny_copy
from tests.bundles.test_pet_diffusion_bundles import DEMO2D

PRIOR = "pet_fdg_mr_prior"
TRAIN = [str(BUNDLES / PRIOR / "configs/train.json"), str(COMMON / "prior_train.json"),
         str(BUNDLES / PRIOR / "configs/train_conditional.json")]


@pytest.fixture
def paired_folders(nifti_folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The tiny heads and, under the same file names, 'T1s' of the same shapes (dark core, bright shell)."""
    t1 = tmp_path / "site_t1"
    for path in sorted(nifti_folder.iterdir()):
        grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 16)] * 3, indexing="ij"))
        radius = np.sqrt((grid ** 2).sum(0))
        save_nifti(t1 / path.name, np.where(radius < 0.5, 0.3, np.where(radius < 0.8, 1.0, 0.0)).astype(np.float32),
                   np.eye(4))
    return nifti_folder, t1


def test_metadata_declares_pet_with_an_mr_condition_and_the_runs_name_the_bundle():
    for bundle in (PRIOR, "pet_mr_guided"):
        meta = json.loads((BUNDLES / bundle / "configs/metadata.json").read_text())
        assert [key for key in REQUIRED if key not in meta] == [] and meta["version"] in meta["changelog"]
        assert (BUNDLES / bundle / "LICENSE").is_file() and (BUNDLES / bundle / "docs/README.md").is_file()
    inputs = json.loads((BUNDLES / PRIOR / "configs/metadata.json").read_text())["network_data_format"]["inputs"]
    assert inputs["image"]["modality"] == "PT" and inputs["image"]["num_channels"] == 2
    assert inputs["condition"]["modality"] == "MR"
    assert {PRIORS[f"pet-mr-{o}"].bundle for o in ("axial", "coronal", "sagittal")} == {PRIOR}
    shared = set(json.loads((COMMON / "prior_train.json").read_text()))
    assert shared.isdisjoint(json.loads((BUNDLES / PRIOR / "configs/train.json").read_text()))


def test_training_starts_from_the_unconditional_weights_and_trains_two_channels(paired_folders, tmp_path):
    images, t1 = paired_folders
    torch.manual_seed(0)
    parser = ConfigParser({"network_def": {"_target_": "DiffusionModelUNet", "spatial_dims": 2, "in_channels": 1,
                                           "out_channels": 1, **{k: v for k, v in TINY_NETWORK.items()},
                                           "num_res_blocks": 1}})
    unconditional = parser.get_parsed_content("network_def")
    with torch.no_grad():
        for parameter in unconditional.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    start = save_weights(tmp_path / "model_axial.pt", unconditional)
    overrides = {**tiny_overrides(images, tmp_path / "run"), "condition_dir": str(t1), "pretrained_ckpt": str(start),
                 "slices_per_volume": 2, "learning_rate": 0.0}
    workflow = ConfigWorkflow(workflow_type="train", config_file=TRAIN,
                              meta_file=str(BUNDLES / PRIOR / "configs/metadata.json"),
                              logging_file=str(BUNDLES / PRIOR / "configs/logging.conf"), bundle_root=str(BUNDLES / PRIOR),
                              orientation="coronal", **overrides)
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert math.isfinite(float(trainer.state.output[0]["loss"]))
    assert math.isfinite(workflow.parser.get_parsed_content("validate#evaluator").state.metrics["val_mse"])
    trained = state_dict_of(torch.load(tmp_path / "run" / "model.pt", weights_only=True))
    given = torch.load(start, weights_only=True)
    kernel = trained["conv_in.conv.weight"]
    assert kernel.shape[1] == 2 and not kernel[:, 1].any()  # learning rate 0: the T1 kernels as initialised, zero
    torch.testing.assert_close(kernel[:, :1], given["conv_in.conv.weight"])
    torch.testing.assert_close(trained["out.2.conv.weight"], given["out.2.conv.weight"])


@pytest.fixture
def tiny_mr_prior(tmp_path) -> Path:
    return tiny_copy(PRIOR, tmp_path / "bundles")


def test_inference_config_builds_conditional_priors_and_unconditional_samples(tiny_mr_prior, tmp_path):
    score = load_bundle_prior(tiny_mr_prior, "triplanar", chunk_size=8)
    assert isinstance(score, TriPlanarScore) and score.condition_channels == 1
    assert score.condition_intensity == "magnitude_peak" and score.intensity == "emission_mean"
    from monai.bundle import run

    run(config_file=str(tiny_mr_prior / "configs/inference.json"), bundle_root=str(tiny_mr_prior),
        orientation="axial", num_samples=2, steps=2, output_dir=str(tmp_path / "samples"),
        meta_file=str(BUNDLES / PRIOR / "configs/metadata.json"))
    samples = np.load(tmp_path / "samples/axial_samples.npy")
    assert samples.shape == (2, 64, 72) and np.isfinite(samples).all()


def _method_bundle(tmp_path: Path, prior: Path, *settings: str) -> subprocess.CompletedProcess:
    files = str([str(path) for path in inference_configs(BUNDLES / "pet_mr_guided")])
    return subprocess.run([sys.executable, "-m", "monai.bundle", "run", "--config_file", files,
                           "--meta_file", str(BUNDLES / "pet_mr_guided/configs/metadata.json"),
                           "--bundle_root", str(BUNDLES / "pet_mr_guided"), "--prior_bundle", str(prior),
                           "--output_dir", str(tmp_path), "--demo", DEMO2D, "--steps", "2", "--num_samples", "1",
                           "--chunk_size", "4", *settings], capture_output=True, text=True, timeout=600)


def test_method_bundle_reconstructs_the_builtin_case_with_its_t1(tiny_mr_prior, tmp_path):
    done = _method_bundle(tmp_path / "out", tiny_mr_prior)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "pet-dds.json").read_text())
    default = json.loads((BUNDLES / "pet_mr_guided/configs/inference.json").read_text())["guidance"]
    assert default > 0 and report["settings"]["guidance"] == default and report["settings"]["mr"] is True
    assert report["network_evaluations"] == 2 and report["network_evaluations_per_step"] == 2
    refused = _method_bundle(tmp_path / "bad", tiny_mr_prior, "--guidance", "-1")
    assert refused.returncode != 0 and "guidance must be a finite number >= 0" in refused.stderr
    plain = tiny_copy("pet_fdg_prior", tmp_path / "plain")
    refused = _method_bundle(tmp_path / "bad2", plain)
    assert refused.returncode != 0 and "mr was given, but the prior is unconditional" in refused.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").glob("*.nii.gz"))
