"""Preprocessing options, steps and recipes: one typed definition each.

The options of a preprocessor arrive as text (a proto map, sipctl flags,
sipd.yaml) and are parsed here once (by the family's model in
sipd.contracts.options), so a recipe stored today reads the same
tomorrow and a typo is refused when the recipe is made, not when a product
arrives at 3 a.m.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from sipd.contracts.base import Contract
from sipd.contracts.options.hyperspectral import HyperspectralOptions
from sipd.contracts.options.landsat import LandsatOptions
from sipd.contracts.options.micasense import MicasenseOptions
from sipd.contracts.options.modis import ModisOptions
from sipd.contracts.options.multichannel import MultichannelOptions
from sipd.contracts.options.sar import SPECKLE_KINDS, SarOptions
from sipd.contracts.options.sentinel2 import Sentinel2Options
from sipd.contracts.options.sentinel3 import Sentinel3Options

__all__ = ["OPTIONS", "SPECKLE_KINDS", "PreprocessStep", "Recipe", "SarOptions"]

# Each preprocessor's options model (sipd.preprocess.catalog describes the
# preprocessors; a test keeps the two in step).
OPTIONS: dict[str, type[Contract]] = {
    "sentinel1": SarOptions,
    "radarsat2": SarOptions,
    "rcm": SarOptions,
    "landsat": LandsatOptions,
    "sentinel2": Sentinel2Options,
    "sentinel3": Sentinel3Options,
    "modis": ModisOptions,
    "micasense": MicasenseOptions,
    "hyperspectral": HyperspectralOptions,
    "multichannel": MultichannelOptions,
}

RECIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class PreprocessStep(Contract):
    """What to do to a raw product: a preprocessor, its options, and the recipe they came
    from (name and version; empty when given ad hoc)."""

    preprocessor: str
    # The preprocessor's own options model (OPTIONS); SerializeAsAny dumps its fields,
    # not only those of the Contract base.
    options: SerializeAsAny[Contract]
    recipe: str = ""
    recipe_version: int = Field(default=0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _typed_options(cls, data: Any) -> Any:
        """Options parsed by the model of the named preprocessor (a stored recipe's JSON
        reads back as that model), so an option of another family is refused."""
        if not isinstance(data, dict):
            return data
        name = data.get("preprocessor")
        if name not in OPTIONS:
            raise ValueError(f"no preprocessor {name!r}; accepted: {', '.join(OPTIONS)}")
        model = OPTIONS[name]
        options = data.get("options", {})
        if not isinstance(options, model):
            if isinstance(options, Contract):
                options = options.model_dump()
            options = model.model_validate(options or {})
        return {**data, "options": options}

    @property
    def recipe_label(self) -> str:
        return f"{self.recipe}@{self.recipe_version}" if self.recipe else ""


class Recipe(Contract):
    """A named, versioned preprocessing step as stored by the daemon."""

    name: str
    version: int = Field(ge=1)
    step: PreprocessStep
    description: str = ""
    created: float = 0.0
    from_config: bool = False
    # Deleted recipes are still read by version: scenes, models and watches name them.
    deleted: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RECIPE_NAME.match(value):
            raise ValueError(
                f"recipe name {value!r} is not valid: 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value


def option_text(value: Any) -> str:
    """An option's value as the text the API and sipctl use: true/false, HH,HV, 40.0."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def option_specs(model: type[Contract]) -> list[dict[str, str]]:
    """Name, type, default, meaning and choices of every option (for ListPreprocessors)."""
    specs = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        choices = ""
        if getattr(annotation, "__origin__", None) is Literal:
            choices = ",".join(str(a) for a in annotation.__args__)
            kind = "choice"
        else:
            kind = {bool: "bool", float: "float", int: "int", str: "string"}.get(
                annotation,
                "list",  # type: ignore[arg-type]
            )
        if name == "speckle":
            choices = ",".join(SPECKLE_KINDS)
        if name in model.PATH_OPTIONS:
            kind = "path"  # sipctl sends these as absolute paths
        specs.append(
            {
                "name": name,
                "type": kind,
                "default": option_text(field.default),
                "description": field.description or "",
                "choices": choices,
            }
        )
    return specs
