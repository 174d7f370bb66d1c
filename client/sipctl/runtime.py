"""Runtime records: how `sipctl` finds the owner token of a local sipd without flags.

A running sipd writes one small JSON file per address it listens on into a
per-user folder (mode 0700, files 0600), the way Jupyter keeps its
runtime files. Only the same user can read them, so discovery gives the
daemon's owner zero-config access and nobody else anything. Both the daemon
and the client compute the folder here (stdlib only: the client installs
without platformdirs).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# Hosts that mean "this machine"; a record for a wildcard listen is also
# filed under them, since that is what a local client dials.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
WILDCARD_HOSTS = ("0.0.0.0", "::", "[::]", "")


def runtime_dir() -> Path:
    """The per-user folder of runtime records."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "sipd"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "sipd" / "runtime"
    return Path.home() / ".local" / "state" / "sipd" / "runtime"


def record_path(address: str) -> Path:
    host, _, port = address.rpartition(":")
    if host == "localhost":
        host = "127.0.0.1"  # one record serves both spellings
    safe = host.strip("[]").replace(":", "_")
    return runtime_dir() / f"sipd-{safe}-{port}.json"


def record_addresses(address: str) -> list[str]:
    """The addresses a listen address is filed under."""
    host, _, port = address.rpartition(":")
    if host in WILDCARD_HOSTS:
        return [address, f"127.0.0.1:{port}"]
    return [address]


def write_records(address: str, data: dict[str, Any]) -> list[Path]:
    folder = runtime_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    written = []
    for name in record_addresses(address):
        path = record_path(name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        # Created 0600 from the start: the token is never readable by others, not even briefly.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({**data, "address": name}, handle)
        os.replace(tmp, path)
        written.append(path)
    return written


def find_token(address: str) -> str | None:
    """The token of the sipd listening on `address` if this user runs it, else None."""
    try:
        data = json.loads(record_path(address).read_text())
    except (OSError, ValueError):
        return None  # no record, or one this user may not read: no token
    pid = data.get("pid")
    if isinstance(pid, int) and not _alive(pid):
        return None  # left by a daemon that was killed; its port may be someone else's now
    token = data.get("token")
    return token if isinstance(token, str) and token else None


def _alive(pid: int) -> bool:
    if sys.platform == "win32":
        return True  # os.kill would terminate the process there, not probe it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
