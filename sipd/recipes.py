"""Preprocessing recipes: named, versioned preprocessing steps kept in the store.

A version never changes once stored: a scene or a model that records
"seaice-s1@2" can always be remade the same way. Creating a recipe under an
existing name stores the next version (unless nothing changed). Deleting a
recipe hides it from listing and from "latest"; its versions stay readable by
number (scenes, models and watches name them) and their numbers are never
given again.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sipd.contracts.base import Contract
from sipd.contracts.jobs import build
from sipd.contracts.preprocessing import PreprocessStep, Recipe
from sipd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, bounded
from sipd.preprocess import catalog
from sipd.store import Store


def parse_ref(text: str) -> tuple[str, int]:
    """ "name" -> (name, 0 = latest); "name@3" -> (name, 3)."""
    name, _, version = text.strip().removeprefix("recipes/").partition("@")
    if version and not version.isdigit():
        raise InvalidArgument(
            f"recipe {bounded(repr(text))} is not NAME or NAME@VERSION (e.g. seaice-s1@2)"
        )
    return name, int(version or 0)


def make_step(
    preprocessor: str, options: dict[str, Any], base: Contract | None = None
) -> PreprocessStep:
    """A typed step from text options (unknown names and bad values refused, naming each)."""
    pre = catalog.get(preprocessor)  # an unknown preprocessor names those that exist
    merged = {**(base.model_dump() if base else {}), **options}
    try:
        opts = build(pre.options, **merged)
    except InvalidArgument as exc:
        # Options of another family are the likely mistake: say whose options these are.
        raise InvalidArgument(
            f"{preprocessor} options: {exc}; see `sipctl preprocess list`"
        ) from None
    return build(PreprocessStep, preprocessor=preprocessor, options=opts)


class RecipeBook:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(
        self,
        name: str,
        preprocessor: str,
        options: dict[str, Any],
        description: str = "",
        *,
        from_config: bool = False,
    ) -> Recipe:
        step = make_step(preprocessor, options)
        build(Recipe, name=name, version=1, step=step)  # the name's own check
        with self.store.transaction() as db:
            last = db.execute("SELECT MAX(version) FROM recipes WHERE name=?", (name,)).fetchone()
            row = db.execute(
                "SELECT version, step, description FROM recipes WHERE name=? AND deleted=0 "
                "ORDER BY version DESC LIMIT 1",
                (name,),
            ).fetchone()
            if row is not None:
                same = PreprocessStep.model_validate(json.loads(row["step"])) == step
                if same and row["description"] == description:
                    if from_config:
                        db.execute(
                            "UPDATE recipes SET from_config=1 WHERE name=? AND version=?",
                            (name, row["version"]),
                        )
                        return self._recipe(name, row["version"], step, description, 0.0)
                    raise AlreadyExists(
                        f"recipe {name!r} version {row['version']} already has these options; "
                        "change an option to store a new version"
                    )
            version = (last[0] or 0) + 1
            created = time.time()
            db.execute(
                "INSERT INTO recipes (name, version, step, description, from_config, "
                "create_time) VALUES (?, ?, ?, ?, ?, ?)",
                (name, version, step.model_dump_json(), description, int(from_config), created),
            )
        return self._recipe(name, version, step, description, created, from_config=from_config)

    @staticmethod
    def _recipe(
        name: str,
        version: int,
        step: PreprocessStep,
        description: str,
        created: float,
        *,
        from_config: bool = False,
        deleted: bool = False,
    ) -> Recipe:
        labelled = step.model_copy(update={"recipe": name, "recipe_version": version})
        return Recipe(
            name=name,
            version=version,
            step=labelled,
            description=description,
            created=created,
            from_config=from_config,
            deleted=deleted,
        )

    def get(self, ref: str, version: int = 0) -> Recipe:
        """A version by number (deleted ones too: scenes and models name them), or the
        latest version of a recipe that is not deleted."""
        name, at = parse_ref(ref)
        version = version or at
        if version:
            row = self.store.query_one(
                "SELECT * FROM recipes WHERE name=? AND version=?", (name, version)
            )
        else:
            row = self.store.query_one(
                "SELECT * FROM recipes WHERE name=? AND deleted=0 ORDER BY version DESC LIMIT 1",
                (name,),
            )
        if row is None:
            known = ", ".join(r.name for r in self.list()) or "none yet"
            what = f"{name!r} version {version}" if version else repr(name)
            raise NotFound(
                f"no recipe {bounded(what)}; recipes: {known} (sipctl recipe create ...)"
            )
        return self._row(row)

    def _row(self, row: Any) -> Recipe:
        step = PreprocessStep.model_validate(json.loads(row["step"]))
        return self._recipe(
            row["name"],
            row["version"],
            step,
            row["description"],
            row["create_time"],
            from_config=bool(row["from_config"]),
            deleted=bool(row["deleted"]),
        )

    def list(self) -> list[Recipe]:
        rows = self.store.query(
            "SELECT r.* FROM recipes r JOIN (SELECT name, MAX(version) AS v FROM recipes "
            "WHERE deleted=0 GROUP BY name) m ON r.name = m.name AND r.version = m.v "
            "ORDER BY r.name"
        )
        return [self._row(r) for r in rows]

    def delete(self, ref: str) -> int:
        """Delete every version of a recipe (they stay readable by number); returns how many."""
        name, version = parse_ref(ref)
        if version:
            raise InvalidArgument(
                f"delete takes a recipe name, not a version ({bounded(ref)}): a recipe's "
                "versions go together"
            )
        with self.store.transaction() as db:
            if db.execute(
                "SELECT 1 FROM recipes WHERE name=? AND deleted=0 AND from_config=1", (name,)
            ).fetchone():
                raise FailedPrecondition(
                    f"recipe {name!r} is declared in sipd.yaml; remove it there (it would be "
                    "stored again at the next start)"
                )
            count = db.execute(
                "UPDATE recipes SET deleted=1 WHERE name=? AND deleted=0", (name,)
            ).rowcount
        if not count:
            raise NotFound(f"no recipe {bounded(repr(name))}")
        return count

    def load_config(self, entries: list[dict[str, Any]]) -> None:
        """Recipes declared in sipd.yaml: stored (as a new version when changed) at start."""
        for index, entry in enumerate(entries):
            where = f"recipes[{index}] in the config"
            if not isinstance(entry, dict):
                raise InvalidArgument(f"{where} must be a mapping with name, preprocessor, options")
            unknown = set(entry) - {"name", "preprocessor", "options", "description"}
            if unknown or "name" not in entry or "preprocessor" not in entry:
                raise InvalidArgument(
                    f"{where}: needs name and preprocessor (and options, description); "
                    f"unknown keys: {', '.join(sorted(unknown)) or 'none'}"
                )
            try:
                self.create(
                    str(entry["name"]),
                    str(entry["preprocessor"]),
                    dict(entry.get("options") or {}),
                    str(entry.get("description") or ""),
                    from_config=True,
                )
            except InvalidArgument as exc:
                raise InvalidArgument(f"{where}: {exc}") from None
