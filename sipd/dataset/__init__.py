"""Masks + scenes -> training chips and normalization statistics.

`prepare_dataset` writes out_dir/chips.npz and out_dir/dataset.json;
`load_dataset` reads them back for training.
"""

from sipd.dataset.chip_files import Chips
from sipd.dataset.chip_files import load as load_dataset
from sipd.dataset.prepare import prepare_dataset

__all__ = ["Chips", "load_dataset", "prepare_dataset"]
