from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Sipd


@pytest.fixture
def sipd(tmp_path: Path) -> Iterator[Sipd]:
    """A fresh daemon whose allowed root is this test's tmp_path."""
    daemon = Sipd(tmp_path / "state", roots=[tmp_path]).start()
    yield daemon
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.stop()


@pytest.fixture(scope="module")
def shared_sipd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    """One daemon for a module of tests that don't disturb each other."""
    root = tmp_path_factory.mktemp("shared")
    daemon = Sipd(root / "state", roots=[root]).start()
    yield daemon
    if daemon.proc is not None and daemon.proc.poll() is None:
        daemon.stop()
