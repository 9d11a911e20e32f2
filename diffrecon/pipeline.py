"""One reconstruction from a loaded case to files: the method's inputs taken from the case, the call, the
comparison images and the writers. ``diffrecon recon`` and the method bundles both run it, so they reconstruct
and write the same way; each adds its own export (command-line options or ``export_result`` in a config)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffrecon.checks import InputError
from diffrecon.io.cases import Case
from diffrecon.io.results import save_reconstruction
from diffrecon.methods import Method, Reconstruction, build_method
from diffrecon.methods.registry import METHODS, required_inputs

DEFAULT_PRIORS = {"PT": "pet_fdg_prior", "MR": "mr_t1_prior"}
CMAPS = {"PT": "gray_r", "MR": "gray"}  # PET activity dark on white, as read on PET workstations


def pet_case(sinogram: str | Path | None = None, *, demo: dict[str, Any] | None = None,
             device: str | torch.device = "cpu", **files: Any) -> Case:
    """The PET case of a bundle run: the user's (``sinogram`` and the ``files`` of
    :func:`diffrecon.io.cases.load_pet_case`: multiplicative, additive, mu_map, grid, psf_fwhm, and the images
    reference and mr), or, when ``sinogram`` is None, the built-in phantom case with the ``demo`` settings
    (:func:`diffrecon.data.demo_cases.simulated_pet_case`)."""
    from diffrecon.data.demo_cases import simulated_pet_case
    from diffrecon.io.cases import load_pet_case

    if sinogram is None:
        return simulated_pet_case(**(demo or {}), device=device)
    images = {key: files.pop(key) for key in ("reference", "mr") if files.get(key)}
    files = {key: value for key, value in files.items() if key not in ("reference", "mr")}
    return load_pet_case(sinogram, images=images, device=device, **files)


def mri_case(kspace: str | Path | None = None, *, demo: dict[str, Any] | None = None,
             device: str | torch.device = "cpu", **options: Any) -> Case:
    """The MRI case of a bundle run: the user's k-space with the ``options`` of
    :func:`diffrecon.io.cases.load_mri_case` (layout, readout_oversampling, slice_index, mask, acceleration,
    center_fraction, seed), or, when ``kspace`` is None, the built-in phantom case with the ``demo`` settings
    (:func:`diffrecon.data.demo_cases.simulated_mri_case`)."""
    from diffrecon.data.demo_cases import simulated_mri_case
    from diffrecon.io.cases import load_mri_case

    if kspace is None:
        return simulated_mri_case(**(demo or {}), device=device)
    return load_mri_case(kspace, device=device, **{key: value for key, value in options.items() if value is not None})


def method_inputs(name: str, case: Case, prior: str | Path | None = None) -> dict[str, Any]:
    """The inputs method ``name`` requires, from the case: ``prior`` from a prior bundle (name or folder;
    default the modality's shipped one) fitted to the case's grid, others from the case's images (e.g. ``mr``).

    Raises:
        InputError: an input the case does not have (named).
    """
    from diffrecon.methods.registry import get_method

    modality = METHODS[name].modality
    inputs = {}
    for key in required_inputs(name):
        if key == "prior":
            bundle = prior or DEFAULT_PRIORS.get(modality)
            if bundle is None:
                raise InputError(f"method {name!r} needs a prior; no default prior bundle for modality {modality}")
            inputs[key] = get_method(name).load_prior(bundle, case.physics, case.data.device)
        elif key in case.images:
            inputs[key] = case.images[key]
        else:
            raise InputError(f"method {name!r} needs the image {key!r}, which the case does not have")
    return inputs


def comparisons(case: Case, method: Method) -> dict[str, torch.Tensor]:
    """Images shown and scored beside the method's: zero-filled for MRI methods, OSEM for diffusion PET."""
    if method.modality == "MR" and method.name != "zero-filled":
        return {"zero-filled": build_method("zero-filled")(case.data, case.physics).mean}
    if method.modality == "PT" and not method.deterministic:
        return {"osem": build_method("osem", progress=False)(case.data, case.physics).mean}
    return {}


def reconstruct_case(case: Case, method: Method, out: str | Path, *, num_samples: int = 1,
                     seed: int = 0) -> tuple[Reconstruction, dict[str, Any]]:
    """Reconstruct ``case`` with ``method`` (samples drawn from ``seed``) and write the result to ``out``
    (:func:`diffrecon.io.results.save_reconstruction`); returns the result and the report as written."""
    generator = torch.Generator(case.data.device).manual_seed(int(seed))
    result = method(case.data, case.physics, num_samples=num_samples, generator=generator)
    written = save_reconstruction(out, method.name, result.mean, case.affine, {**result.report, **case.info},
                                  std=result.std, samples=result.samples, reference=case.reference,
                                  comparisons=comparisons(case, method), cmap=CMAPS[method.modality])
    return result, written


def pet_grid_image(spec: str | Path | None = None, case: Case | None = None):
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
                        case: Case | None = None):
    """The target of a personalised prior (:class:`diffrecon.registration.pseudo_pet.Target`): the PET grid
    (:func:`pet_grid_image`) with the target's MR and optional tissue labels from files (NIfTI or DICOM, any grid
    on the PET's frame of reference) or, without files, the ``case``'s own ``mr`` and ``labels`` images on the PET
    grid (the built-in demo's)."""
    from diffrecon.registration.images import Image, read_image
    from diffrecon.registration.pseudo_pet import Target

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
