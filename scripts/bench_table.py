"""Tables of bench_pet.py records merged from several files (e.g. baselines and guided runs written apart), and each
configuration compared case by case with a reference one (the same subjects and noise realisations only):

    python scripts/bench_table.py docs/guided/3d/test_*_1pct.jsonl --against '["bowsher", {"beta": 0.2}]'

The paired table gives the mean of NRMSE / NRMSE(reference) - 1 over the cases both have, and on how many of them
the configuration's NRMSE is the lower: a difference smaller than the spread between subjects is seen there.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from diffrecon.benchmarks.pet import summarise
from diffrecon.benchmarks.records import read_lines


def with_prior_names(line: dict) -> dict:
    """The record with the prior bundle in its key named by its folder name: records written from different
    checkouts name the same bundle by different paths."""
    key = json.loads(line["key"])
    return {**line, "key": json.dumps(key[:7] + [Path(p).name for p in key[7:]])}


def configuration(line: dict) -> str:
    """The configuration of a record: its key without the subject and noise realisation."""
    preset, counts, _, _, method, settings, samples, *prior = json.loads(line["key"])
    return json.dumps([preset, counts, method, settings, samples, *prior])


def paired(lines: list[dict], against: list) -> str:
    """Markdown table: per configuration, NRMSE relative to the reference configuration on the cases both have."""
    by_configuration: dict[str, dict[tuple[int, int], float]] = {}
    for line in lines:
        by_configuration.setdefault(configuration(line), {})[(line["seed"], line["noise_seed"])] = line["nrmse"]
    references = [c for c in by_configuration if json.loads(c)[2:4] == against]
    if len(references) != 1:
        raise SystemExit(f"--against {json.dumps(against)} matches {len(references)} configurations; expected one "
                         f"of {sorted(by_configuration)}")
    reference = by_configuration[references[0]]
    rows = [f"| configuration | cases | NRMSE vs {against[0]} {json.dumps(against[1])} | lower on |", "|---|---|---|---|"]
    for name, cases in sorted(by_configuration.items()):
        common = sorted(set(cases) & set(reference))
        if not common or name == references[0]:
            continue
        ratios = np.array([cases[c] / reference[c] - 1 for c in common])
        rows.append(f"| {name} | {len(common)} | {ratios.mean():+.1%} | {int((ratios < 0).sum())} of {len(common)} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", type=Path, help="bench_pet.py JSON-lines files")
    parser.add_argument("--against", type=json.loads, help='reference configuration: \'["method", {settings}]\'')
    args = parser.parse_args()
    lines = [with_prior_names(line) for path in args.records for line in read_lines(path)]
    if not lines:
        raise SystemExit(f"no records in {[str(p) for p in args.records]}")
    print(summarise(lines))
    if args.against:
        print()
        print(paired(lines, args.against))


if __name__ == "__main__":
    main()
