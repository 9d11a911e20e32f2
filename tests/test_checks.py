from __future__ import annotations

import pytest
import torch

from diffrecon.checks import InputError, check_device


def test_check_device_accepts_cpu_and_explains_missing_cuda():
    assert check_device("--device", "cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="--device 'cuda' asked for CUDA"):
            check_device("--device", "cuda")
    with pytest.raises(InputError, match="not a torch device"):
        check_device("--device", "gpu")
