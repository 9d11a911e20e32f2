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
