"""Subject seed ranges: training subjects never appear in validation or test, and vice versa.

| split      | seeds             |
|------------|-------------------|
| train      | 0 ... 9 999       |
| validation | 10 000 ... 10 999 |
| test       | 20 000 ... 29 999 |
"""
from __future__ import annotations

from diffrecon.checks import InputError, check_choice

SPLITS = {"train": range(0, 10_000), "validation": range(10_000, 11_000), "test": range(20_000, 30_000)}


def split_of(seed: int) -> str:
    """The split a subject seed belongs to."""
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name
    raise InputError(f"seed {seed} belongs to no split; expected one of "
                     + ", ".join(f"{n} {r.start}..{r.stop - 1}" for n, r in SPLITS.items()))


def check_split(seed: int, split: str) -> None:
    """Refuse a seed outside the requested split (e.g. a test subject asked for training)."""
    check_choice("split", split, SPLITS)
    actual = split_of(seed)
    if actual != split:
        raise InputError(f"seed {seed} is a {actual} subject; the {split} split holds seeds "
                         f"{SPLITS[split].start}..{SPLITS[split].stop - 1}")


def subject_seeds(split: str, n: int, start: int = 0) -> list[int]:
    """The first ``n`` seeds of ``split`` after skipping ``start`` of them."""
    check_choice("split", split, SPLITS)
    seeds = SPLITS[split]
    if n < 0 or start < 0 or start + n > len(seeds):
        raise InputError(f"the {split} split has {len(seeds)} seeds; cannot take {n} from position {start}")
    return list(seeds[start:start + n])
