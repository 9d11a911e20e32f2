"""The training runs of the shipped priors and their candidates, by the name ``scripts/train_priors.py`` and
``scripts/check_priors.py`` use: the bundle, the run folder, the settings over the bundle's train.json, further
configs applied last, and the model a run exports."""
from __future__ import annotations

from typing import NamedTuple


class PriorRun(NamedTuple):
    """A training run: its bundle, run folder name (runs/<run>), train.json overrides, further configs of the
    bundle applied last, and the model it exports (models/model_<model>.pt; default the run name)."""

    bundle: str
    run: str
    overrides: dict
    configs: tuple[str, ...] = ()
    model: str | None = None


PRIORS = {
    "pet-axial": PriorRun("pet_fdg_prior", "axial", {"orientation": "axial", "epochs": 80}),
    "pet-coronal": PriorRun("pet_fdg_prior", "coronal", {"orientation": "coronal", "epochs": 80}),
    "pet-sagittal": PriorRun("pet_fdg_prior", "sagittal", {"orientation": "sagittal", "epochs": 80}),
    "mr-vp": PriorRun("mr_t1_prior", "vp", {"epochs": 180}),
    # candidate: the shipped MR network fine-tuned on augmented phantoms (configs/train_wide.json); measured with
    # check_prior_generalisation.py --bundle mr_t1_prior before it may replace model_vp.pt
    "mr-vp-wide": PriorRun("mr_t1_prior", "vp_wide", {"epochs": 60}, ("train_wide.json",), model="vp"),
    # candidates: a finished run fine-tuned with 30% of its slices replaced by generic objects
    # (configs/train_shapes.json, diffrecon.transforms.RandShapesd; PET coronal and sagittal slices also cut at a
    # random height, RandAxialEdged): MR from mr-vp-wide; every PET orientation from the finished pet-axial run
    # (a 2D denoiser of the wide population, then fine-tuned on its own slices)
    "mr-vp-shapes": PriorRun("mr_t1_prior", "vp_shapes", {"epochs": 30}, ("train_wide.json", "train_shapes.json"),
                             model="vp"),
    # candidate (measured, not shipped: docs/mri_diffusion.md): mr-vp-shapes fine-tuned further with half of the
    # slices generic objects, 40% of those cut by the image edge, and blur up to 9 mm FWHM (configs/train_generic.json)
    "mr-vp-generic": PriorRun("mr_t1_prior", "vp_generic", {"epochs": 25},
                              ("train_wide.json", "train_shapes.json", "train_generic.json"), model="vp"),
    # shipped (0.4.0): mr-vp-shapes (0.3.0) trained further on its recipe (train_wide.json, train_shapes.json) with
    # four slices per augmented volume and two volumes per batch (configs/train_more.json), as pet-<orientation>-more;
    # 23 epochs: the run went on to 40, which were no better than 0.3.0 for DDS on validation slices (23: +0.16 dB)
    "mr-vp-more": PriorRun("mr_t1_prior", "vp_more", {"epochs": 23},
                           ("train_wide.json", "train_shapes.json", "train_more.json"), model="vp"),
    **{f"pet-{o}-shapes": PriorRun("pet_fdg_prior", f"{o}_shapes", {"orientation": o, "epochs": 30},
                                   ("train_shapes.json",), model=o) for o in ("axial", "coronal", "sagittal")},
    # candidates: the same, but coronal and sagittal fine-tuned from their own orientation's finished run
    # (pet-coronal, pet-sagittal) instead of the axial one (configs/train_shapes_own.json)
    **{f"pet-{o}-shapes-own": PriorRun("pet_fdg_prior", f"{o}_shapes_own", {"orientation": o, "epochs": 30},
                                       ("train_shapes.json", "train_shapes_own.json"), model=o)
       for o in ("coronal", "sagittal")},
    # candidates (measured, not shipped: docs/pet_diffusion.md): the 0.2.0 runs fine-tuned further with half of the
    # slices generic objects, half of the coronal and sagittal ones cut at a random height, and blur up to 15 mm
    # FWHM (configs/train_generic.json)
    **{f"pet-{o}-generic": PriorRun("pet_fdg_prior", f"{o}_generic", {"orientation": o, "epochs": 20},
                                    ("train_shapes.json", "train_generic.json"), model=o)
       for o in ("axial", "coronal", "sagittal")},
    # candidates: the shipped 0.2.0 networks trained further on the same recipe (train_shapes.json), four slices per
    # augmented volume and two volumes per batch (configs/train_more.json): four times the training slices per epoch
    # (0.2.0 saw 110 epochs x 512 slices, 7040 steps), for about twice the epoch's time on a CPU
    **{f"pet-{o}-more": PriorRun("pet_fdg_prior", f"{o}_more", {"orientation": o, "epochs": 40},
                                 ("train_shapes.json", "train_more.json"), model=o)
       for o in ("axial", "coronal", "sagittal")},
    # the MR-guided PET prior (issue 32; bundles/pet_fdg_mr_prior): 2-channel (PET + T1) networks started from the shipped
    # unconditional networks (T1 kernels zero), trained on the wide phantoms' (FDG, T1) pairs with the shipped
    # augmentation and guidance dropout 0.1 (configs/train_conditional.json: four slices per volume, two volumes per
    # batch, learning rate 1e-4, 40 epochs)
    **{f"pet-mr-{o}": PriorRun("pet_fdg_mr_prior", o, {"orientation": o}, ("train_conditional.json",), model=o)
       for o in ("axial", "coronal", "sagittal")},
    # the shifted prior of SCD's experiment (docs/scd.md; not a candidate for shipping): an axial network trained from
    # scratch on the amyloid phantoms (grey matter below white: another tracer's contrast), four slices per volume
    "pet-axial-amyloid": PriorRun("pet_fdg_prior", "axial_amyloid",
                                  {"orientation": "axial", "model_name": "axial_amyloid", "contrast": "amyloid",
                                   "epochs": 30, "slices_per_volume": 4, "batch_size": 2}),
}
