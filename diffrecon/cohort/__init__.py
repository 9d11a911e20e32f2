"""Cohort reconstruction on Ray: many studies x methods, resumable, one summary table (``diffrecon cohort``,
``bundles/common/cohort.json``, docs/cohort.md).

:mod:`.cases` lists the studies (a folder, a manifest CSV, the built-in demo cases), :mod:`.worker` does one
(case, method) pair and publishes it atomically, :mod:`.run` schedules the pairs on Ray actors and writes the
summary. Ray is an optional dependency (``pip install 'diffrecon[cohort]'``), imported only when a run starts.
"""
from __future__ import annotations

from diffrecon.cohort.cases import CaseSpec, find_cases, load_case
from diffrecon.cohort.run import CohortResult, run_cohort, write_summary
from diffrecon.cohort.worker import CohortSettings, ExportSettings, PairRunner

__all__ = ["CaseSpec", "CohortResult", "CohortSettings", "ExportSettings", "PairRunner", "find_cases", "load_case",
           "run_cohort", "write_summary"]
