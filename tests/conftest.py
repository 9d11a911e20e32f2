"""Shared fixtures. Real data live in ../shared/data beside the project (CI has it; users may not)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Root of the real test data sets; tests using it skip, with the reason, where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (present in CI, see shared/data/README.md)")
    return SHARED_DATA


def simulate_case(out: Path, seed: int = 20001, count_level: str = "10%", lesions: int = 1) -> Path:
    """A one-slice (demo2d) case folder written by ``diffrecon simulate``, as users make them."""
    from diffrecon.cli import main

    assert main(["simulate", "--out", str(out), "--seed", str(seed), "--preset", "demo2d", "--count-level",
                 count_level, "--lesions", str(lesions)]) == 0
    return out


@pytest.fixture(scope="session")
def demo2d_case(tmp_path_factory) -> Path:
    """One shared demo2d case folder (test subject 20001, 10% counts, one lesion); tests may add files to it
    but must not change those it has."""
    return simulate_case(tmp_path_factory.mktemp("demo2d_case"))


# Tiny test tensors gain nothing from threads, and two OpenMP threads slow down badly (up to 50x) when
# another process shares the cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
