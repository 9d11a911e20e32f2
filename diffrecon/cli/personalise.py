"""``diffrecon personalise``: build a target subject's personalised PET prior (pseudo-PET set from other subjects
registered through their MR, then fine-tuning); reconstruct with it by ``diffrecon recon --prior <out>``."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "personalise", help="personalised PET prior: register other subjects' MR to the target's, carry their "
                            "PET along, fine-tune the PET prior on these pseudo-PET images",
        description="Build a personalised PET prior (Webber et al., TRPMS 2025) as a prior bundle folder: each "
                    "other subject's MR is registered to the target MR with ANTs, the same transforms put its PET "
                    "on the target's PET grid, registrations that fail or do not raise the MR similarity are left "
                    "out (qc.json and overlay PNGs in OUT/pseudo_pet), optional Dirichlet-weighted mixtures are "
                    "added, and the generic PET prior is fine-tuned on the set. Stages already complete in OUT "
                    "are skipped, so an interrupted run resumes. Then: diffrecon recon --method pet-dds --prior OUT")
    parser.add_argument("--target-mr", required=True, help="the target subject's MR: NIfTI or DICOM series folder, "
                                                           "on the frame of reference of its PET")
    parser.add_argument("--pet-grid", required=True, help="the PET reconstruction grid: a preset name (demo, "
                                                          "demo2d, clinical_brain) or an image on it (NIfTI or "
                                                          "DICOM folder, e.g. an OSEM image of the target)")
    parser.add_argument("--subjects", required=True, help="folder with one sub-folder per other subject holding "
                                                          "mr and pet (.nii/.nii.gz or DICOM folders) and "
                                                          "optionally labels")
    parser.add_argument("--target-labels", help="the target's tissue labels (for Dice figures in the QC)")
    parser.add_argument("--out", required=True, help="prior bundle folder to write (created; resumable)")
    parser.add_argument("--base", default="pet_fdg_prior", help="generic prior bundle to fine-tune (name or "
                                                                 "folder; default %(default)s)")
    parser.add_argument("--orientations", nargs="+", choices=("axial", "coronal", "sagittal"),
                        help="slice priors to fine-tune (default: those the PET grid needs)")
    parser.add_argument("--size", type=int, help="use the first SIZE subjects (default all)")
    parser.add_argument("--transform", default="SyNRA", help="ANTs transform (Rigid, Affine, SyN, SyNRA, ...; "
                                                               "default %(default)s)")
    parser.add_argument("--mixtures", type=int, default=16, help="Dirichlet-weighted sums added to the set "
                                                                    "(default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="registration processes (default %(default)s)")
    parser.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs per orientation (default "
                                                                 "%(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="learning rate of the fine-tuning "
                                                                              "(default %(default)s)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="train new networks instead of fine-tuning (default: fine-tune --base)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the registrations, the mixtures and the training (default %(default)s)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the training "
                                                                      "(default 0: torch's own choice)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from diffrecon.personalise import personalise, read_personalised
    from diffrecon.personalise import personalised_target, pet_grid_image
    from diffrecon.registration.pseudo_pet import find_subjects

    target = personalised_target(pet_grid_image(args.pet_grid), args.target_mr, args.target_labels)
    out = personalise(target, find_subjects(args.subjects), args.out, base=args.base, orientations=args.orientations,
                      size=args.size, transform=args.transform, mixtures=args.mixtures, workers=args.workers,
                      epochs=args.epochs, learning_rate=args.learning_rate, from_scratch=args.from_scratch,
                      seed=args.seed, threads=args.threads)
    record = read_personalised(out)
    for quality in record["quality"]:
        state = "used" if quality["accepted"] else f"left out: {quality['reason']}"
        figures = (f"MR correlation {quality['before']['correlation']:.3f} -> {quality['after']['correlation']:.3f}"
                   if "after" in quality else "")
        print(f"{quality['subject']}: {figures} {state}".rstrip())
    print(f"personalised prior: {out} ({len(record['set']['images'])} training images, fine-tuned "
          f"{', '.join(record['fine_tuned'])}); reconstruct with: diffrecon recon --method pet-dds --prior {out} ...")
