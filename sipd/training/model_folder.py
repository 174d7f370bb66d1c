"""Model repository folders: integer versions that appear atomically (models/README.md)."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from sipd.errors import SipError

MODEL_FORMAT = "sipd-model/1"
def next_version(models_root: Path) -> int:
    """1 + the highest integer folder name (versions count from 1 per project)."""
    versions = [int(p.name) for p in models_root.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


@contextlib.contextmanager
def staging_folder(models_root: Path) -> Iterator[Path]:
    """A dot-folder inside models_root to build a model in; removed unless published."""
    models_root.mkdir(parents=True, exist_ok=True)
    tmp = models_root / f".building-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def publish(staging: Path, models_root: Path, write_versioned: Callable[[int], None]) -> int:
    """Rename `staging` to the next free version and return it.

    `write_versioned(version)` writes the files that name the version
    (model.yaml) just before each attempt. If another run takes the number
    meanwhile, the rename fails and the next number is tried.
    """
    for _ in range(100):
        version = next_version(models_root)
        write_versioned(version)
        target = models_root / str(version)
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
    raise SipError(f"could not allocate a model version in {models_root} after 100 tries")


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100))
