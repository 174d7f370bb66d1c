"""The model repository: DATA_DIR/models/<project>/<version>/ folders (models/README.md).

The folders themselves are the source of truth, not the database: a folder
copied in from another machine is a model version here at once.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from sipd.errors import FailedPrecondition, InvalidArgument, NotFound

REQUIRED_FILES = ("model.onnx", "model.yaml")


class ModelRepository:
    def __init__(self, root: Path) -> None:
        self.root = root

    def project_dir(self, project: str) -> Path:
        return self.root / project

    def versions(self, project: str) -> list[int]:
        folder = self.project_dir(project)
        if not folder.is_dir():
            return []
        return sorted(
            (
                int(p.name)
                for p in folder.iterdir()
                if p.name.isdigit() and (p / "model.yaml").is_file()
            ),
            reverse=True,
        )

    def list(self, project: str) -> list[dict[str, Any]]:
        out = []
        for version in self.versions(project):
            try:
                out.append(self.get(project, version))
            except (InvalidArgument, FailedPrecondition):
                continue  # a broken folder is reported by GetModel, not by listing
        return out

    def resolve(self, project: str, version: str) -> int:
        """'latest' or a number -> an existing version number."""
        if version in ("", "latest"):
            versions = self.versions(project)
            if not versions:
                raise NotFound(
                    f"project {project!r} has no model yet; train one with `sipctl train {project}`"
                )
            return versions[0]
        if not version.isdigit():
            raise InvalidArgument(f"model version {version!r} is not a number or 'latest'")
        if not (self.project_dir(project) / version / "model.yaml").is_file():
            known = ", ".join(str(v) for v in self.versions(project)) or "none"
            raise NotFound(
                f"model projects/{project}/models/{version} does not exist; versions: {known}"
            )
        return int(version)

    def path(self, project: str, version: int) -> Path:
        return self.project_dir(project) / str(version)

    def get(self, project: str, version: int) -> dict[str, Any]:
        folder = self.path(project, version)
        missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
        if missing:
            raise FailedPrecondition(f"model folder {folder} lacks {', '.join(missing)}")
        try:
            meta = yaml.safe_load((folder / "model.yaml").read_text())
        except yaml.YAMLError as exc:
            raise InvalidArgument(f"{folder / 'model.yaml'} is not valid YAML: {exc}") from exc
        metrics: dict[str, Any] = {}
        if (folder / "metrics.json").is_file():
            try:
                metrics = json.loads((folder / "metrics.json").read_text())
            except ValueError:
                metrics = {}
        return {
            "name": f"projects/{project}/models/{version}",
            "project": project,
            "version": version,
            "path": str(folder),
            "meta": meta,
            "metrics": metrics,
            "yaml": (folder / "model.yaml").read_text(),
            "mtime": (folder / "model.yaml").stat().st_mtime,
        }

    def delete(self, project: str, version: int) -> None:
        folder = self.path(project, version)
        # Rename first so a reader never sees a half-deleted folder as a model.
        trash = folder.parent / f".deleting-{version}"
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)


def parse_model_name(name: str) -> tuple[str, str]:
    match = re.match(r"^projects/([a-z][a-z0-9_-]{0,62})/models/(latest|\d+)$", name or "")
    if not match:
        raise InvalidArgument(
            f"model name {name!r} is not valid; "
            "expected projects/PROJECT/models/VERSION or .../latest"
        )
    return match.group(1), match.group(2)
