"""A seeded sample of scripts/fuzz_readers.py: every mutated file a reader meets (Interfile, .npz and NIfTI+JSON
sinograms, NIfTI images, DICOM series, fastMRI and ISMRMRD HDF5, twix and NumPy k-space) is read or refused with
an InputError naming the file, within the time limit, writing nothing. The script runs as users run it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_readers.py"
READERS = {"interfile", "npz_sinogram", "nifti_sinogram", "nifti_image", "dicom", "fastmri", "ismrmrd", "twix",
           "numpy_kspace"}
PER_READER = 30


def test_mutated_files_are_read_or_refused_naming_the_file(tmp_path):
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--per-reader", str(PER_READER), "--seed", "0", "--quiet",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.is_file(), done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["readers"]) == READERS
    assert report["failures"] == [], json.dumps(report["failures"], indent=1)[:6000]
    for name, counts in report["readers"].items():
        assert counts["ok"] + counts["input_error"] == PER_READER, (name, counts)
        assert counts["input_error"] > 0, (name, counts)  # the mutations do break files
    assert done.returncode == 0, done.stdout[-3000:]
