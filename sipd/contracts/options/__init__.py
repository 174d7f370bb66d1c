"""The typed options of each preprocessor family, one module per family.

Every options model has defaults for every field (a recipe names only what it
changes), a description per field (`sipctl preprocess list` shows it),
`PATH_OPTIONS` (fields naming files: the daemon checks them against the allowed
roots before a job runs) and `output_bands()` (the band names when the options
alone fix them, else []).
"""

from __future__ import annotations

import re
from typing import Any


def text_list(value: Any) -> Any:
    """A list option as it arrives: text ("a,b c": commas or spaces) becomes the list of
    its items, None an empty list; a list is left as it is for the field to check."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in re.split(r"[,\s]+", value.strip()) if v]
    return value
