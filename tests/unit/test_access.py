"""Token scopes and the RPC -> scope table (sipd.access), without a daemon."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sipapi.v1 import (
    dataset_pb2,
    job_pb2,
    labeling_pb2,
    prediction_pb2,
    preprocess_pb2,
    project_pb2,
    system_pb2,
    training_pb2,
    watch_pb2,
)

from sipd.access import Access, Scope, load_owner_token, required_scope
from sipd.access.policy import SCOPES
from sipd.errors import InvalidArgument

MODULES = [dataset_pb2, job_pb2, labeling_pb2, prediction_pb2, preprocess_pb2, project_pb2,
           system_pb2, training_pb2, watch_pb2]  # fmt: skip


def test_every_rpc_has_a_scope_chosen_on_purpose() -> None:
    # A new RPC without an entry would silently need admin: the table must name each one.
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods - set(SCOPES) == set()
    assert required_scope("/grpc.health.v1.Health/Check") is None
    assert required_scope("/sip.v1.Unknown/Thing") == Scope.ADMIN


def test_owner_token_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    token = load_owner_token(tmp_path)
    path = tmp_path / "sipd.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 32
    path.chmod(0o644)
    assert load_owner_token(tmp_path) == token  # kept across restarts
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # and made private again


def test_scopes_are_ordered(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("file-token-0123456789\n")
    access = Access.from_config(
        "owner-token-0123456789",
        [{"name": "r", "token_file": str(tmp_path / "t"), "scopes": "read"},
         {"name": "t", "token": "train-token-0123456789", "scopes": ["train"]}],
    )  # fmt: skip
    train = "/sip.v1.TrainingService/Train"
    assert access.check(train, Scope.LABEL, "Bearer train-token-0123456789").allowed
    assert access.check(train, Scope.LABEL, "Bearer owner-token-0123456789").allowed
    denied = access.check(train, Scope.LABEL, "Bearer file-token-0123456789")
    assert denied.code == "PERMISSION_DENIED" and "'r' has read only" in denied.message
    assert access.check(train, Scope.LABEL, None).code == "UNAUTHENTICATED"
    assert access.check(train, Scope.LABEL, "Basic x").code == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"token": "short"}, "at least 16"),
        ({"token": "x" * 20, "scopes": ["root"]}, "not one of"),
        ({"token": "x" * 20, "token_file": "/f"}, "exactly one"),
        ({"token": "x" * 20, "role": "admin"}, "unknown keys"),
        ({"token_file": "/does/not/exist"}, "cannot read token_file"),
    ],
)
def test_bad_token_entries_name_the_problem(entry: dict, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        Access.from_config("owner-token-0123456789", [entry])


def test_owner_token_never_starts_like_an_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    drawn = iter(["-looks-like-a-flag", "-again", "fine-token"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: next(drawn))
    assert load_owner_token(tmp_path) == "fine-token"
