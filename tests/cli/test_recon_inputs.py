"""``diffrecon recon`` refuses bad input before any work and leaves nothing behind; single-coil k-space and
``--set`` options reach the method."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffrecon.cli import main
from diffrecon.io.nifti import load_nifti, save_nifti
from diffrecon.io.sinogram import save_sinogram
from diffrecon.physics.geometry import get_preset


@pytest.fixture(scope="module")
def simulated(demo2d_case):
    out = demo2d_case
    save_sinogram(out / "zeros.npz", np.zeros(get_preset("demo2d").scanner.data_shape, np.float32),
                  get_preset("demo2d").scanner)
    (out / "a_file").write_text("not a folder")
    reference, affine = load_nifti(out / "fdg.nii.gz")
    reference[3, 3, 0] = np.nan
    save_nifti(out / "nan.nii.gz", reference, affine)
    return out


@pytest.mark.parametrize("argv,message", [
    # the library's parameter names (num_samples, warm_start) given as the options typed
    (["--method", "osem", "--iterations", "0"], "error: --iterations must be an integer >= 1, got 0"),
    (["--method", "osem", "--samples", "0"], "error: --samples must be an integer >= 1, got 0"),
    (["--method", "osem", "--num-samples=2"], "error: osem is deterministic; --num-samples must be 1, got 2"),
    (["--method", "pet-dds", "--warm-start", "2"],
     "error: --warm-start must be a fraction in (0, 1) of the noise schedule (or null: start from pure noise), "
     "got 2.0"),
    (["--method", "pet-dds", "--steps", "0"], "error: --steps must be an integer >= 1, got 0"),
    (["--method", "osem", "--beta", "0.3"], "method 'osem' takes no option 'beta'"),
    (["--method", "map-rdp", "--set", "steps=5"], "method 'map-rdp' takes no option 'steps'"),
    (["--method", "map-rdp", "--set", "beta"], "--set 'beta'; expected NAME=VALUE"),
    (["--method", "bowsher"], "--mr is required for the bowsher method"),
    (["--method", "osem", "--sinogram", "{sim}/zeros.npz"], "--sinogram holds no counts"),
    (["--method", "osem", "--multiplicative", "{sim}/zeros.npz"], "multiplicative factors are all zero"),
    (["--method", "osem", "--out", "{sim}/a_file/out"], "--out '{sim}/a_file/out': '{sim}/a_file' is a file"),
    pytest.param(["--method", "osem", "--out", "/proc/diffrecon_out"], "--out '/proc/diffrecon_out' cannot be created",
                 marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc file system here")),
    (["--method", "pet-lisch", "--prior", "mr_t1_prior"],
     "error: --prior 'mr_t1_prior' is an MR prior (modality MR); method pet-lisch needs a PET prior (PT)"),
    (["--method", "pet-dds", "--prior", "mr_t1_prior"],
     "error: --prior 'mr_t1_prior' is an MR prior (modality MR); method pet-dds needs a PET prior (PT)"),
    # images are checked as the case is loaded: no partial outputs (OSEM, the reference) before the refusal
    (["--method", "pet-lisch", "--reference", "{sim}/nan.nii.gz"],
     "--reference contains 1 NaN/Inf value(s); expected finite numbers (in '{sim}/nan.nii.gz')"),
    (["--method", "bowsher", "--mr", "{sim}/nan.nii.gz"], "--mr contains 1 NaN/Inf value(s)"),
    (["--method", "osem", "--mu-map", "{sim}/nan.nii.gz"], "--mu-map contains 1 NaN/Inf value(s)"),
    (["--method", "zero-filled", "--colormap", "hot"],
     "colormap 'hot' is for PET images; MRI magnitude images are shown in grey"),
])
def test_bad_pet_input_is_refused_before_any_work(simulated, tmp_path, capsys, argv, message):
    argv = [a.format(sim=simulated) for a in argv]
    defaults = {"--sinogram": str(simulated), "--out": str(tmp_path / "out")}
    extra = [item for key, value in defaults.items() if key not in argv for item in (key, value)]
    assert main(["recon", *argv, *extra]) == 2
    assert message.format(sim=simulated) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_set_options_and_a_case_folder_reach_the_method(simulated, tmp_path):
    assert main(["recon", "--method", "map-rdp", "--sinogram", str(simulated), "--set", "iterations=2",
                 "--set", "beta=0.5", "--subsets", "4", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "map-rdp.json").read_text())
    assert report["settings"] == {"beta": 0.5, "gamma": 2.0, "iterations": 2, "subsets": 4}
    assert len(report["log_likelihood"]) == 2 and "map-rdp" in report["metrics"]  # the folder's reference


def test_single_coil_kspace_with_a_reference_writes_matching_images(tmp_path, capsys):
    y, x = np.meshgrid(np.linspace(-1, 1, 40), np.linspace(-1, 1, 48))
    image = np.exp(-(x - 0.2) ** 2 * 4 - (y + 0.1) ** 2 * 6) + 0.3 * (x ** 2 + y ** 2 < 0.5)
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image), norm="ortho")).astype(np.complex64)
    np.save(tmp_path / "single.npy", kspace.T)
    for method in ("zero-filled", "cg-sense"):
        assert main(["recon", "--method", method, "--kspace", str(tmp_path / "single.npy"), "--kspace-layout", "yx",
                     "--acceleration", "2", "--mask", "equispaced", "--center-fraction", "0.2",
                     "--out", str(tmp_path / method)]) == 0, capsys.readouterr().err
        report = json.loads((tmp_path / method / f"{method}.json").read_text())
        assert report["n_coils"] == 1 and report["metrics"][method]["nrmse"] < 0.5


def test_diffusion_method_writes_samples_and_exports_the_std_series(simulated, tmp_path):
    out = tmp_path / "lisch"
    assert main(["recon", "--method", "pet-lisch", "--sinogram", str(simulated), "--steps", "2", "--samples", "2",
                 "--set", "iterations=3", "--seed", "4", "--out", str(out), "--export-dicom-dir",
                 str(out / "dicom")]) == 0
    report = json.loads((out / "pet-lisch.json").read_text())
    assert report["network_evaluations"] == 2 and report["num_samples"] == 2 and report["seed"] == 4
    assert set(report["metrics"]) == {"osem", "pet-lisch"}
    for name in ("pet-lisch", "pet-lisch_std", "pet-lisch_samples", "osem"):
        assert (out / f"{name}.nii.gz").is_file(), name
    from diffrecon.io.dicom_read import load_dicom_series

    std, _ = load_nifti(out / "pet-lisch_std.nii.gz")
    series = load_dicom_series(out / "dicom" / "std")
    np.testing.assert_allclose(series.array, std, atol=float(std.max()) / 32767 + 1e-6)
