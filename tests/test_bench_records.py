"""The benchmark records (diffrecon/benchmarks/records.py): a line stamped with its resolved settings resumes only
while the method's defaults still give those settings."""
import json

import pytest

from diffrecon.benchmarks.records import done_runs, is_done, resolved_settings


def test_resolved_settings_hold_the_defaults_under_the_given_settings():
    resolved = resolved_settings("dds", {"steps": 7})
    assert resolved["steps"] == 7
    assert resolved["warm_start"] is not None and resolved["gamma"] == 10.0
    assert "prior" not in resolved  # an input, not a setting
    json.dumps(resolved)


def test_a_run_done_with_other_defaults_is_refused_not_skipped():
    key = "k"
    today = resolved_settings("dds", {})
    assert not is_done(done_runs([]), key, "dds", {})
    assert is_done(done_runs([{"key": key, "resolved": today}]), key, "dds", {})
    assert is_done(done_runs([{"key": key}]), key, "dds", {})  # written before the stamp: trusted as before
    with pytest.raises(SystemExit, match="warm_start"):
        is_done(done_runs([{"key": key, "resolved": {**today, "warm_start": None}}]), key, "dds", {})
