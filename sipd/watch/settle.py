"""Deciding when a unit is complete: unchanged for a quiet period, or declared by a sentinel."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sipd.watch.files import Signature, has_sentinel, signature


@dataclass
class _Seen:
    signature: Signature | None
    since: float  # monotonic time the signature last changed


class Settler:
    """Units seen in one inbox that are not queued yet.

    Each `poll` re-reads every pending unit: a writer appending in chunks
    keeps changing size or mtime, so the unit stays pending until it has
    been still for `quiet` seconds. Nothing here trusts event order or
    timestamps from the writer's clock, which is what makes rescans of
    network filesystems work the same as local events.
    """

    def __init__(
        self,
        quiet: float,
        require_sentinel: bool,
        read_signature: Callable[[Path], Signature | None] = signature,
        sentinel: Callable[[Path, int], bool] = has_sentinel,
    ) -> None:
        self.quiet = quiet
        self.require_sentinel = require_sentinel
        self._signature = read_signature
        self._sentinel = sentinel
        self._pending: dict[Path, _Seen] = {}
        # Units still for `quiet` seconds but held for lack of a (fresh) sentinel at the last
        # poll: "complete by size, waiting for the writer's word", seen from outside.
        self.awaiting_sentinel = 0

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, unit: object) -> bool:
        return unit in self._pending

    def touch(self, unit: Path, now: float) -> None:
        """Something happened at `unit`: (re)start watching it."""
        if unit not in self._pending:
            self._pending[unit] = _Seen(None, now)

    def forget(self, unit: Path) -> None:
        self._pending.pop(unit, None)

    def poll(self, now: float) -> list[tuple[Path, Signature]]:
        """Units that are complete now, with the signature they were taken at."""
        ready = []
        awaiting = 0
        for unit, seen in list(self._pending.items()):
            sig = self._signature(unit)
            if sig is None:
                del self._pending[unit]  # gone: deleted, or renamed to another unit
                continue
            if sig != seen.signature:
                seen.signature, seen.since = sig, now
            still = now - seen.since >= self.quiet
            # A sentinel is the writer saying "complete": no need to wait.
            if (still and not self.require_sentinel) or self._sentinel(unit, sig[1]):
                ready.append((unit, sig))
            elif still:
                awaiting += 1  # only with require_sentinel: quiet alone does not release it
        self.awaiting_sentinel = awaiting
        return ready
