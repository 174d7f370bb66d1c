"""A model folder as the predictor sees it: its card (read by sipd.modelrepo) and graph path.

model.yaml is parsed and checked in one place, sipd.modelrepo.card; this is
only the view the predictor and the session code use (no onnxruntime here,
so inspecting a model never needs it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sipd.errors import FailedPrecondition
from sipd.modelrepo import read_card
from sipd.modelrepo.card import ClassDef, ModelCard, Tile
from sipd.modelrepo.layout import CARD_FILE, GRAPH_FILE

__all__ = ["ModelSpec", "read_model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """A model folder and its checked card."""

    path: Path
    card: ModelCard

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def classes(self) -> tuple[ClassDef, ...]:
        return self.card.classes

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.card.classes]

    @property
    def class_values(self) -> list[int]:
        return [c.value for c in self.card.classes]

    @property
    def bands(self) -> tuple[str, ...]:
        return self.card.bands

    @property
    def input_name(self) -> str:
        return self.card.input.name

    @property
    def outputs(self) -> dict[str, str]:
        """role (labels/confidence/probabilities) -> graph output name."""
        return self.card.outputs.by_role()

    @property
    def mean(self) -> tuple[float, ...]:
        return self.card.normalization.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.card.normalization.std

    @property
    def tile(self) -> Tile:
        return self.card.tile


def read_model_spec(model_dir: str | os.PathLike[str]) -> ModelSpec:
    """Check a model folder (model.onnx beside a valid model.yaml) and read its card."""
    root = Path(model_dir)
    if not root.is_dir():
        raise FailedPrecondition(f"model folder {root} does not exist")
    missing = [n for n in (GRAPH_FILE, CARD_FILE) if not (root / n).is_file()]
    if missing:
        raise FailedPrecondition(
            f"model folder {root} is incomplete: missing {', '.join(missing)} "
            "(a model folder holds model.onnx and model.yaml)"
        )
    return ModelSpec(path=root, card=read_card(root))
