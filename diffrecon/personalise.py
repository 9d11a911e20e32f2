"""Personalised PET priors (Webber et al., TRPMS 2025): the pseudo-PET set of a target subject
(:mod:`diffrecon.registration.pseudo_pet`), a generic PET prior fine-tuned on it, written as a prior bundle that
any diffusion PET method takes (``diffrecon recon --prior <folder>``, ``load_volume_prior(<folder>, ...)``).

Stages, each skipped when its outputs are complete, so an interrupted run resumes:

1. ``<out>/pseudo_pet/``: the registered set (registrations cached per subject; ``set.json`` marks it done);
2. ``<out>/runs/<orientation>/``: fine-tuning of each slice prior through the base bundle's training config,
   ``bundles/common/prior_finetune.json`` and ``bundles/pet_personalised/configs/finetune.json`` (checkpoints
   every epoch; an interrupted run continues from the newest), exported to ``<out>/models/``;
3. ``<out>/configs/`` (the base bundle's inference config) and ``<out>/personalised.json``, written last.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffrecon.bundle import PACKAGED_BUNDLES, bundle_path, run_bundle
from diffrecon.checks import InputError, check_choice, check_integer, check_output_dir, check_positive
from diffrecon.io.records import read_record, write_record
from diffrecon.priors.weights import checksum_path, latest_checkpoint, save_weights, sha256, state_dict_of
from diffrecon.registration.pseudo_pet import SubjectFiles, Target, build_pseudo_pet_set
from diffrecon.transforms.slicing import ORIENTATIONS

RECORD = "personalised.json"
BASE_CONFIGS = ("inference.json", "metadata.json", "logging.conf")


def slice_orientations(shape: Sequence[int]) -> list[str]:
    """Orientations whose slices of a volume of ``shape`` have two voxels each way (all three for volumes,
    the axial one for single-slice grids): the slice priors a reconstruction on that grid uses."""
    return [name for name, axis in ORIENTATIONS.items() if min(n for i, n in enumerate(shape) if i != axis) >= 2]


def personalise(target: Target, subjects: list[SubjectFiles], out: str | Path, *, base: str | Path = "pet_fdg_prior",
                orientations: Sequence[str] | None = None, size: int | None = None, transform: str = "SyNRA",
                mixtures: int = 16, mixture_sizes: tuple[int, int] = (2, 4), workers: int = 2, epochs: int = 20,
                learning_rate: float = 1e-4, from_scratch: bool = False, seed: int = 0, threads: int = 0,
                progress: bool = True) -> Path:
    """Build the personalised prior bundle of ``target`` in ``out`` from ``subjects``; returns ``out``.

    Args:
        target: the target's MR, PET grid (and labels for the Dice figures).
        subjects: other subjects' paired MR and PET (:func:`~diffrecon.registration.pseudo_pet.find_subjects`).
        out: the prior bundle folder to write (created; stages found complete there are skipped).
        base: the generic prior bundle to fine-tune (name or folder).
        orientations: slice priors to fine-tune (default: those the PET grid needs, :func:`slice_orientations`);
            the others are copied from ``base``.
        size, transform, mixtures, mixture_sizes, workers: the pseudo-PET set
            (:func:`~diffrecon.registration.pseudo_pet.build_pseudo_pet_set`).
        epochs, learning_rate: fine-tuning; ``from_scratch`` trains new networks instead.
        seed: seed of the set's registrations and mixtures and of the training.
        threads: torch threads of the training (0: torch's default).
        progress: progress bar while registering.

    Raises:
        InputError: bad settings or inputs (named), before any registration or training.
    """
    out = check_output_dir("out", out)
    base_root = bundle_path(base)
    usable = slice_orientations(target.pet_grid.array.shape)
    orientations = list(orientations or usable)
    for name in orientations:
        check_choice("orientation", name, ORIENTATIONS)
        if name not in usable:
            raise InputError(f"orientation {name!r}: the PET grid {target.pet_grid.array.shape} has no {name} slices "
                             f"of two voxels each way; it takes {', '.join(usable)}")
    epochs = check_integer("epochs", epochs)
    check_positive("learning_rate", learning_rate)
    base_models = _base_models(base_root)
    missing = [name for name in ORIENTATIONS if name not in base_models]
    if missing:
        raise InputError(f"base prior bundle {str(base_root)!r} has no model for {', '.join(missing)}; expected "
                         "slice priors of all three orientations (as pet_fdg_prior)")
    (out / RECORD).unlink(missing_ok=True)
    record = build_pseudo_pet_set(target, subjects, out / "pseudo_pet", size=size, transform=transform,
                                  mixtures=mixtures, mixture_sizes=mixture_sizes, workers=workers, seed=seed,
                                  progress=progress)
    training = {"epochs": epochs, "learning_rate": float(learning_rate), "from_scratch": bool(from_scratch),
                "seed": int(seed), "base": str(base_root)}
    (out / "models").mkdir(exist_ok=True)
    for name in ORIENTATIONS:
        model = out / "models" / base_models[name]
        if name in orientations:
            base_weights = sha256(base_root / "models" / base_models[name])  # a new base prior retrains
            key = hashlib.sha256(json.dumps([record["key"], training, name, base_weights],
                                            sort_keys=True).encode()).hexdigest()
            _finetune(base_root, out / "pseudo_pet" / "images", out / "runs" / name, model, name, key, training,
                      threads)
        else:
            shutil.copyfile(base_root / "models" / base_models[name], model)
            shutil.copyfile(checksum_path(base_root / "models" / base_models[name]), checksum_path(model))
    (out / "configs").mkdir(exist_ok=True)
    for config in BASE_CONFIGS:
        if (base_root / "configs" / config).is_file():
            shutil.copyfile(base_root / "configs" / config, out / "configs" / config)
    summary = {"base": str(base_root), "fine_tuned": orientations, "training": training,
               "set": {k: record[k] for k in ("settings", "subjects", "accepted", "rejected", "images")},
               "quality": record["quality"]}
    write_record(out / RECORD, summary)
    return out


def read_personalised(out: str | Path) -> dict[str, Any] | None:
    """The record of a finished personalised prior in ``out``, or None."""
    return read_record(Path(out) / RECORD)


def _base_models(base_root: Path) -> dict[str, str]:
    config = json.loads((base_root / "configs" / "inference.json").read_text())
    return dict(config.get("models", {}))


def _finetune(base_root: Path, images: Path, run_dir: Path, model: Path, orientation: str, key: str,
              training: dict[str, Any], threads: int) -> None:
    """Fine-tune (or train) one slice prior on ``images`` into ``run_dir`` and export it to ``model``; skipped
    when ``run_dir/done.json`` holds ``key`` and the model exists; continued from the newest checkpoint."""
    done = run_dir / "done.json"
    if model.is_file() and checksum_path(model).is_file() and read_record(done) == key:
        return
    if (run_dir / "key.json").is_file() and read_record(run_dir / "key.json") != key:
        shutil.rmtree(run_dir)  # a run for another set or other settings
    run_dir.mkdir(parents=True, exist_ok=True)
    write_record(run_dir / "key.json", key)
    common = PACKAGED_BUNDLES / "common"
    configs = [base_root / "configs" / "train.json", common / "prior_train.json"]
    if not training["from_scratch"]:
        configs.append(common / "prior_finetune.json")
    configs.append(bundle_path("pet_personalised") / "configs" / "finetune.json")
    settings = {"orientation": orientation, "dataset_dir": images, "output_dir": run_dir, "epochs": training["epochs"],
                "learning_rate": training["learning_rate"], "seed": training["seed"], "num_threads": threads}
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    if checkpoint is not None:
        settings["resume_ckpt"] = checkpoint
    if not (run_dir / "model.pt").is_file():
        run_bundle(configs, base_root, settings, run_dir / "train.log")
    state = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    save_weights(model, state_dict_of(state))
    write_record(done, key)


def pet_grid_image(spec: str | Path | None = None, case: Any = None):
    """The PET reconstruction grid as a :class:`diffrecon.registration.images.Image` (zeros; its shape and affine
    matter): a preset name, an image file or DICOM folder on that grid, or, when ``spec`` is None, the grid of
    ``case``."""
    from diffrecon.physics.geometry import PRESET_NAMES, get_preset
    from diffrecon.registration.images import Image, read_image

    if spec is None:
        if case is None:
            raise InputError("pet_grid: give a preset name, an image on the PET grid, or a case")
        return Image(np.zeros(case.physics.grid.shape, np.float32), case.affine, None, "PET grid")
    if str(spec) in PRESET_NAMES:
        grid = get_preset(str(spec)).grid
        return Image(np.zeros(grid.shape, np.float32), grid.affine, None, f"PET grid {spec}")
    image = read_image(spec, "pet_grid")
    return Image(np.zeros(image.array.shape, np.float32), image.affine, image.frame_of_reference, image.source)


def personalised_target(pet_grid, mr: str | Path | None = None, labels: str | Path | None = None,
                        case: Any = None):
    """The target of a personalised prior (:class:`diffrecon.registration.pseudo_pet.Target`): the PET grid
    (:func:`pet_grid_image`) with the target's MR and optional tissue labels from files (NIfTI or DICOM, any grid
    on the PET's frame of reference) or, without files, the ``case``'s own ``mr`` and ``labels`` images on the PET
    grid (the built-in demo's)."""
    from diffrecon.registration.images import Image, read_image

    def on_grid(name: str) -> Image | None:
        if case is None or name not in case.images:
            return None
        return Image(np.asarray(case.images[name], dtype=np.float32), case.affine, None, f"target {name}")

    target_mr = read_image(mr, "target MR") if mr is not None else on_grid("mr")
    if target_mr is None:
        raise InputError("target MR: give the target subject's MR (NIfTI or DICOM folder); the case has none")
    target_labels = read_image(labels, "target labels") if labels is not None else on_grid("labels")
    return Target(target_mr, pet_grid, target_labels)


# the diffusion PET methods the personalised-prior bundle reconstructs with
PERSONALISED_METHODS = ("pet-dds", "pet-lisch")
