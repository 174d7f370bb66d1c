from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from sipd.config import Config, load_config
from sipd.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2]


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _keys(v, f"{prefix}{k}.")
    return out


def test_config_file_lists_every_option_with_its_default() -> None:
    documented = yaml.safe_load((ROOT / "config" / "sipd.yaml").read_text())
    assert _keys(documented) == _keys(dataclasses.asdict(Config()))
    assert load_config(str(ROOT / "config" / "sipd.yaml"), env={}).jobs == Config().jobs


def test_layers_override_in_order(tmp_path: Path) -> None:
    cfg = tmp_path / "sipd.yaml"
    cfg.write_text("listen: 127.0.0.1:6000\njobs: {queue_limit: 5, cancel_grace_seconds: 3}\n")
    env = {
        "SIPD_CONFIG": str(cfg),
        "SIPD_LISTEN": "127.0.0.1:7000",
        "SIPD_JOBS__QUEUE_LIMIT": "7",
        "SIPD_DATA_DIR": str(tmp_path / "d"),
        "SIPD_ALLOWED_ROOTS": f"/a:{tmp_path}",
    }
    c = load_config(env=env, overrides={"listen": "127.0.0.1:8000"})
    assert c.listen == "127.0.0.1:8000"  # flag beats env
    assert c.jobs.queue_limit == 7  # env beats file
    assert c.jobs.cancel_grace_seconds == 3.0  # file beats default
    assert c.jobs.shutdown_grace_seconds == 20.0  # default
    assert c.allowed_roots == ["/a", str(tmp_path)]
    assert c.data_dir == str(tmp_path / "d")


def test_defaults_need_no_file() -> None:
    c = load_config(env={})
    assert c.listen == "127.0.0.1:50051" and c.device == "auto" and c.data_dir


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("lisen: x\n", "unknown option 'lisen'"),
        ("jobs: {queue_limt: 1}\n", "unknown option 'queue_limt'"),
        ("jobs: {queue_limit: many}\n", "jobs.queue_limit"),
        ("device: gpu\n", "auto, cpu, cuda, cuda:N"),
        ("listen: localhost\n", "HOST:PORT"),
        ("[1, 2]\n", "mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(InvalidArgument, match=None) as err:
        load_config(str(cfg), env={})
    assert needle in str(err.value)


def test_access_and_tls_options(tmp_path: Path) -> None:
    env = {
        "SIPD_ACCESS__TOKENS": "[{name: ci, token_file: /t, scopes: [read]}]",
        "SIPD_TLS__CERT": "/c.pem",
        "SIPD_TLS__KEY": "/k.pem",
        "SIPD_INSECURE_ALLOW_REMOTE_WITHOUT_TLS": "true",
    }
    c = load_config(env=env, overrides={"tls": {"client_ca": "/ca.pem"}})
    assert c.access.tokens == [{"name": "ci", "token_file": "/t", "scopes": ["read"]}]
    assert (c.tls.cert, c.tls.key, c.tls.client_ca) == ("/c.pem", "/k.pem", "/ca.pem")
    assert c.insecure_allow_remote_without_tls is True
    assert load_config(env={}).insecure_allow_remote_without_tls is False


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"tls": {"cert": "/c.pem"}}, "tls.cert and tls.key go together"),
        ({"tls": {"client_ca": "/ca.pem"}}, "needs tls.cert"),
    ],
)
def test_bad_tls_options(overrides: dict, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        load_config(env={}, overrides=overrides)
