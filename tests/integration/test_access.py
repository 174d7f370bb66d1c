"""Access control end to end: a real sipd, real gRPC, real TLS (certificates made by the
openssl CLI here), sipctl as a subprocess finding (or not finding) the owner token."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sipapi.v1 import project_pb2, system_pb2
from sipctl import runtime
from sipctl.client import Client

from tests.support import Sipd

READER_TOKEN = "reader-token-0123456789abcdef"
LABELER_TOKEN = "labeler-token-0123456789abcdef"
TOKENS_ENV = {
    "SIPD_ACCESS__TOKENS": (
        f"[{{name: dashboard, token: {READER_TOKEN}, scopes: [read]}}, "
        f"{{name: analyst, token: {LABELER_TOKEN}, scopes: [label]}}]"
    )
}


def _sipctl(
    address: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIPCTL_")}
    return subprocess.run(
        [sys.executable, "-m", "sipctl", "--address", address, *args],
        capture_output=True, text=True, timeout=120, env={**base, **(env or {})},
    )  # fmt: skip


def _stranger_env(tmp_path: Path) -> dict[str, str]:
    """Another user's environment (or another machine's): a home with no runtime records."""
    home = tmp_path / "stranger-home"
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "XDG_RUNTIME_DIR": ""}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    # World-traversable folders, so that only the token file's own mode protects it.
    root = Path(tempfile.mkdtemp(prefix="sipd-access-"))
    root.chmod(0o755)
    d = Sipd(root / "state", roots=[root], env=TOKENS_ENV).start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop()
    shutil.rmtree(root, ignore_errors=True)


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()  # type: ignore[operator]
    return err.value.code(), err.value.details()


def test_owner_token_is_private_and_sipctl_finds_it(daemon: Sipd) -> None:
    token_file = daemon.data_dir / "sipd.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    record = runtime.record_path(daemon.address)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert stat.S_IMODE(record.parent.stat().st_mode) == 0o700
    # The owner's `sipctl status` with no flags (no --token, no SIPCTL_TOKEN).
    result = _sipctl(daemon.address, "status")
    assert result.returncode == 0, result.stderr
    assert "worker:" in result.stdout


def test_call_without_token_is_unauthenticated_with_a_sentence(
    daemon: Sipd, tmp_path: Path
) -> None:
    anonymous = Client(daemon.address, timeout=10)
    try:
        code, details = _code(
            lambda: anonymous.system.GetStatus(system_pb2.GetStatusRequest(), timeout=10)
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "needs a token with the read scope" in details and "authorization" in details
        # Health stays open: probes carry no token, and it tells nothing but SERVING.
        health = health_pb2_grpc.HealthStub(anonymous.channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # A streaming call is refused the same way.
        code, _ = _code(lambda: list(anonymous.jobs.WatchJob(_watch_request(), timeout=10)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        anonymous.close()
    # sipctl of someone without the token: refused, and told what to do.
    result = _sipctl(daemon.address, "status", env=_stranger_env(tmp_path))
    assert result.returncode == 1
    assert "UNAUTHENTICATED" in result.stderr and "--token" in result.stderr


def _watch_request() -> object:
    from sipapi.v1 import job_pb2

    return job_pb2.WatchJobRequest(name="jobs/1")


def test_wrong_token_and_wrong_scope(daemon: Sipd, tmp_path: Path) -> None:
    wrong = Client(daemon.address, timeout=10, token="not-a-token-of-this-daemon")
    reader = Client(daemon.address, timeout=10, token=READER_TOKEN)
    labeler = Client(daemon.address, timeout=10, token=LABELER_TOKEN)
    try:
        code, details = _code(
            lambda: wrong.projects.ListProjects(project_pb2.ListProjectsRequest(), timeout=10)
        )
        assert code == grpc.StatusCode.UNAUTHENTICATED and "not one this sipd knows" in details

        reader.projects.ListProjects(project_pb2.ListProjectsRequest(), timeout=10)
        code, details = _code(
            lambda: reader.projects.CreateProject(
                project_pb2.CreateProjectRequest(project_id="nope"), timeout=10
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "needs the label scope" in details and "'dashboard' has read only" in details

        code, details = _code(
            lambda: labeler.projects.DeleteProject(
                project_pb2.DeleteProjectRequest(name="projects/nope"), timeout=10
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED and "admin scope" in details
    finally:
        for c in (wrong, reader, labeler):
            c.close()
    # The same through sipctl --token / SIPCTL_TOKEN, from a home without records.
    env = _stranger_env(tmp_path)
    assert _sipctl(daemon.address, "--token", READER_TOKEN, "status", env=env).returncode == 0
    env_token = {**env, "SIPCTL_TOKEN": READER_TOKEN}
    assert _sipctl(daemon.address, "status", env=env_token).returncode == 0


def test_a_second_local_user_cannot_read_the_token(daemon: Sipd) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    nobody = 65534

    def as_nobody() -> None:
        os.setgid(nobody)
        os.setuid(nobody)

    for path in (daemon.data_dir / "sipd.token", runtime.record_path(daemon.address)):
        # /bin/cat: this test's Python lives where another user may not execute it.
        result = subprocess.run(
            ["cat", str(path)], capture_output=True, text=True, preexec_fn=as_nobody, cwd="/"
        )
        assert result.returncode != 0 and "Permission denied" in result.stderr, path
        assert daemon.token not in result.stdout


def test_remote_client_over_tls_with_token(pki: Path, tmp_path: Path) -> None:
    # All interfaces: allowed because TLS is on (a "remote" client dials it).
    d = Sipd(
        tmp_path / "state", roots=[tmp_path], listen="0.0.0.0:0", tls_ca=pki / "ca.pem",
        extra_args=["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")],
        env=TOKENS_ENV,
    ).start()  # fmt: skip
    try:
        remote = _stranger_env(tmp_path)  # the other machine has no runtime record
        tls = ["--tls-ca", str(pki / "ca.pem")]
        ok = _sipctl(d.address, *tls, "--token", READER_TOKEN, "status", env=remote)
        assert ok.returncode == 0, ok.stderr
        refused = _sipctl(d.address, *tls, "status", env=remote)
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr
        # Plain text to a TLS port gets nowhere.
        plain = _sipctl(d.address, "--token", READER_TOKEN, "--timeout", "5", "status",
                        env=remote)  # fmt: skip
        assert plain.returncode == 1
    finally:
        d.stop()


@pytest.mark.slow  # daemons of their own; TLS with a token stays in the fast tier
def test_mtls_requires_a_client_certificate(pki: Path, tmp_path: Path) -> None:
    d = Sipd(
        tmp_path / "state", roots=[tmp_path], tls_ca=pki / "ca.pem",
        extra_args=["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                    "--tls-client-ca", str(pki / "ca.pem")],
    )  # fmt: skip
    # The harness's own client needs the certificate too.
    d.client_cert = (pki / "client.pem", pki / "client.key")
    d.start()
    try:
        remote = _stranger_env(tmp_path)
        tls = ["--tls-ca", str(pki / "ca.pem"), "--token", d.token, "--timeout", "5"]
        cert = ["--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")]
        ok = _sipctl(d.address, *tls, *cert, "status", env=remote)
        assert ok.returncode == 0, ok.stderr
        assert _sipctl(d.address, *tls, "status", env=remote).returncode == 1
    finally:
        d.stop()


@pytest.mark.slow  # daemons of their own; TLS with a token stays in the fast tier
def test_non_loopback_without_tls_is_refused_unless_insecure_flag(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPD_")}
    args = [sys.executable, "-m", "sipd", "--data-dir", str(tmp_path / "refused"),
            "--metrics-listen", "", "--studio-listen", "", "--listen", "0.0.0.0:0"]  # fmt: skip
    refused = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode != 0
    assert "without TLS" in refused.stderr
    assert "--insecure-allow-remote-without-tls" in refused.stderr

    d = Sipd(
        tmp_path / "state", roots=[tmp_path], listen="0.0.0.0:0",
        extra_args=["--insecure-allow-remote-without-tls"],
    ).start()  # fmt: skip
    try:
        assert "without TLS" in d.log()  # a warning in the log
        # Still closed without a token; the owner's sipctl still works without flags.
        result = _sipctl(d.address, "status", env=_stranger_env(tmp_path))
        assert result.returncode == 1 and "UNAUTHENTICATED" in result.stderr
        assert _sipctl(d.address, "status").returncode == 0
    finally:
        d.stop()
    # A clean stop takes its runtime records away.
    assert not runtime.record_path(d.address).exists()
