"""The benchmark scripts' JSON-lines records: read, resumed by key, and each stamped with every setting it ran
with, so that a default changed later neither relabels an old line nor lets a rerun skip a run that would now
differ (a line's key holds only the settings given on the command line)."""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from diffrecon.methods.registry import method_parameters


def read_lines(path: Path) -> list[dict]:
    return [json.loads(text) for text in path.read_text().splitlines()] if path.is_file() else []


def resolved_settings(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Every JSON-serialisable constructor default of method ``name``, overridden by ``settings``: what the run
    actually used."""
    resolved = {}
    for key, parameter in method_parameters(name).items():
        if parameter.default is inspect.Parameter.empty:
            continue
        try:
            json.dumps(parameter.default)
        except TypeError:
            continue
        resolved[key] = parameter.default
    return json.loads(json.dumps({**resolved, **settings}))  # as a line reads back (tuples as lists)


def done_runs(lines: list[dict]) -> dict[str, dict | None]:
    """Key -> resolved settings (None for lines written before they were recorded) of the lines done."""
    return {line["key"]: line.get("resolved") for line in lines}


def is_done(done: dict[str, dict | None], key: str, name: str, settings: dict[str, Any]) -> bool:
    """Whether the run of ``key`` is done; raises SystemExit if it was done with other defaults than today's."""
    if key not in done:
        return False
    then, now = done[key], resolved_settings(name, settings)
    if then is not None and then != now:
        changed = sorted(k for k in set(then) | set(now) if then.get(k) != now.get(k))
        raise SystemExit(f"{name} {settings}: done with other defaults ({', '.join(changed)}: "
                         f"{[then.get(k) for k in changed]} then, {[now.get(k) for k in changed]} now); give these "
                         "settings explicitly or write to a new --out file")
    return True


def steering_figures(report: dict[str, Any]) -> dict[str, Any]:
    """SCD's figures of a report (none for other methods): its extra network passes, its seconds and the data loss
    before the first and after the last adapted step."""
    losses = report.get("steering_losses")
    if not losses:
        return {}
    return {"steering_evaluations": report["steering_evaluations"], "seconds_steering": report["seconds_steering"],
            "steering_loss_first": losses[0]["before"], "steering_loss_last": losses[-1]["after"]}


def uncertainty_figures(result: Any, case: Any) -> dict[str, Any]:
    """The uncertainty figures every benchmark line carries beside NRMSE (issue 34): coverage of mean ± 1 and 2
    std, mean |z| and 90% quantile coverage over the brain (phantoms, real PET brains) or the object (MRI), the
    null-space fraction of the mean's error through the case's physics, the phantom lesions recovered, erased and
    invented (:func:`diffrecon.uncertainty.uncertainty_metrics`; None where a figure does not apply, e.g. coverage
    of a deterministic method), and the std's calibration factor when the method applied one."""
    from diffrecon.pipeline import lesion_inputs
    from diffrecon.uncertainty import UNCERTAINTY_FIGURES, uncertainty_metrics

    calibration = result.report.get("std_calibration") or {}
    if case.reference is None:
        return {**dict.fromkeys(UNCERTAINTY_FIGURES), "std_calibration_factor": calibration.get("factor")}
    figures = uncertainty_metrics(case.reference, result.mean, result.std, result.samples, case.physics,
                                  **lesion_inputs(case), std_factor=calibration.get("factor", 1.0))
    return {**figures, "std_calibration_factor": calibration.get("factor")}


UNCERTAINTY_COLUMNS = {"coverage_1std": ("cov 1 SD", "{:.2f}"), "coverage_2std": ("cov 2 SD", "{:.2f}"),
                       "mean_abs_z": ("mean abs z", "{:.2f}"), "null_space_fraction": ("null frac", "{:.2f}"),
                       "lesions_recovered": ("lesions R", "{:.0f}"), "lesions_erased": ("E", "{:.0f}"),
                       "lesions_invented": ("I", "{:.0f}")}
"""Figure -> (column header, format) of the uncertainty columns the benchmark tables add."""


def uncertainty_header() -> str:
    """The uncertainty columns' headers, as " | "-separated cells (append to a markdown table's header row)."""
    return " | ".join(header for header, _ in UNCERTAINTY_COLUMNS.values())


def uncertainty_cells(members: list[dict]) -> str:
    """The uncertainty columns of a table row over ``members`` (lines of one configuration): coverage, |z| and
    null fraction averaged, lesion counts summed; "-" where no line has the figure (deterministic methods have no
    coverage, lines written before issue 34 have none)."""
    cells = []
    for key, (_, form) in UNCERTAINTY_COLUMNS.items():
        values = [line[key] for line in members if line.get(key) is not None]
        if not values:
            cells.append("-")
        else:
            cells.append(form.format(sum(values) if key.startswith("lesions_") else sum(values) / len(values)))
    return " | ".join(cells)
