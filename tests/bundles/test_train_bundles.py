"""Each bundle's train.json through monai.bundle with tiny overrides: checkpoints, resume, finite losses,
fine-tuning from shipped weights (command line), multi-process training (torchrun, gloo)."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from monai.bundle import ConfigParser

from diffrecon.checks import InputError
from diffrecon.priors.weights import checksum_path, save_weights, state_dict_of
from tests.bundles.conftest import BUNDLES, run_training, tiny_overrides, train_configs

# (bundle, train.json settings, shipped weights name)
PRIORS = [("pet_fdg_prior", {"orientation": "axial"}, "axial"), ("pet_fdg_prior", {"orientation": "sagittal"}, "sagittal"),
          ("mr_t1_prior", {}, "vp")]


def _command_line(settings: dict) -> list[str]:
    """``--name value`` arguments of ``python -m monai.bundle run`` for config settings."""
    return [arg for name, value in settings.items()
            for arg in (f"--{name}", repr(value) if isinstance(value, (list, bool)) else str(value))]


@pytest.mark.parametrize("bundle, settings, _", PRIORS)
def test_train_checkpoint_resume(bundle, settings, _, nifti_folder, tmp_path):
    overrides = tiny_overrides(nifti_folder, tmp_path / "run")
    workflow = run_training(bundle, train_configs(bundle), **settings, **overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert math.isfinite(float(trainer.state.output[0]["loss"]))
    assert math.isfinite(workflow.parser.get_parsed_content("validate#evaluator").state.metrics["val_mse"])
    checkpoint = tmp_path / "run" / "checkpoints" / "checkpoint_epoch=1.pt"
    assert checkpoint.is_file() and checksum_path(tmp_path / "run" / "model.pt").is_file()
    iterations = trainer.state.iteration

    resumed = run_training(bundle, train_configs(bundle), **settings, **{**overrides, "epochs": 2},
                   resume_ckpt=str(checkpoint))
    state = resumed.parser.get_parsed_content("train#trainer").state
    assert (state.epoch, state.iteration) == (2, 2 * iterations)
    assert (tmp_path / "run" / "checkpoints" / "checkpoint_epoch=2.pt").is_file()


@pytest.mark.parametrize("bundle, settings, _", [PRIORS[0], PRIORS[2]])
def test_finetune_command_starts_from_given_weights(bundle, settings, _, nifti_folder, tmp_path):
    """With learning rate 0 the fine-tuned weights must equal the pretrained ones: proof they were loaded."""
    overrides = tiny_overrides(nifti_folder, tmp_path / "base")
    base = run_training(bundle, train_configs(bundle), **settings, **overrides)
    pretrained = save_weights(tmp_path / "site_start.pt", base.parser.get_parsed_content("network_def"))
    root = BUNDLES / bundle
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
               str(train_configs(bundle, "prior_finetune.json")),
               "--bundle_root", str(root), "--pretrained_ckpt", str(pretrained), "--learning_rate", "0.0"]
    command += _command_line({**settings, **overrides, "output_dir": str(tmp_path / "finetuned")})
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    tuned = state_dict_of(torch.load(tmp_path / "finetuned" / "model.pt", weights_only=True))
    start = torch.load(pretrained, weights_only=True)
    assert tuned.keys() == start.keys()
    for name in start:
        torch.testing.assert_close(tuned[name], start[name])


def test_finetune_with_corrupted_weights_fails_clearly(nifti_folder, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not weights")
    checksum_path(bad).write_text("0" * 64 + "  model.pt\n")
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the error of a config component
        run_training("pet_fdg_prior", train_configs("pet_fdg_prior", "prior_finetune.json"), pretrained_ckpt=str(bad),
             **tiny_overrides(nifti_folder, tmp_path / "run"))
    causes, error = [], raised.value
    while error is not None:
        causes.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, InputError) and "does not match" in str(e) for e in causes)


@pytest.mark.integration
@pytest.mark.parametrize("bundle", ["pet_fdg_prior", "mr_t1_prior"])
def test_multi_gpu_overlay_with_two_cpu_processes(bundle, nifti_folder, tmp_path):
    root = BUNDLES / bundle
    out = tmp_path / "ddp"
    logs = tmp_path / "rank_logs"  # one stdout and stderr per rank: the two ranks' prints can interleave on one stream
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
               "--log-dir", str(logs), "--redirects", "3", "-m", "monai.bundle", "run", "--config_file",
               str(train_configs(bundle, "multi_gpu_train.json")),
               "--bundle_root", str(root)]
    command += _command_line({**tiny_overrides(nifti_folder, out), "val_dataset_dir": str(nifti_folder)})
    # PYTHONFAULTHANDLER: a rank that aborts prints every thread's Python stack into its log
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"})
    # the ranks' own stdout and stderr first, torchrun's summary (which rank failed, how) last
    log = "".join(path.read_text() for path in sorted(logs.rglob("std*.log"))) + result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    # 3 images, 2 ranks, batch 2: each rank trains one iteration on its half of the data
    assert "rank 0 trained 1 iterations" in log and "rank 1 trained 1 iterations" in log, log[-3000:]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["checkpoint_epoch=1.pt"]
    assert (out / "model.pt").is_file()


@pytest.mark.parametrize("bundle, settings, weights", PRIORS)
def test_finetune_from_shipped_weights(bundle, settings, weights, nifti_folder, tmp_path):
    """The documented one-command fine-tune on a site folder, starting from the shipped weights."""
    shipped = BUNDLES / bundle / "models" / f"model_{weights}.pt"
    if not shipped.is_file():
        pytest.skip(f"{shipped.name} not trained yet (scripts/train_priors.py)")
    root = BUNDLES / bundle
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
               str(train_configs(bundle, "prior_finetune.json")),
               "--bundle_root", str(root), *_command_line(settings), "--dataset_dir", str(nifti_folder),
               "--output_dir", str(tmp_path / "site"), "--epochs", "1", "--val_interval", "1", "--batch_size", "2",
               "--repeats", "1", "--learning_rate", "0.0", "--num_threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    tuned = torch.load(tmp_path / "site" / "model.pt", weights_only=True)
    for name, tensor in torch.load(shipped, weights_only=True).items():
        torch.testing.assert_close(tuned[name], tensor)


# (bundle, train.json settings, candidate configs of scripts/train_priors.py, number of augmentations, of slice
# transforms)
CANDIDATES = [("mr_t1_prior", {}, ["train_wide.json"], 5, 1),
              ("mr_t1_prior", {}, ["train_wide.json", "train_shapes.json"], 5, 2),
              ("mr_t1_prior", {}, ["train_wide.json", "train_shapes.json", "train_generic.json"], 5, 2),
              ("pet_fdg_prior", {"orientation": "axial"}, ["train_shapes.json"], 8, 1),
              ("pet_fdg_prior", {"orientation": "coronal"}, ["train_shapes.json"], 8, 2),
              ("pet_fdg_prior", {"orientation": "sagittal"}, ["train_shapes.json", "train_generic.json"], 8, 2)]


@pytest.mark.parametrize("bundle, settings, candidate, augmentations, slice_transforms", CANDIDATES)
def test_candidate_trains_with_its_augmentation(bundle, settings, candidate, augmentations, slice_transforms,
                                                nifti_folder, tmp_path):
    """The candidate configs (scripts/train_priors.py mr-vp-wide, mr-vp-shapes, mr-vp-generic,
    pet-<orientation>-shapes, pet-<orientation>-generic): the
    augmented pipeline runs and the run fine-tunes from the weights it names (here a tiny network's, saved as the
    pretrained file)."""
    overrides = {**tiny_overrides(nifti_folder, tmp_path / "base"), **settings}
    base = run_training(bundle, train_configs(bundle), **overrides)
    generator = torch.Generator().manual_seed(123)  # weights no initialisation of the network would give
    named = {key: 0.05 * torch.randn(value.shape, generator=generator) if value.is_floating_point() else value
             for key, value in base.parser.get_parsed_content("network_def").state_dict().items()}
    pretrained = save_weights(tmp_path / "start.pt", named)
    configs = train_configs(bundle) + [str(BUNDLES / bundle / "configs" / name) for name in candidate]
    workflow = run_training(bundle, configs, **{**overrides, "output_dir": str(tmp_path / "candidate")},
                    pretrained_ckpt=str(pretrained))
    assert len(workflow.parser["augmentation"]) == augmentations and workflow.parser["finetune"] is True
    assert len(workflow.parser.get_parsed_content("slice_transforms")) == slice_transforms
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert math.isfinite(float(trainer.state.output[0]["loss"]))
    assert checksum_path(tmp_path / "candidate" / "model.pt").is_file()
    # it started from the named weights: one fine-tuning epoch moves them little, a fresh network is far off
    trained = trainer.network.state_dict()
    change = sum(float((trained[k].float() - v.float()).abs().sum()) for k, v in named.items())
    size = sum(float(v.float().abs().sum()) for v in named.values())
    assert change < 0.1 * size, change / size


@pytest.mark.parametrize("orientation", ["coronal", "sagittal"])
def test_own_orientation_candidate_starts_from_its_orientationsrun_training(orientation):
    """configs/train_shapes_own.json (scripts/train_priors.py pet-<orientation>-shapes-own) fine-tunes from the
    finished run of its own orientation, not the axial one that train_shapes.json names."""
    root = BUNDLES / "pet_fdg_prior"
    parser = ConfigParser()
    parser.read_config(train_configs("pet_fdg_prior") + [str(root / "configs" / name) for name in
                                                          ("train_shapes.json", "train_shapes_own.json")])
    parser.update({"bundle_root": str(root), "runs_dir": str(root / "runs"), "orientation": orientation})  # as the script
    assert parser.get_parsed_content("pretrained_ckpt") == str(root / "runs" / orientation / "model.pt")
    assert parser.get_parsed_content("model_name") == f"{orientation}_shapes_own"


@pytest.mark.parametrize("bundle,overlays,run", [("pet_fdg_prior", (), "axial"), ("mr_t1_prior", (), "vp"),
                                                 ("mr_t1_prior", ("prior_finetune.json",), "finetune_vp")])
def test_a_training_run_writes_under_the_current_folder_not_the_bundle(tmp_path, monkeypatch, bundle, overlays, run):
    """Run by hand, a training bundle writes its run and phantom cache in ./runs/<bundle>/ (the bundle folder may be
    an installed package); scripts/train_priors.py keeps its runs in the bundle by setting runs_dir, and resumes
    from the checkpoints of the folder the run writes."""
    monkeypatch.chdir(tmp_path)
    root = BUNDLES / bundle

    def parsed(**settings) -> dict:
        parser = ConfigParser()
        parser.read_config(train_configs(bundle, *overlays))
        parser.update({"bundle_root": str(root), **settings})
        return {key: parser.get_parsed_content(key) for key in ("output_dir", "cache_dir")}

    assert parsed() == {"output_dir": str(tmp_path / "runs" / bundle / run),
                        "cache_dir": str(tmp_path / "runs" / bundle / "phantom_cache")}
    assert parsed(runs_dir=str(root / "runs"))["output_dir"] == str(root / "runs" / run)
