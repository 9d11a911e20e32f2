from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffrecon.checks import InputError, check_device, check_output_dir


def test_check_device_accepts_cpu_and_refuses_non_devices():
    assert check_device("--device", "cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="not a torch device"):
        check_device("--device", "gpu")


def test_check_device_cuda_on_this_machine():
    """Accepted where torch sees a GPU, explained where it does not: one assertion on either machine."""
    if torch.cuda.is_available():
        assert check_device("--device", "cuda") == torch.device("cuda")
        count = torch.cuda.device_count()
        with pytest.raises(InputError, match=f"only {count} CUDA device"):
            check_device("--device", f"cuda:{count}")
    else:
        with pytest.raises(InputError, match="--device 'cuda' asked for CUDA"):
            check_device("--device", "cuda")


@pytest.mark.parametrize("n_gpus", [0, 2])
def test_check_device_cuda_with_and_without_gpus(monkeypatch, n_gpus):
    """Both branches run on every machine: torch's view of the GPUs is replaced."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n_gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpus)
    if n_gpus:
        assert check_device("--device", "cuda:1") == torch.device("cuda", 1)
        with pytest.raises(InputError, match="'cuda:2': only 2 CUDA device"):
            check_device("--device", "cuda:2")
    else:
        with pytest.raises(InputError, match="--gpu 'cuda:0' asked for CUDA, but this torch build or machine has no"):
            check_device("--gpu", "cuda:0")


def test_check_output_dir_writes_a_file_and_leaves_no_trace(tmp_path):
    assert check_output_dir("--out", tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_output_dir("--out", tmp_path) == tmp_path
    assert list(tmp_path.iterdir()) == []  # the folders made and the file written are removed again


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc file system here")
def test_check_output_dir_refuses_folders_the_file_system_refuses():
    """/proc passes permission checks (for root) but takes no files: only writing one tells."""
    with pytest.raises(InputError, match=r"--out '/proc/x/y' cannot be created \(.+\); expected a folder you can "
                                         "write to"):
        check_output_dir("--out", "/proc/x/y")
    with pytest.raises(InputError, match="--out '/proc' cannot be written"):
        check_output_dir("--out", "/proc")
