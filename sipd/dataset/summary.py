"""A project's prepared dataset as the daemon sees it: where it is, whether it is stale.

The worker writes DATA_DIR/projects/P/dataset/ (chips, dataset.json, and
source.json naming the project revision and chip size it was made from); the
daemon only reads those small JSON files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sipd.errors import NotFound
from sipd.projects import Projects


def dataset_dir(projects: Projects, project: str) -> Path:
    return projects.project_dir(project) / "dataset"


def _source(projects: Projects, project: str) -> dict[str, Any] | None:
    try:
        return json.loads((dataset_dir(projects, project) / "source.json").read_text())
    except (OSError, ValueError):
        return None


def needs_prepare(projects: Projects, project: str, chip_size: int) -> bool:
    """Missing, or made from another revision of the labels or another chip size."""
    source = _source(projects, project)
    if source is None:
        return True
    revision = projects.get(project)["revision"]
    return source.get("revision") != revision or source.get("chip_size") != chip_size


def read_summary(projects: Projects, project: str) -> dict[str, Any]:
    """dataset.json plus `stale`, `create_time` and the project's classes."""
    p = projects.get(project)
    folder = dataset_dir(projects, project)
    source = _source(projects, project)
    try:
        summary = json.loads((folder / "dataset.json").read_text())
    except (OSError, ValueError):
        source = None
    if source is None:
        raise NotFound(
            f"project {project!r} has no prepared dataset; run `sipctl dataset prepare {project}`"
        )
    summary["stale"] = source.get("revision") != p["revision"]
    summary["create_time"] = (folder / "source.json").stat().st_mtime
    summary["classes"] = p["classes"]
    return summary
