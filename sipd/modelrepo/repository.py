"""The model repository: DATA_DIR/models/<project>/<version>/ folders (models/README.md).

The folders themselves are the source of truth, not the database: a folder
copied in from another machine is a model version here at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from sipd.errors import FailedPrecondition, InvalidArgument, NotFound
from sipd.modelrepo.card import ModelCard, load_card
from sipd.modelrepo.evaluations import Evaluation, list_evaluations
from sipd.modelrepo.layout import (
    METRICS_FILE,
    REQUIRED_FILES,
    delete_version,
    published_versions,
    version_name,
)


class ModelVersion(BaseModel):
    """One published version as the repository reads it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # projects/<project>/models/<version>, from where the folder is
    project: str
    version: int
    path: Path
    card: ModelCard
    card_yaml: str  # model.yaml as written (format 1 cards too, unconverted)
    # metrics.json "train" (history, best_epoch, best_val_accuracy, selection,
    # seconds); None when the version has no training metrics (not trained by sipd).
    training: dict[str, Any] | None
    evaluations: tuple[Evaluation, ...]  # oldest first
    create_time: float  # seconds since the epoch, from the card's `created`

    @property
    def latest_evaluation(self) -> Evaluation | None:
        return self.evaluations[-1] if self.evaluations else None


def read_version(folder: Path, project: str, version: int) -> ModelVersion:
    """Read a version folder: checked card, training metrics, evaluation records."""
    missing = [f for f in REQUIRED_FILES if not (folder / f).is_file()]
    if missing:
        raise FailedPrecondition(
            f"model folder {folder} is incomplete: missing {', '.join(missing)} "
            "(a model folder holds model.onnx and model.yaml)"
        )
    card, text = load_card(folder)
    return ModelVersion(
        name=version_name(project, version),
        project=project,
        version=version,
        path=folder,
        card=card,
        card_yaml=text,
        training=read_training_metrics(folder),
        evaluations=list_evaluations(folder),
        create_time=card.created_timestamp,
    )


def read_training_metrics(model_dir: str | Path) -> dict[str, Any] | None:
    """The "train" part of a version's metrics.json, or None when it has none.

    metrics.json is informative (the card is what makes a version usable): a
    missing or damaged one reads as "no training metrics", not as a broken
    model. Its "test" part, where format-1 versions kept a test report, is
    listed with the evaluations instead.
    """
    try:
        data = json.loads((Path(model_dir) / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    train = data.get("train") if isinstance(data, dict) else None
    return train if isinstance(train, dict) else None


class ModelRepository:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def project_dir(self, project: str) -> Path:
        return self.root / project

    def versions(self, project: str) -> list[int]:
        """Published version numbers, newest first."""
        return published_versions(self.project_dir(project))

    def list(self, project: str) -> list[ModelVersion]:
        out = []
        for version in self.versions(project):
            try:
                out.append(self.get(project, version))
            except (InvalidArgument, FailedPrecondition):
                continue  # a broken folder is reported by GetModel, not by listing
        return out

    def resolve(self, project: str, version: str) -> int:
        """'latest' (or '') or a number -> an existing version number."""
        if version in ("", "latest"):
            versions = self.versions(project)
            if not versions:
                raise NotFound(
                    f"project {project!r} has no model yet; train one with `sipctl train {project}`"
                )
            return versions[0]
        if not version.isdigit():
            raise InvalidArgument(f"model version {version!r} is not a number or 'latest'")
        if int(version) not in self.versions(project):
            known = ", ".join(str(v) for v in self.versions(project)) or "none"
            raise NotFound(
                f"model projects/{project}/models/{version} does not exist; versions: {known}"
            )
        return int(version)

    def path(self, project: str, version: int) -> Path:
        return self.project_dir(project) / str(version)

    def get(self, project: str, version: int) -> ModelVersion:
        folder = self.path(project, version)
        if not folder.is_dir():
            raise NotFound(f"model {version_name(project, version)} does not exist")
        return read_version(folder, project, version)

    def delete(self, project: str, version: int) -> None:
        """Remove a version as a whole; its number is never given to another model."""
        folder = self.path(project, version)
        if not folder.is_dir():
            raise NotFound(f"model {version_name(project, version)} does not exist")
        delete_version(folder)
