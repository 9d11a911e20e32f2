"""Built-in demo cases: a phantom subject scanned in memory, ready for a method (what the bundles reconstruct
when no data are given)."""
from __future__ import annotations

import torch

from diffrecon.data.phantoms import make_subject
from diffrecon.io.cases import Case
from diffrecon.physics.geometry import get_preset
from diffrecon.physics.pet_simulation import simulate_pet


def simulated_pet_case(seed: int = 20000, preset: str = "demo2d", count_level: str = "10%", lesions: int = 2,
                       lesion_kinds: str = "hot", psf_fwhm: float = 4.5, noise_seed: int = 0, split: str | None = "test",
                       device: str | torch.device = "cpu") -> Case:
    """Phantom subject ``seed`` of ``split`` (refused if it belongs to another) with ``lesions`` lesions,
    scanned on ``preset`` at ``count_level`` as ``diffrecon simulate`` does; the case's reference is the true
    activity, its images the T1 ("mr"), the μ-map and the lesion masks, and the model includes the PSF."""
    grid = get_preset(preset).grid
    subject = make_subject(seed, grid, lesions=lesions, lesion_kinds=lesion_kinds, split=split)
    scan = simulate_pet(torch.as_tensor(subject.fdg), torch.as_tensor(subject.mu_map), get_preset(preset).scanner,
                        grid, count_level=count_level, psf_fwhm_mm=psf_fwhm, seed=noise_seed, device=device)
    info = {"scanner": preset, "grid": list(grid.shape), "phantom_seed": seed, "count_level": count_level}
    images = {"mr": subject.t1, "mu_map": subject.mu_map, "lesions": subject.lesion_masks,
              "white_matter": subject.white_matter, "labels": subject.labels}
    return Case(scan.measured, scan.model, grid.affine, subject.fdg, images, info)
