from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Sipd, train_tiny_model


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


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One small model, trained once per session, for the tests that only need *a* trained
    model (prediction, watches, model errors). It is a source: install a copy of it with
    `tests.support.install_model`, never change it in place."""
    folder = train_tiny_model(tmp_path_factory.mktemp("trained_model"))
    before = _digests(folder)
    yield folder
    # Tests sharing it must not see each other's changes: a change in place is an error.
    assert _digests(folder) == before, "a test changed the shared trained model in place"


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to make the test certificates")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=sipd test CA", cwd=d)  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                 "-extfile", f"{name}.ext", cwd=d)  # fmt: skip
    return d
