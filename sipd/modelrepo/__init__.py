"""The model repository: folder layout, the model card, atomic publishing, listing, evaluations.

- `layout`: file and folder names, version numbers, staging and atomic publish.
- `card`: model.yaml as `ModelCard` (format sipd-model/2; sipd-model/1 upgraded when read).
- `repository`: `ModelRepository` (versions, list, get, resolve, path, delete).
- `evaluations`: one record file per evaluation of a version.

A published version never changes (models/README.md says what may be added).
Nothing here imports torch or onnxruntime: the daemon uses it.
"""

from sipd.modelrepo.card import (
    MODEL_FORMAT,
    ModelCard,
    dump_card,
    load_card,
    parse_card,
    read_card,
    write_card,
)
from sipd.modelrepo.evaluations import Evaluation, list_evaluations, record_evaluation
from sipd.modelrepo.layout import (
    FP16_FILE,
    name_of_folder,
    parse_model_name,
    publish,
    staging_folder,
    version_name,
)
from sipd.modelrepo.repository import (
    ModelRepository,
    ModelVersion,
    read_training_metrics,
    read_version,
)

__all__ = [
    "FP16_FILE",
    "MODEL_FORMAT",
    "Evaluation",
    "ModelCard",
    "ModelRepository",
    "ModelVersion",
    "dump_card",
    "list_evaluations",
    "load_card",
    "name_of_folder",
    "parse_card",
    "parse_model_name",
    "publish",
    "read_card",
    "read_training_metrics",
    "read_version",
    "record_evaluation",
    "staging_folder",
    "version_name",
    "write_card",
]
