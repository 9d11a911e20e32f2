"""The personalised-prior pipeline with real ANTs registrations and a real (one-epoch) MONAI fine-tuning run on
the demo grid: a complete prior bundle comes out, only the asked orientation changes, finished stages are not
redone, an interrupted fine-tuning continues from its checkpoint, and bad settings are refused up front."""
from __future__ import annotations

import json
import os

import pytest
import torch

from diffrecon.checks import InputError
from diffrecon.io.demo_cases import phantom_subject_folders, simulated_pet_case
from diffrecon.personalise import personalise, read_personalised
from diffrecon.personalise import personalised_target, pet_grid_image
from diffrecon.priors.bundle import load_volume_prior, prior_modality
from diffrecon.priors.weights import sha256
from diffrecon.registration.pseudo_pet import find_subjects

BASE = "pet_fdg_prior"
TINY = {"orientations": ["sagittal"], "mixtures": 1, "epochs": 1, "workers": 1, "threads": 1, "progress": False}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    case = simulated_pet_case(20000, "demo", "1%", lesions=1)
    subjects = find_subjects(phantom_subject_folders(tmp_path_factory.mktemp("subjects"), [0, 1]))
    return case, personalised_target(pet_grid_image(case=case), case=case), subjects


@pytest.fixture(scope="module")
def built(inputs, tmp_path_factory):
    case, target, subjects = inputs
    out = tmp_path_factory.mktemp("prior") / "personalised"
    return personalise(target, subjects, out, **TINY)


def test_a_complete_prior_bundle_with_only_the_asked_orientation_fine_tuned(built, inputs):
    from diffrecon.bundle import bundle_path

    base = bundle_path(BASE) / "models"
    assert sha256(built / "models" / "model_sagittal.pt") != sha256(base / "model_sagittal.pt")
    for name in ("axial", "coronal"):  # copied, the first before any fine-tuning
        assert sha256(built / "models" / f"model_{name}.pt") == sha256(base / f"model_{name}.pt")
    record = read_personalised(built)
    assert record["fine_tuned"] == ["sagittal"] and record["set"]["accepted"] == ["subject_00000", "subject_00001"]
    assert len(record["set"]["images"]) == 3  # two pseudo-PET images and one mixture
    assert prior_modality(built) == "PT"  # its metadata declares it, so a method of the other modality refuses it
    prior = load_volume_prior(built, inputs[0].physics.grid.shape)
    assert prior.predict_noise(torch.zeros(1, *inputs[0].physics.grid.shape), 100).shape == (1, 64, 72, 56)


def test_finished_stages_are_skipped_and_an_interrupted_fine_tuning_resumes(built, inputs):
    _, target, subjects = inputs
    registration = built / "pseudo_pet" / "registrations" / "subject_00000" / "registration.json"
    stamps = os.stat(registration).st_mtime_ns, os.stat(built / "runs" / "sagittal" / "train.log").st_mtime_ns
    personalise(target, subjects, built, **TINY)  # complete: nothing is redone
    assert (os.stat(registration).st_mtime_ns, os.stat(built / "runs" / "sagittal" / "train.log").st_mtime_ns) == stamps
    # interrupted after the last checkpoint, before the model was written and exported
    for path in (built / "personalised.json", built / "models" / "model_sagittal.pt", built / "runs" / "sagittal" / "model.pt",
                 built / "runs" / "sagittal" / "done.json"):
        path.unlink()
    personalise(target, subjects, built, **TINY)
    assert os.stat(registration).st_mtime_ns == stamps[0]
    commands = [line for line in (built / "runs" / "sagittal" / "train.log").read_text().splitlines()
                if line.startswith("$ ")]
    assert len(commands) == 2 and "--resume_ckpt=" in commands[1]
    assert (built / "models" / "model_sagittal.pt").is_file() and read_personalised(built) is not None


def test_bad_settings_are_refused_before_any_registration(inputs, tmp_path):
    _, target, subjects = inputs
    with pytest.raises(InputError, match="unknown orientation 'oblique'"):
        personalise(target, subjects, tmp_path / "a", **{**TINY, "orientations": ["oblique"]})
    with pytest.raises(InputError, match="epochs"):
        personalise(target, subjects, tmp_path / "b", **{**TINY, "epochs": 0})
    with pytest.raises(InputError, match="size is 5 but only 2 subject"):
        personalise(target, subjects, tmp_path / "c", size=5, **TINY)
    with pytest.raises(InputError, match="bundle 'no_such_prior'"):
        personalise(target, subjects, tmp_path / "d", base="no_such_prior", **TINY)
    assert not any((tmp_path / name / "pseudo_pet" / "registrations").exists() for name in "abcd")


def test_the_target_needs_an_mr(tmp_path):
    case = simulated_pet_case(20000, "demo2d", "10%", lesions=0)
    case.images.pop("mr")
    with pytest.raises(InputError, match="target MR"):
        personalised_target(pet_grid_image(case=case), case=case)
    assert json.dumps(pet_grid_image("demo").array.shape) == "[64, 72, 56]"


def test_orientations_the_grid_does_not_have_are_refused(inputs, tmp_path):
    _, target, subjects = inputs
    flat = pet_grid_image("demo2d")
    with pytest.raises(InputError, match="orientation 'coronal': the PET grid \\(64, 72, 1\\) has no coronal"):
        personalise(type(target)(target.mr, flat), subjects, tmp_path / "p", **{**TINY, "orientations": ["coronal"]})


def test_recon_takes_the_personalised_prior_folder(built, tmp_path):
    from diffrecon.cli import main

    assert main(["simulate", "--seed", "20000", "--count-level", "1%", "--out", str(tmp_path / "sim")]) == 0
    assert main(["recon", "--method", "pet-dds", "--prior", str(built), "--sinogram", str(tmp_path / "sim"),
                 "--steps", "1", "--out", str(tmp_path / "recon")]) == 0
    report = json.loads((tmp_path / "recon" / "pet-dds.json").read_text())
    assert report["prior"] == str(built) and report["network_evaluations"] == 1
