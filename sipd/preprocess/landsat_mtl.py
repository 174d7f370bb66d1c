"""The Landsat Collection 2 metadata file (MTL), read by group.

USGS delivers the same metadata three ways: ODL text (`_MTL.txt`, "GROUP = NAME ...
END_GROUP = NAME"), XML (`_MTL.xml`) and JSON (`_MTL.json`), all with the root group
LANDSAT_METADATA_FILE holding named groups of KEY = VALUE (Landsat 8-9 Data Format
Control Book, LSDS-1822, and LSDS-1823 for 4-7). Keys repeat across groups: a Level-2
MTL holds REFLECTANCE_MULT_BAND_n in LEVEL2_SURFACE_REFLECTANCE_PARAMETERS (the
surface reflectance scale) and again in LEVEL1_RADIOMETRIC_RESCALING (the Level-1 TOA
rescaling of the scene it was made from). A flat key lookup would silently take one
of them, so every value here is read from a named group.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sipd.errors import InvalidArgument
from sipd.preprocess.sar_xml import local

ROOT = "LANDSAT_METADATA_FILE"
_LINE = re.compile(r"^\s*([A-Za-z0-9_]+)\s*=\s*(.*?)\s*$")


@dataclass(frozen=True)
class Mtl:
    """The groups of an MTL: {group name: {key: value as text}}."""

    groups: dict[str, dict[str, str]]
    name: str  # the file it came from, for messages

    def find(self, group: str, key: str) -> str | None:
        return self.groups.get(group, {}).get(key)

    def get(self, group: str, key: str) -> str:
        value = self.find(group, key)
        if value is None or value == "":
            raise InvalidArgument(
                f"metadata file {self.name} has no {key} in group {group}; "
                "a Landsat Collection 2 MTL as delivered by USGS is needed"
            )
        return value

    def number(self, group: str, key: str) -> float:
        text = self.get(group, key)
        try:
            return float(text)
        except ValueError:
            raise InvalidArgument(
                f"metadata file {self.name}: {group}/{key} = {text!r} is not a number"
            ) from None


def parse_mtl(data: bytes, name: str) -> Mtl:
    """Parse an MTL (text, XML or JSON, told apart by content)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidArgument(f"metadata file {name} is not text (UTF-8)") from None
    head = text.lstrip()[:1]
    if head == "<":
        groups = _parse_xml(text, name)
    elif head == "{":
        groups = _parse_json(text, name)
    else:
        groups = _parse_odl(text, name)
    if not groups:
        raise InvalidArgument(f"metadata file {name} holds no metadata groups")
    return Mtl(groups, name)


def _not_c2(name: str, root: str) -> InvalidArgument:
    hint = " (a Collection 1 MTL)" if root == "L1_METADATA_FILE" else ""
    return InvalidArgument(
        f"metadata file {name} starts with {root or 'nothing'!r}{hint}, not {ROOT}; "
        "accepted: Landsat Collection 2 MTL files (_MTL.txt, _MTL.xml or _MTL.json)"
    )


def _parse_odl(text: str, name: str) -> dict[str, dict[str, str]]:
    groups: dict[str, dict[str, str]] = {}
    stack: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.strip() == "END":
            continue
        m = _LINE.match(line)
        if not m:
            raise InvalidArgument(f"metadata file {name}, line {number}: not KEY = VALUE")
        key, value = m.group(1), m.group(2)
        if key == "GROUP":
            if not stack and value != ROOT:
                raise _not_c2(name, value)
            if stack:  # the root holds groups only
                groups.setdefault(value, {})
            stack.append(value)
        elif key == "END_GROUP":
            if not stack or stack[-1] != value:
                raise InvalidArgument(
                    f"metadata file {name}, line {number}: END_GROUP = {value} does not "
                    f"close {stack[-1] if stack else 'any group'} (a truncated or edited MTL)"
                )
            stack.pop()
        elif stack:
            groups[stack[-1]][key] = _unquote(value)
        else:
            raise _not_c2(name, key)
    if stack:
        raise InvalidArgument(
            f"metadata file {name} ends inside group {stack[-1]} (truncated); copy it again"
        )
    return groups


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _parse_xml(text: str, name: str) -> dict[str, dict[str, str]]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InvalidArgument(f"metadata file {name} is not well-formed XML: {exc}") from exc
    tag = local(root.tag)
    if tag != ROOT:
        raise _not_c2(name, tag)
    groups: dict[str, dict[str, str]] = {}
    for group in root:
        values = groups.setdefault(local(group.tag), {})
        for item in group:
            values[local(item.tag)] = (item.text or "").strip()
    return groups


def _parse_json(text: str, name: str) -> dict[str, dict[str, str]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"metadata file {name} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or ROOT not in doc or not isinstance(doc[ROOT], dict):
        first = next(iter(doc), "") if isinstance(doc, dict) else ""
        raise _not_c2(name, str(first))
    groups: dict[str, dict[str, str]] = {}
    for group, values in doc[ROOT].items():
        if isinstance(values, dict):
            groups[group] = {k: _text(v) for k, v in values.items()}
    return groups


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "Y" if value else "N"
    return "" if value is None else str(value)
