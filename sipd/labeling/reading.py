"""Shared pieces of the ROI file readers: the raw feature record and the error collector.

Readers turn a file into RawFeatures (geometry already in pixel coordinates,
attributes untouched); the importer then decides class, split and width.

Failing on the first bad feature would make a user fix a file one error at a
time; instead each feature is checked, the problems are gathered, and one
InvalidArgument names them all (up to a limit).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shapely.geometry.base import BaseGeometry

from sipd.errors import InvalidArgument

_SHOWN = 20  # beyond this, more detail stops helping and the message gets unreadable


@dataclass
class RawFeature:
    source: str  # "file.gpkg#fid 3": what a person needs to find the feature again
    geometry: BaseGeometry  # pixel coordinates
    original_crs: str  # "pixel", "scene" or the file's CRS
    properties: dict[str, Any] = field(default_factory=dict)
    # SIP and labelme files carry one fixed label ("ice_train") instead of attribute fields.
    label: str | None = None


class FeatureProblems:
    def __init__(
        self, path: str | os.PathLike[str], outcome: str = "nothing was imported from"
    ) -> None:
        self.path = str(path)
        self.outcome = outcome
        self.features: set[str] = set()
        self.bad: dict[str, str] = {}

    @contextlib.contextmanager
    def feature(self, source: str, *, prefix: bool = True) -> Iterator[None]:
        """Run the checks of one feature; an InvalidArgument is recorded, not raised.

        `prefix=False` is for messages that already name the feature (validate_roi's).
        """
        self.features.add(source)
        try:
            yield
        except InvalidArgument as exc:
            # The first reason per feature is enough: later ones usually follow from it.
            if source not in self.bad:
                self.bad[source] = f"{source}: {exc}" if prefix else str(exc)

    def raise_if_any(self) -> None:
        if not self.bad:
            return
        lines = list(self.bad.values())
        shown = [f"  - {line}" for line in lines[:_SHOWN]]
        if len(lines) > _SHOWN:
            shown.append(f"  - ... and {len(lines) - _SHOWN} more")
        raise InvalidArgument(
            f"{self.outcome} {self.path}: {len(lines)} of {len(self.features)} "
            "features are invalid (fix them, or remove them from the file, and retry):\n"
            + "\n".join(shown)
        )
