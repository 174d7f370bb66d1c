"""The one style of every contract: frozen pydantic models that refuse unknown fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Contract(BaseModel):
    """Immutable once built; a misspelled or unknown field is an error, not a silent drop."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)
