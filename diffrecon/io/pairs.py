"""A site's own training pairs for a supervised method (PET-DEFT): a folder of case folders, each a measured
sinogram with its factors and a high-quality reference image of the same subject, read with the same reader as a
reconstruction (:func:`~diffrecon.io.cases.load_pet_case`)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffrecon.checks import InputError, check_device
from diffrecon.io.cases import load_pet_case

PAIR_RATIO_RANGE = (0.5, 2.0)
"""A pair whose reference, projected through the pair's own physics, expects a total count outside this multiple of
the measured counts is refused as mismatched (another subject's reference, another scan's factors)."""
PAIR_FILES = ("sinogram", "multiplicative", "additive", "mu_map", "reference")


def load_pet_pairs(folder: str | Path, device: str | torch.device = "cpu") -> list[dict[str, Any]]:
    """The pairs of ``folder``: every sub-folder is one case, either a ``diffrecon simulate`` folder (its
    ``simulation.json``; the reference is its tracer's image) or files named ``sinogram.*``, optional
    ``multiplicative.*``, ``additive.*``, ``mu_map.*`` and ``reference.*`` (the formats ``diffrecon recon`` reads;
    the grid is the scanner's preset). Items: ``image`` (the reference), ``sinogram``, ``physics``, ``index`` and
    ``name``.

    Raises:
        InputError: no such folder or no case in it, a case without a reference or sinogram (unpaired), a pair
            whose reference does not explain its counts (mismatched), cases on different scanners or grids, or
            as :func:`~diffrecon.io.cases.load_pet_case` (each named by its folder).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"pairs {str(folder)!r} is not a folder; expected a folder of case folders (one per pair)")
    device = check_device("device", device)
    cases = sorted(p for p in folder.iterdir() if p.is_dir())
    if not cases:
        raise InputError(f"pairs {str(folder)!r} holds no case folders; expected one folder per pair (a sinogram "
                         "with its factors and a reference image)")
    items = [_pair(case, index, device) for index, case in enumerate(cases)]
    grids = {(item["physics"].projector.scanner.name, tuple(item["physics"].image_shape)) for item in items}
    if len(grids) > 1:
        raise InputError(f"pairs {str(folder)!r} mixes scanners or grids {sorted(grids)}; expected one (train one "
                         "network per scanner)")
    return items


def _pair(case: Path, index: int, device: torch.device) -> dict[str, Any]:
    """One case folder as a training item, checked to be a pair."""
    try:
        if (case / "simulation.json").is_file():
            loaded = load_pet_case(case, device=device)
        else:
            files = {key: _named_file(case, key) for key in PAIR_FILES}
            if files["sinogram"] is None or files["reference"] is None:
                missing = [key for key in ("sinogram", "reference") if files[key] is None]
                raise InputError(f"unpaired: no {' or '.join(missing)} file (expected {missing[0]}.*)")
            loaded = load_pet_case(files["sinogram"], multiplicative=files["multiplicative"],
                                   additive=files["additive"], mu_map=files["mu_map"],
                                   images={"reference": files["reference"]}, device=device)
    except InputError as error:
        raise InputError(f"pair {case.name}: {error}") from None
    if loaded.reference is None:
        raise InputError(f"pair {case.name}: unpaired: no reference image (reference.* or the simulated tracer's)")
    reference = torch.as_tensor(np.asarray(loaded.reference), dtype=torch.float32, device=device)
    expected = float(loaded.physics.forward(reference[None]).sum())
    measured = float(loaded.data.sum())
    ratio = expected / measured if measured > 0 else float("inf")
    if not PAIR_RATIO_RANGE[0] <= ratio <= PAIR_RATIO_RANGE[1]:
        raise InputError(f"pair {case.name}: mismatched: its reference projected through its factors expects "
                         f"{expected:.4g} counts, {ratio:.3g} times the {measured:.4g} measured (expected "
                         f"{PAIR_RATIO_RANGE[0]}-{PAIR_RATIO_RANGE[1]}: the same subject and scan)")
    return {"image": reference, "sinogram": loaded.data, "physics": loaded.physics, "name": case.name,
            "index": index}


def _named_file(case: Path, key: str) -> Path | None:
    """The one file of ``case`` named ``key``.* (None if there is none)."""
    found = sorted(p for p in case.iterdir() if p.is_file() and p.name.split(".")[0] == key)
    if len(found) > 1:
        raise InputError(f"{len(found)} files named {key}.* ({', '.join(p.name for p in found)}); expected one")
    return found[0] if found else None


def split_pairs(items: Sequence[dict[str, Any]], n_validation: int) -> tuple[list[dict], list[dict]]:
    """The training and validation pairs: the last ``n_validation`` are held out (re-indexed from 0 each)."""
    if not 0 <= int(n_validation) < len(items):
        raise InputError(f"n_val is {n_validation}; expected 0 to {len(items) - 1} validation pairs of the "
                         f"{len(items)} given (at least one must remain to train on)")
    cut = len(items) - int(n_validation)
    return ([{**item, "index": i} for i, item in enumerate(items[:cut])],
            [{**item, "index": i} for i, item in enumerate(items[cut:])])
