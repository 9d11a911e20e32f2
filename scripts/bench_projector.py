"""Benchmark the PET projector: 2D against astra-toolbox's CPU parallel-beam projector on the same geometry,
and fully 3D forward + adjoint time and peak memory for 64³ and 128³ images.

    pip install -e ".[bench]" && python scripts/bench_projector.py [--device cuda] [--repeats 5]

Every ratio compares timings taken in the same run. 3D cases run in a fresh subprocess each, so the memory
figures belong to that case alone: on CPU the resident memory held by the projector's tables, the peak while
building them, and the peak while projecting (from /proc/self/status, above the process after imports); on
CUDA the peak allocated memory.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

from diffrecon.physics.geometry import ImageGrid, ScannerGeometry
from diffrecon.physics.projector import PETProjector

CASES_3D = {
    "64^3": (ScannerGeometry(170.0, 128, 64, 3.0, n_views=64, n_bins=64, bin_size_mm=3.0, max_ring_difference=16),
             ImageGrid((64, 64, 64), (3.0, 3.0, 3.0))),
    "128^3": (ScannerGeometry(328.0, 256, 64, 4.0, n_views=128, n_bins=128, bin_size_mm=2.0, max_ring_difference=16),
              ImageGrid((128, 128, 128), (2.0, 2.0, 2.0))),
}


def best_time(function, repeats: int) -> float:
    """Minimum wall time of ``repeats`` calls (after one warm-up call)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_2d(size: int, n_slices: int, repeats: int) -> dict:
    """Forward + adjoint of ``n_slices`` slices of size² with size views and size bins: ours vs astra 'linear'."""
    import astra

    scanner = ScannerGeometry(ring_radius_mm=size, n_detectors_per_ring=2 * size, n_rings=1, ring_spacing_mm=1.0,
                              n_views=size, n_bins=size, bin_size_mm=1.0)
    grid = ImageGrid((size, size, 1), (1.0, 1.0, 1.0))
    # Our 2D case: one ring, slices as the batch.
    projector = PETProjector(scanner, grid)
    images = torch.rand(n_slices, size, size, 1)
    sinograms = torch.rand(n_slices, 1, size, size)
    ours = best_time(lambda: (projector.forward(images), projector.adjoint(sinograms)), repeats)

    volume_geometry = astra.create_vol_geom(size, size)
    projection_geometry = astra.create_proj_geom("parallel", 1.0, size, scanner.view_angles)
    astra_id = astra.create_projector("linear", projection_geometry, volume_geometry)
    # astra's image rows run along -y, columns along x: our image[x, y] is astra_image[ny - 1 - y, x]
    astra_images = np.ascontiguousarray(images[..., 0].numpy().transpose(0, 2, 1)[:, ::-1])
    astra_sinograms = np.ascontiguousarray(sinograms[:, 0].numpy())
    # As astra's users batch slices on a CPU: data objects and FP/BP algorithms made once, each slice stored
    # into the input object and its result copied out of the output object.
    image_in, image_out = (astra.data2d.create("-vol", volume_geometry) for _ in range(2))
    sinogram_in, sinogram_out = (astra.data2d.create("-sino", projection_geometry) for _ in range(2))
    forward_id = astra.algorithm.create({"type": "FP", "ProjectorId": astra_id, "VolumeDataId": image_in,
                                         "ProjectionDataId": sinogram_out})
    adjoint_id = astra.algorithm.create({"type": "BP", "ProjectorId": astra_id, "ProjectionDataId": sinogram_in,
                                         "ReconstructionDataId": image_out})
    astra_forward, astra_adjoint = np.empty_like(astra_sinograms), np.empty_like(astra_images)

    def run_astra():
        for k in range(n_slices):
            astra.data2d.store(image_in, astra_images[k])
            astra.algorithm.run(forward_id)
            astra_forward[k] = astra.data2d.get_shared(sinogram_out)
            astra.data2d.store(sinogram_in, astra_sinograms[k])
            astra.algorithm.run(adjoint_id)
            astra_adjoint[k] = astra.data2d.get_shared(image_out)

    theirs = best_time(run_astra, repeats)
    # the reused objects must give what astra's one-shot calls give (no accumulation across slices)
    for k in (0, n_slices - 1):
        for reused, (data_id, reference) in (
                (astra_forward[k], astra.create_sino(astra_images[k], astra_id)),
                (astra_adjoint[k], astra.create_backprojection(astra_sinograms[k], astra_id))):
            astra.data2d.delete(data_id)
            np.testing.assert_allclose(reused, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())
    astra.algorithm.delete([forward_id, adjoint_id])
    astra.data2d.delete([image_in, sinogram_out, sinogram_in, image_out])
    astra.projector.delete(astra_id)
    ours_sino = projector.forward(images[:1])[0, 0].numpy()
    agreement = np.linalg.norm(ours_sino - astra_forward[0]) / np.linalg.norm(astra_forward[0])
    return {"case": f"2D {size}x{size}, {size} views x {size} bins, {n_slices} slice(s)", "ours_s": ours,
            "astra_s": theirs, "astra_over_ours": theirs / ours, "relative_difference_vs_astra": agreement}


