"""Masks + scenes -> training chips and normalization statistics.

`prepare_dataset` writes out_dir/chips.npz and out_dir/dataset.json;
`load_dataset` reads them back for training.
"""

from sipd.dataset.prepare import prepare_dataset
from sipd.dataset.store import Chips
from sipd.dataset.store import load as load_dataset

__all__ = ["Chips", "load_dataset", "prepare_dataset"]
