"""Where things are in the model repository, and how a version appears (models/README.md).

    DATA_DIR/models/<project>/<version>/      one published version (never changes)
    DATA_DIR/models/<project>/.building-*     a version being built (staging)
    DATA_DIR/models/<project>/.deleted-<N>    tombstone: version N existed and was deleted

Torch-free and onnxruntime-free: the daemon lists and resolves models with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from sipd.errors import InvalidArgument, SipError

CARD_FILE = "model.yaml"
GRAPH_FILE = "model.onnx"
# Optional half-precision variant of model.onnx in the same folder (used on CUDA only).
FP16_FILE = "model.fp16.onnx"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "checkpoint.pt"
# A forest version keeps its fitted trees here instead (sipd/training/forest.py).
FOREST_FILE = "forest.joblib"
TRAIN_LOG = "train.log"
# One JSON file per evaluation of the version: the only thing added after publishing.
EVALUATIONS_DIR = "evaluations"
REQUIRED_FILES = (GRAPH_FILE, CARD_FILE)

_STAGING_PREFIX = ".building-"
_TOMBSTONE_PREFIX = ".deleted-"
_NAME = re.compile(r"^projects/([a-z][a-z0-9_-]{0,62})/models/(latest|\d+)$")


def version_name(project: str, version: int) -> str:
    """The resource name of a version: projects/<project>/models/<version>."""
    return f"projects/{project}/models/{version}"


def parse_model_name(name: str) -> tuple[str, str]:
    """'projects/P/models/V' (V a number or 'latest') -> (P, V as text)."""
    match = _NAME.match(name or "")
    if not match:
        raise InvalidArgument(
            f"model name {name!r} is not valid; "
            "expected projects/PROJECT/models/VERSION or .../latest"
        )
    return match.group(1), match.group(2)


def name_of_folder(folder: Path) -> str:
    """The resource name a published folder has by its place: <project>/<version>."""
    folder = Path(folder)
    if not folder.name.isdigit():
        raise InvalidArgument(
            f"{folder} is not a published model version (its folder name must be the "
            "version number, inside the project's models folder: <project>/<version>)"
        )
    return version_name(folder.parent.name, int(folder.name))


def published_versions(project_root: Path) -> list[int]:
    """Version numbers with a model card, newest first."""
    if not project_root.is_dir():
        return []
    return sorted(
        (
            int(p.name)
            for p in project_root.iterdir()
            if p.name.isdigit() and (p / CARD_FILE).is_file()
        ),
        reverse=True,
    )


def next_version(project_root: Path) -> int:
    """1 + the highest version number ever used here, deleted ones included.

    A number is never given to a second artifact: a watch or a client that
    pinned version N must not silently get another model after N is deleted.
    """
    used = [0]
    if project_root.is_dir():
        for p in project_root.iterdir():
            if p.name.isdigit():
                used.append(int(p.name))
            elif p.name.startswith(_TOMBSTONE_PREFIX) and p.name[len(_TOMBSTONE_PREFIX):].isdigit():
                used.append(int(p.name[len(_TOMBSTONE_PREFIX):]))
    return max(used) + 1


@contextlib.contextmanager
def staging_folder(project_root: Path) -> Iterator[Path]:
    """A dot-folder inside project_root to build a version in; removed unless published.

    Same file system as the versions, so publishing is one atomic rename; the
    dot keeps it out of listings while it is incomplete.
    """
    project_root.mkdir(parents=True, exist_ok=True)
    tmp = project_root / f"{_STAGING_PREFIX}{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish(staging: Path, project_root: Path, write_card: Callable[[Path, int], None]) -> int:
    """Rename `staging` to the next free version number and return that number.

    `write_card(staging, version)` writes the files that name the version (the
    model card) just before each attempt. Renaming a directory onto an existing
    non-empty one fails, so if another run takes the number meanwhile, the next
    number is tried; nothing that is already published is ever replaced.
    """
    for _ in range(100):
        version = next_version(project_root)
        write_card(staging, version)
        target = project_root / str(version)
        if target.exists():
            continue
        try:
            os.rename(staging, target)
        except OSError:
            # A folder of that name appeared between the check and the rename.
            if target.exists():
                continue
            raise
        return version
    raise SipError(f"could not allocate a model version in {project_root} after 100 tries")


def delete_version(folder: Path) -> None:
    """Remove a published version as a whole and leave a tombstone for its number."""
    project_root, version = folder.parent, folder.name
    # The tombstone before the folder goes: at no moment is the number free again.
    (project_root / f"{_TOMBSTONE_PREFIX}{version}").touch()
    # Rename before removing, so a reader never sees a half-deleted folder as a model.
    trash = project_root / f".deleting-{version}-{uuid.uuid4().hex[:8]}"
    folder.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def write_new_file(path: Path, text: str) -> Path:
    """Write `path`, which must not exist yet, atomically (temp file + link).

    The link fails if the name is taken, so an existing file is never
    replaced: what is published or recorded stays as it was written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.write_text(text, encoding="utf-8")
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            # A file system without hard links: check, then rename (the names
            # are unique, so the window between the two does not matter).
            if path.exists():
                raise FileExistsError(f"{path} exists; a record is never replaced") from None
            os.rename(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path