def bench_3d_case(name: str, device: str, repeats: int) -> dict:
    """Time forward + adjoint of one 3D case; called in its own process for a clean peak-memory reading."""
    scanner, grid = CASES_3D[name]
    baseline = resident_gb()["VmRSS"]
    start = time.perf_counter()
    projector = PETProjector(scanner, grid, device=device)
    setup = time.perf_counter() - start
    image = torch.rand(1, *grid.shape, device=device)
    sinogram = torch.rand(1, *projector.sinogram_shape(), device=device)
    memory = resident_gb()
    tables_gb, setup_peak_gb = memory["VmRSS"] - baseline, memory["VmHWM"] - baseline
    reset_peak_resident()

    def run():
        projector.forward(image)
        projector.adjoint(sinogram)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = best_time(run, repeats)
    if device.startswith("cuda"):
        peak_gb = torch.cuda.max_memory_allocated() / 2 ** 30
    else:
        peak_gb = resident_gb()["VmHWM"] - baseline
    return {"case": f"3D {name}: {scanner.n_rings} rings, max ring difference {scanner.max_ring_difference}, "
                    f"{scanner.n_sinograms} sinograms x {scanner.n_views} views x {scanner.n_bins} bins",
            "device": device, "setup_s": setup, "forward_plus_adjoint_s": seconds, "tables_gb": tables_gb,
            "setup_peak_gb": setup_peak_gb, "projection_peak_gb": peak_gb}


def resident_gb() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process in GB."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if line.startswith("Vm"))
    return {key: int(fields[key].split()[0]) / 2 ** 20 for key in ("VmRSS", "VmHWM")}


def reset_peak_resident() -> None:
    """Reset VmHWM to the current resident size (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--case-3d", choices=list(CASES_3D), help=argparse.SUPPRESS)  # subprocess entry
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.case_3d:
        print(json.dumps(bench_3d_case(args.case_3d, args.device, args.repeats)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}")
    for size, n_slices in ((128, 1), (128, 64), (256, 1)):
        row = bench_2d(size, n_slices, args.repeats)
        print(f"{row['case']}: ours {row['ours_s'] * 1e3:.1f} ms, astra {row['astra_s'] * 1e3:.1f} ms, "
              f"astra/ours = {row['astra_over_ours']:.2f}, sinogram difference vs astra "
              f"{100 * row['relative_difference_vs_astra']:.1f}%")
    for name in CASES_3D:
        command = [sys.executable, __file__, "--case-3d", name, "--device", args.device,
                   "--repeats", str(max(1, args.repeats // 2))]
        if args.threads:
            command += ["--threads", str(args.threads)]
        row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        print(f"{row['case']}: forward + adjoint {row['forward_plus_adjoint_s']:.2f} s; setup {row['setup_s']:.1f} s; "
              f"memory: tables {row['tables_gb']:.2f} GB, setup peak {row['setup_peak_gb']:.2f} GB, projection peak "
              f"{row['projection_peak_gb']:.2f} GB ({row['device']})")


if __name__ == "__main__":
    main()
