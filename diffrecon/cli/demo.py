"""``diffrecon demo``: phantom -> low-count 3D PET scan -> OSEM, MAP-EM (RDP) and PET-LiSch -> NIfTI, PNG,
metrics."""
from __future__ import annotations

import argparse

from diffrecon.io.figures import PET_COLORMAPS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="simulate a brain PET scan and reconstruct it (built-in data, a few minutes on a CPU)",
        description="Build a brain phantom from the test split, simulate a low-count fully 3D PET acquisition on "
                    "the demo scanner, reconstruct it with OSEM, MAP-EM (relative difference prior) and the "
                    "diffusion method PET-LiSch (shipped tri-planar prior), and write "
                    "NIfTI volumes, a PNG panel and a metrics table to the output folder.")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    parser.add_argument("--seed", type=int, default=None, help="phantom subject seed (default: first test seed)")
    parser.add_argument("--count-level", default="1%",
                        help="full, a percentage (10%%, 0.3%%) or a fraction of full (default 1%%: low count)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda; default %(default)s)")
    parser.add_argument("--preset", default="demo", choices=("demo", "demo2d"),
                        help="scanner + grid: demo (fully 3D, the default) or demo2d (one axial slice of it, "
                             "seconds: a quick check that the pipeline runs)")
    parser.add_argument("--colormap", default="gray_r", choices=PET_COLORMAPS,
                        help="colour map of the panel's images: gray_r (inverted grey, the default) or hot")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from diffrecon.checks import check_output_dir

    check_output_dir("--out", args.out)  # before the heavy imports: a folder that cannot be written costs no seconds
    from diffrecon.pipeline import run_demo

    run_demo(args.out, seed=args.seed, count_level=args.count_level, preset=args.preset, device=args.device,
             colormap=args.colormap)
