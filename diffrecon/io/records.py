"""JSON records that mark a finished stage: written under a temporary name and renamed, so a record that exists
is complete; read back as None when missing or unreadable (the stage is then redone)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_record(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=1))
    partial.replace(path)
    return path


def read_record(path: str | Path) -> Any | None:
    """The JSON at ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
