"""The pet_deft bundle's training configs through MONAI's ConfigWorkflow with tiny settings (single-slice demo2d
pairs with the shipped prior): training exports checksummed h-networks and the count range trained on, resumes
from its newest checkpoint, fine-tunes from exported weights on a folder of site pairs, and the exported networks
reconstruct, with a warning in the report at a dose they were not trained for."""
from __future__ import annotations

import contextlib
import json
import math

import pytest
import torch
from monai.bundle import ConfigWorkflow

from diffrecon.io.demo_cases import simulate_to_folder, simulated_pet_case
from diffrecon.methods.pet_deft import PETDEFT
from diffrecon.priors.bundle import fit_prior
from diffrecon.priors.correction import load_correction
from diffrecon.priors.weights import checksum_path
from tests.bundles.conftest import BUNDLES, run_training

ROOT = BUNDLES / "pet_deft"
TINY = {"preset": "demo2d", "n_train": 2, "n_val": 1, "epochs": 1, "times_per_pair": 2, "log_every": 1,
        "num_threads": 1}


def _run(configs: list[str], **overrides) -> ConfigWorkflow:
    return run_training("pet_deft", [str(ROOT / "configs" / c) for c in configs], **overrides)


def _networks(folder):
    return {path.name: torch.load(path, weights_only=True) for path in sorted(folder.glob("model_*.pt"))}


def test_train_resume_finetune_and_reconstruct(tmp_path):
    run = tmp_path / "run"
    workflow = _run(["train.json"], **TINY, output_dir=str(run))
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert math.isfinite(float(trainer.state.output["loss"]))
    assert math.isfinite(workflow.parser.get_parsed_content("validate#evaluator").state.metrics["val_mse"])
    models = run / "models"
    assert checksum_path(models / "model_axial.pt").is_file() and list(_networks(models)) == ["model_axial.pt"]
    record = json.loads((models / "deft_training.json").read_text())
    low, high = record["total_counts"]
    assert 0 < low <= high and record["pairs_seen"] == 2 and record["count_level"] == "1%"

    resumed = _run(["train.json"], **{**TINY, "epochs": 2}, output_dir=str(run))  # resume: true by default
    assert resumed.parser.get_parsed_content("train#trainer").state.epoch == 2

    pairs = tmp_path / "site_pairs"
    for seed in (3, 4, 5):
        simulate_to_folder(pairs / f"case{seed}", seed, preset="demo2d", split="train", count_level="10%")
    tuned = tmp_path / "tuned"
    _run(["train.json", "finetune.json"], **TINY, pairs=str(pairs), pretrained_bundle=str(models),
         learning_rate=0.0, output_dir=str(tuned))
    before, after = _networks(models), _networks(tuned / "models")  # learning rate 0: the loaded weights
    assert all(torch.allclose(before[name][key], after[name][key], atol=1e-6)
               for name in before for key in before[name])
    tuned_record = json.loads((tuned / "models" / "deft_training.json").read_text())
    assert tuned_record["pairs"] == str(pairs) and tuned_record["finetune"] and tuned_record["pairs_seen"] == 2
    assert tuned_record["total_counts"][0] > 3 * high  # 10% pairs: the new count range is recorded

    for level, warned in (("1%", False), ("10%", True)):
        case = simulated_pet_case(20000, "demo2d", level)
        prior = fit_prior("pet_fdg_prior", case.physics, "vp")
        with pytest.warns(UserWarning, match="trained on") if warned else contextlib.nullcontext():
            result = PETDEFT(prior, load_correction(models, prior), progress=False)(case.data, case.physics)
        assert (result.mean >= 0).all() and result.report["network_evaluations"] == 5
        dose_warnings = [w for w in result.report.get("warnings", []) if "h-networks" in w]
        assert len(dose_warnings) == warned and result.report["deft_training"]["total_counts"] == [low, high]

