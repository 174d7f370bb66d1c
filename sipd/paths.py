"""Allowed roots: the daemon reads and writes only below configured folders."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from sipd.errors import InvalidArgument, PermissionDenied

# GDAL opens these through its virtual file systems or the network. A caller
# never names them: sipd builds /vsizip/ and /vsitar/ paths itself, for
# archives dropped in watched inboxes, after checking the archive's own path.
_VIRTUAL_PREFIXES = ("/vsi",)


def _is_under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


class PathPolicy:
    """Resolves user-given paths (symlinks, '..') and refuses those outside the roots."""

    def __init__(self, roots: list[str]) -> None:
        self.roots = [Path(os.path.realpath(os.path.expanduser(r))) for r in roots]

    def _roots_text(self) -> str:
        return ", ".join(str(r) for r in self.roots)

    def check(self, path: str, what: str = "path") -> Path:
        if not path:
            raise InvalidArgument(f"{what} is empty; give an absolute path on the daemon's machine")
        if path.startswith(_VIRTUAL_PREFIXES) or "://" in path:
            raise InvalidArgument(
                f"{what} {path!r} is a GDAL virtual file system path or a URL; give a plain "
                "file or folder path (zip/tar archives are accepted as files in watched inboxes)"
            )
        if not os.path.isabs(os.path.expanduser(path)):
            raise InvalidArgument(
                f"{what} {path!r} is relative; give an absolute path (sipctl makes its "
                "arguments absolute; other clients must too)"
            )
        resolved = Path(os.path.realpath(os.path.expanduser(path)))
        if not self.allows(resolved):
            raise PermissionDenied(
                f"{what} {path} (resolved: {resolved}) is outside the allowed roots "
                f"[{self._roots_text()}]; add its folder to `allowed_roots` in sipd.yaml, "
                "SIPD_ALLOWED_ROOTS or `sipd --allowed-root`"
            )
        return resolved

    def allows(self, resolved: Path) -> bool:
        return any(_is_under(resolved, root) for root in self.roots)

    def check_input(self, path: str, what: str = "input") -> Path:
        """`check`, then: the resolved path is a regular file or a folder (never a FIFO,
        device or socket, whose open() would block or read forever)."""
        resolved = self.check(path, what)
        require_regular(resolved, what)
        return resolved

    def check_output(self, path: str, what: str, data_dir: str | os.PathLike[str]) -> Path:
        """`check`, then refuse anything inside the daemon's own data dir: its database,
        lock, models and projects are never a caller's output, whatever the roots say."""
        resolved = self.check(path, what)
        refuse_data_dir(resolved, what, data_dir)
        return resolved

    def check_opened(self, files: Iterable[str], what: str) -> None:
        """Every file GDAL opened for a dataset (VRT sources, sidecars) must be inside
        the roots too: a VRT inside a root must not read a file outside them."""
        for index, name in enumerate(files):
            if not name.startswith("/"):
                # A GDAL connection string (GTIFF_DIR:1:/x.tif, NETCDF:"/x.nc":v) names
                # its file inside; realpath would take it as relative to our own folder.
                raise PermissionDenied(
                    f"{what} references {name!r}, not a plain absolute file path; a VRT or "
                    "sidecar may only name files inside the allowed roots"
                )
            if name.startswith(_VIRTUAL_PREFIXES):
                # A /vsizip/ or /vsitar/ path (sipd's own for inbox archives, or one a VRT
                # names) is checked on its archive; any other virtual file system (network,
                # memory, stdin) is never a file inside the roots.
                name = _archive_of(name, what)
            resolved = Path(os.path.realpath(name))
            if not self.allows(resolved):
                raise PermissionDenied(
                    f"{what} references {name} (resolved: {resolved}), which is outside the "
                    f"allowed roots [{self._roots_text()}]; a VRT or sidecar may only name "
                    "files inside the roots"
                )
            if index > 0:
                # A source or sidecar that is a FIFO would block GDAL when it reads it.
                require_regular(resolved, f"{what}: referenced file")
            if index > 0 and _is_vrt(resolved):
                # GDAL lists a VRT's direct sources only: a VRT among them could reach
                # anywhere unseen, and so could a VRT posing as an .ovr or .msk sidecar.
                raise PermissionDenied(
                    f"{what} references {name}, itself a VRT; a VRT's sources and a "
                    "raster's sidecars must be plain rasters"
                )


_ARCHIVE_PREFIXES = ("/vsizip/", "/vsitar/", "/vsigzip/")


def _is_vrt(path: Path) -> bool:
    """Whether a file holds VRT XML (GDAL picks the VRT driver by content, not by name).
    Only regular files are read: a FIFO among a VRT's sources is refused before."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # a folder; non-regular files were refused before
        with open(path, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False  # GDAL will say it cannot open it
    return b"<vrtdataset" in head.lower()


def _archive_of(name: str, what: str) -> str:
    """The archive file a /vsizip/, /vsitar/ or /vsigzip/ path reads from."""
    if not name.startswith(_ARCHIVE_PREFIXES):
        raise PermissionDenied(
            f"{what} references {name}, a GDAL virtual file system path; only files inside "
            "the allowed roots (and zip/tar archives there) may be read"
        )
    inner = name.split("/", 2)[2]  # drop "/vsizip"
    inner = "/" + inner.lstrip("/")
    # The archive is the longest leading part that exists as a file.
    candidate = Path(inner)
    for part in (candidate, *candidate.parents):
        if part.is_file():
            return str(part)
    raise PermissionDenied(f"{what} references {name}, whose archive does not exist")


def refuse_data_dir(
    resolved: Path, what: str, data_dir: str | os.PathLike[str], *, containing: bool = False
) -> None:
    """With `containing`, a folder that holds the data dir is refused too (an inbox
    above it would take the data dir itself as a unit)."""
    data = Path(os.path.realpath(data_dir))
    if _is_under(resolved, data) or (containing and _is_under(data, resolved)):
        raise PermissionDenied(
            f"{what} {resolved} is inside (or contains) the daemon's data dir {data}; "
            "the data dir holds sipd's database, models and projects and is never an "
            "output, inbox or export target: choose a folder outside it"
        )


def require_regular(path: str | os.PathLike[str], what: str = "input") -> None:
    """Refuse anything but a regular file or a folder, with os.stat BEFORE any open:
    open() on a FIFO blocks until a writer appears."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InvalidArgument(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise InvalidArgument(f"{what} {path} cannot be read: {exc}") from exc
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidArgument(
            f"{what} {path} is not a regular file (a FIFO, device or socket); accepted: "
            "regular files, and folders or archives of them"
        )


def default_roots(data_dir: str) -> list[str]:
    return [data_dir, str(Path.home())]
