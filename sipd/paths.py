"""Allowed roots: the daemon reads and writes only below configured folders."""

from __future__ import annotations

import os
from pathlib import Path

from sipd.errors import InvalidArgument, PermissionDenied


class PathPolicy:
    """Resolves user-given paths (symlinks, '..') and refuses those outside the roots."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = [Path(os.path.realpath(os.path.expanduser(r))) for r in roots]

    def check(self, path: str, what: str = "path") -> Path:
        if not path:
            raise InvalidArgument(f"{what} is empty; give an absolute path on the daemon's machine")
        if not os.path.isabs(os.path.expanduser(path)):
            raise InvalidArgument(
                f"{what} {path!r} is relative; give an absolute path (sipctl makes its "
                "arguments absolute; other clients must too)"
            )
        resolved = Path(os.path.realpath(os.path.expanduser(path)))
        if not any(resolved == root or resolved.is_relative_to(root) for root in self.roots):
            roots = ", ".join(str(r) for r in self.roots)
            raise PermissionDenied(
                f"{what} {path} (resolved: {resolved}) is outside the allowed roots [{roots}]; "
                "add its folder to `allowed_roots` in sipd.yaml, SIPD_ALLOWED_ROOTS or "
                "`sipd --allowed-root`"
            )
        return resolved


def default_roots(data_dir: str) -> list[str]:
    return [data_dir, str(Path.home())]
