"""Bearer tokens and their scopes; the owner token in the data dir."""

from __future__ import annotations

import enum
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipd.errors import InvalidArgument

OWNER_TOKEN_FILE = "sipd.token"


class Scope(enum.IntEnum):
    """Ordered: a token with a scope has every lower one too."""

    READ = 1
    LABEL = 2  # label and train
    ADMIN = 3

    @classmethod
    def parse(cls, name: str, where: str) -> Scope:
        aliases = {"read": cls.READ, "label": cls.LABEL, "train": cls.LABEL, "admin": cls.ADMIN}
        try:
            return aliases[str(name).strip().lower()]
        except KeyError:
            raise InvalidArgument(
                f"{where}: scope {name!r} is not one of: read, label (or train), admin"
            ) from None

    @property
    def label(self) -> str:
        return {Scope.READ: "read", Scope.LABEL: "label", Scope.ADMIN: "admin"}[self]


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # "UNAUTHENTICATED" or "PERMISSION_DENIED" when refused; the server maps it to a status.
    code: str = ""
    message: str = ""
    who: str = ""


@dataclass(frozen=True)
class _Token:
    name: str
    secret: str
    scope: Scope


def load_owner_token(data_dir: Path) -> str:
    """The owner's admin token, DATA_DIR/sipd.token (0600), made at first start."""
    path = data_dir / OWNER_TOKEN_FILE
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        # A copied data dir may have lost its mode; the token must stay the owner's.
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return token
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):
        # `sipctl --token -x...` would read it as an option (1 token in 64 did; a
        # CI run failed on one).
        token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # Created 0600 from the start, renamed into place: never readable by others, never half.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(tmp, path)
    return token


class Access:
    """Which tokens exist and what each may do."""

    def __init__(self, tokens: Iterable[_Token]) -> None:
        self._tokens = list(tokens)

    @classmethod
    def from_config(cls, owner_token: str, entries: list[Mapping[str, Any]]) -> Access:
        tokens = [_Token("owner", owner_token, Scope.ADMIN)]
        for i, entry in enumerate(entries):
            tokens.append(_parse_entry(entry, f"access.tokens[{i}]"))
        return cls(tokens)

    def check(self, method: str, required: Scope | None, authorization: str | None) -> Decision:
        if required is None:
            return Decision(True, who="anyone")
        if not authorization:
            return Decision(
                False,
                "UNAUTHENTICATED",
                f"{method} needs a token with the {required.label} scope and the call carried "
                "none; send metadata 'authorization: Bearer TOKEN' (sipctl: --token or "
                "SIPCTL_TOKEN; the daemon's owner: DATA_DIR/sipd.token)",
            )
        kind, _, secret = authorization.strip().partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            return Decision(
                False,
                "UNAUTHENTICATED",
                "the authorization metadata must read 'Bearer TOKEN'",
            )
        token = self._match(secret.strip())
        if token is None:
            return Decision(
                False,
                "UNAUTHENTICATED",
                f"{method}: the token is not one this sipd knows (see access.tokens in "
                "sipd.yaml; the owner's is DATA_DIR/sipd.token)",
            )
        if token.scope < required:
            return Decision(
                False,
                "PERMISSION_DENIED",
                f"{method} needs the {required.label} scope; token {token.name!r} has "
                f"{token.scope.label} only",
                who=token.name,
            )
        return Decision(True, who=token.name)

    def _match(self, secret: str) -> _Token | None:
        found = None
        # Compare with every token in constant time: timing tells nothing about which is near.
        for token in self._tokens:
            if hmac.compare_digest(token.secret.encode(), secret.encode()):
                found = token
        return found


def _parse_entry(entry: Mapping[str, Any], where: str) -> _Token:
    if not isinstance(entry, Mapping):
        raise InvalidArgument(f"{where} must be a mapping with name, token or token_file, scopes")
    unknown = set(entry) - {"name", "token", "token_file", "scopes"}
    if unknown:
        raise InvalidArgument(
            f"{where} has unknown keys {sorted(unknown)}; known: name, token, token_file, scopes"
        )
    name = str(entry.get("name") or f"token{where[len('access.tokens') :]}")
    secret = str(entry.get("token") or "").strip()
    token_file = str(entry.get("token_file") or "")
    if bool(secret) == bool(token_file):
        raise InvalidArgument(f"{where} ({name}) needs exactly one of token and token_file")
    if token_file:
        try:
            secret = Path(token_file).expanduser().read_text().strip()
        except OSError as exc:
            raise InvalidArgument(
                f"{where} ({name}): cannot read token_file {token_file}: {exc.strerror}"
            ) from None
    if len(secret) < 16:
        raise InvalidArgument(
            f"{where} ({name}): a token must be at least 16 characters (e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    scopes = entry.get("scopes", ["read"])
    if isinstance(scopes, str):
        scopes = [scopes]
    if not scopes:
        raise InvalidArgument(f"{where} ({name}) needs scopes: read, label or admin")
    scope = max(Scope.parse(s, f"{where} ({name})") for s in scopes)
    return _Token(name, secret, scope)
