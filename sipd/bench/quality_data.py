"""Datasets and sparse clicks of the quality benchmark (`sipctl bench quality`).

An adapter turns a dataset with full ground truth into GeoTIFF scenes in the
work dir (written once, then reused) and yields, per image, an `Item`: the
scene's path, its truth (uint8, 0 = ignore, 1..K = class values in the
order of `Dataset.classes`) and whether it is a train or a test image.

Adapters (docs/quality.md):
- `dubai`: ../shared/datasets/dubai_aerial_hitl. Colour masks decoded to RGB
  first (tiles 2 and 4 are palette PNGs: one band with a colour map), class
  ids 1..5 by the README's table; black and grey are ignore (0). Split by
  tile: train = Tiles 1, 3, 5, 7; test = Tiles 2, 4, 6, 8.
- `bbbc`: ../shared/datasets/bbbc039_nuclei_subset. Nucleus = mask R > 0
  (the values 1..3 only keep touching nuclei apart); classes background = 1
  (named "bg": sipd reserves "background"), nucleus = 2. Train = odd
  positions (1st, 3rd, ...) of the sorted names, test = even positions.
- `generated`: sipd.synthetic scenes (25 of 512 x 512 by default: 20 train,
  5 test, 3 classes), one palette seed, so every scene is the same land cover.
- `folder`: DIR/images/* and DIR/masks/* (integer class masks, 0 = ignore,
  same stem); sorted images alternate train/test unless a split file says.

Clicks (`sample_clicks`): for every class present in a train image, N pixels
whose whole 3x3 neighbourhood is that class, drawn with a fixed seed; every
5th drawn click is a val click, the other 4 train.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine, from_origin
from scipy import ndimage

DATASETS = ("dubai", "bbbc", "generated", "folder")
# Folder names under ../shared/datasets.
SHARED_NAMES = {"dubai": "dubai_aerial_hitl", "bbbc": "bbbc039_nuclei_subset"}

# dubai_aerial_hitl/README.md, "Ground-truth encoding": the mask colours (NOT classes.json's).
DUBAI_CLASSES = ["building", "land", "road", "vegetation", "water"]
DUBAI_COLOURS = {
    (60, 16, 152): 1,  # #3C1098 Building
    (132, 41, 246): 2,  # #8429F6 Land (unpaved area)
    (110, 193, 228): 3,  # #6EC1E4 Road
    (254, 221, 58): 4,  # #FEDD3A Vegetation
    (226, 169, 41): 5,  # #E2A929 Water
    (155, 155, 155): 0,  # #9B9B9B Unlabeled: ignore
    (0, 0, 0): 0,  # black gaps left unannotated: ignore
}
DUBAI_TRAIN_TILES = (1, 3, 5, 7)
DUBAI_TEST_TILES = (2, 4, 6, 8)

# "background" is reserved by sipd for value 0 (unlabeled), so class 1 is "bg".
BBBC_CLASSES = ["bg", "nucleus"]


@dataclass
class Item:
    """One image of a dataset: its scene (GeoTIFF), truth and side."""

    name: str  # a scene id: letters, digits, '-', '_', '.'
    scene: Path
    truth: np.ndarray  # uint8 (rows, cols); 0 = ignore, 1..K = class values
    split: str  # "train" or "test"
    source: str = ""  # the original image file
    index: int = 0  # position among the dataset's images of its split (before subsampling)

    @property
    def megapixels(self) -> float:
        return self.truth.size / 1e6


@dataclass
class Dataset:
    name: str
    classes: list[str]  # class value k is classes[k - 1]
    items: list[Item] = field(default_factory=list)
    notes: str = ""

    def side(self, split: str) -> list[Item]:
        return [i for i in self.items if i.split == split]


@dataclass(frozen=True)
class Click:
    row: int
    col: int
    value: int  # class value 1..K
    split: str  # "train" or "val"


# -- scenes ------------------------------------------------------------------------------


def _transform(height: int) -> Affine:
    # No CRS; pixel size 1 (north up, so the scene is "georeferenced" and GDAL stays quiet).
    return from_origin(0.0, float(height), 1.0, 1.0)


def write_scene(path: Path, data: np.ndarray) -> None:
    """`data` (bands, rows, cols) as a tiled GeoTIFF with no CRS and pixel size 1."""
    bands, height, width = data.shape
    tmp = path.with_name(path.name + ".part")
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": data.dtype.name,
        "transform": _transform(height),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "interleave": "band",
    }
    with rasterio.open(tmp, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = tuple(f"B{i + 1}" for i in range(bands))
    tmp.replace(path)


def write_truth(path: Path, truth: np.ndarray) -> None:
    write_scene(path, truth[None].astype(np.uint8))


def read_truth(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def read_raster(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return ds.read()


def _cached(folder: Path, name: str, split: str, source: Path | str, make: Any) -> Item:
    """The scene and truth of `name` in `folder`, made by `make()` -> (data, truth) once."""
    scene, truth_path = folder / f"{name}.tif", folder / f"{name}.truth.tif"
    if not (scene.is_file() and truth_path.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        data, truth = make()
        write_scene(scene, data)
        write_truth(truth_path, truth)
        return Item(name, scene, truth.astype(np.uint8), split, str(source))
    return Item(name, scene, read_truth(truth_path), split, str(source))


# -- dubai -------------------------------------------------------------------------------


def decode_colour_mask(path: Path) -> np.ndarray:
    """A Dubai colour mask as class ids (0 ignore, 1..5): decoded to RGB first (a palette
    PNG through its colour map), then by DUBAI_COLOURS. An unknown colour is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            if ds.count == 1:
                index = ds.read(1)
                try:
                    cmap = ds.colormap(1)
                except ValueError:
                    raise ValueError(
                        f"{path}: one band and no colour map; not a colour mask"
                    ) from None
                lut = np.zeros((256, 3), np.uint8)
                for k, rgba in cmap.items():
                    lut[k] = rgba[:3]
                rgb = lut[index]
            elif ds.count >= 3:
                rgb = np.moveaxis(ds.read((1, 2, 3)), 0, -1)
            else:
                raise ValueError(f"{path}: {ds.count} bands; a colour mask has 1 (palette) or 3+")
    return colours_to_ids(rgb, DUBAI_COLOURS, str(path))


def colours_to_ids(
    rgb: np.ndarray, table: dict[tuple[int, int, int], int], where: str
) -> np.ndarray:
    code = (
        (rgb[..., 0].astype(np.uint32) << 16)
        | (rgb[..., 1].astype(np.uint32) << 8)
        | rgb[..., 2].astype(np.uint32)
    )
    out = np.zeros(code.shape, np.uint8)
    known = np.zeros(code.shape, bool)
    for (r, g, b), value in table.items():
        hit = code == ((r << 16) | (g << 8) | b)
        out[hit] = value
        known |= hit
    if not known.all():
        bad = np.unique(code[~known])[:5]
        colours = ", ".join(f"#{int(c):06X}" for c in bad)
        raise ValueError(f"{where}: colour(s) {colours} are not in the class table")
    return out


def load_dubai(data: Path, work: Path) -> Dataset:
    tiles = sorted(
        (p for p in data.glob("Tile *") if p.is_dir()), key=lambda p: int(p.name.split()[-1])
    )
    if not tiles:
        raise FileNotFoundError(f"{data}: no 'Tile N' folders (is this dubai_aerial_hitl?)")
    ds = Dataset("dubai", list(DUBAI_CLASSES))
    for tile in tiles:
        n = int(tile.name.split()[-1])
        split = "train" if n in DUBAI_TRAIN_TILES else "test" if n in DUBAI_TEST_TILES else ""
        if not split:
            continue
        for image in sorted((tile / "images").glob("*.jpg")):
            mask = tile / "masks" / f"{image.stem}.png"
            name = f"t{n}_{image.stem.replace('image_part_', 'p')}"

            def make(image: Path = image, mask: Path = mask) -> tuple[np.ndarray, np.ndarray]:
                pixels = read_raster(image)[:3]
                truth = decode_colour_mask(mask)
                if truth.shape != pixels.shape[1:]:
                    raise ValueError(f"{mask}: {truth.shape} but the image is {pixels.shape[1:]}")
                return pixels, truth

            ds.items.append(_cached(work / "scenes" / "dubai", name, split, image, make))
    ds.notes = "train = Tiles 1,3,5,7; test = Tiles 2,4,6,8 (README split by tile)"
    return ds


# -- bbbc --------------------------------------------------------------------------------


def bbbc_truth(mask: np.ndarray) -> np.ndarray:
    """RGBA mask (bands, rows, cols) -> background 1, nucleus 2 (R > 0)."""
    return np.where(mask[0] > 0, 2, 1).astype(np.uint8)


def load_bbbc(data: Path, work: Path) -> Dataset:
    images = sorted((data / "images").glob("*.tif"))
    if not images:
        raise FileNotFoundError(f"{data}/images: no .tif images (is this bbbc039_nuclei_subset?)")
    ds = Dataset("bbbc", list(BBBC_CLASSES))
    for i, image in enumerate(images):
        mask = data / "masks" / f"{image.stem}.png"
        found = re.search(r"_([A-P]\d\d_s\d+)_", image.name)
        name = found.group(1) if found else _scene_id(image.stem)
        # Positions are 1-based in the README: odd positions (index 0, 2, ...) train.
        split = "train" if i % 2 == 0 else "test"

        def make(image: Path = image, mask: Path = mask) -> tuple[np.ndarray, np.ndarray]:
            return read_raster(image)[:1], bbbc_truth(read_raster(mask))

        ds.items.append(_cached(work / "scenes" / "bbbc", name, split, image, make))
    ds.notes = "train = odd positions, test = even positions of the sorted names (README)"
    return ds


# -- generated ---------------------------------------------------------------------------


def load_generated(
    work: Path, *, scenes: int = 25, test: int = 5, size: int = 512, classes: int = 3, seed: int = 0
) -> Dataset:
    from sipd.synthetic import make_scene

    if not 0 < test < scenes:
        raise ValueError(f"generated: {test} test scene(s) of {scenes}; need 0 < test < scenes")
    folder = work / "scenes" / f"generated-{size}-c{classes}-p{seed}"
    ds = Dataset("generated", [f"class{k}" for k in range(1, classes + 1)])
    for i in range(scenes):
        name = f"g{i:03d}"
        split = "train" if i < scenes - test else "test"
        scene, truth_path = folder / f"{name}.tif", folder / f"{name}.truth.tif"
        if scene.is_file() and truth_path.is_file():
            truth = read_truth(truth_path)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            # Layout and noise by scene; class signatures by the one palette seed.
            truth = make_scene(
                scene, width=size, height=size, bands=4, seed=1000 + i, classes=classes,
                palette_seed=seed, crs=None, origin=(0.0, float(size)), pixel_size=1.0,
            )  # fmt: skip
            write_truth(truth_path, truth)
        ds.items.append(Item(name, scene, truth, split, "sipd.synthetic"))
    ds.notes = f"{scenes - test} train + {test} test sipd.synthetic scenes, palette seed {seed}"
    return ds


# -- folder ------------------------------------------------------------------------------


def _scene_id(stem: str) -> str:
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")
    return (text or "image")[:100]


def read_split_file(path: Path) -> dict[str, str]:
    """stem -> train|test from JSON {"train": [...], "test": [...]} or lines "stem train"."""
    text = path.read_text()
    out: dict[str, str] = {}
    if path.suffix.lower() == ".json":
        doc = json.loads(text)
        for split in ("train", "test"):
            for stem in doc.get(split, []):
                out[str(stem)] = split
        return out
    for line in text.splitlines():
        parts = line.replace(",", " ").split()
        if len(parts) >= 2 and not line.lstrip().startswith("#"):
            if parts[-1] not in ("train", "test"):
                raise ValueError(f"{path}: {line!r}: the last word must be train or test")
            out[" ".join(parts[:-1])] = parts[-1]
    return out


def load_folder(data: Path, work: Path, split_file: Path | None = None) -> Dataset:
    images = sorted(p for p in (data / "images").iterdir() if p.is_file())
    masks = {p.stem: p for p in (data / "masks").iterdir() if p.is_file()}
    pairs = [(p, masks[p.stem]) for p in images if p.stem in masks]
    if not pairs:
        raise FileNotFoundError(f"{data}: no images/X.* with a masks/X.* of the same stem")
    splits = read_split_file(split_file) if split_file else {}
    truths = {}
    for image, mask in pairs:
        truths[image.stem] = read_raster(mask)[0]
    top = max(int(t.max()) for t in truths.values())
    if top < 1 or top > 254:
        raise ValueError(f"{data}/masks: class values must be 1..254 (0 = ignore); max is {top}")
    ds = Dataset("folder", [f"class{k}" for k in range(1, top + 1)])
    folder = work / "scenes" / f"folder-{_scene_id(data.name)}"
    for i, (image, _mask) in enumerate(pairs):
        split = splits.get(image.stem) or splits.get(image.name)
        if splits and split is None:
            continue  # not listed: not used
        split = split or ("train" if i % 2 == 0 else "test")
        truth = truths[image.stem].astype(np.uint8)

        def make(image: Path = image, truth: np.ndarray = truth) -> tuple[np.ndarray, np.ndarray]:
            return read_raster(image), truth

        ds.items.append(_cached(folder, _scene_id(image.stem), split, image, make))
    ds.notes = f"split from {split_file}" if split_file else "sorted images alternate train/test"
    return ds


# -- choosing ----------------------------------------------------------------------------


def subsample(items: Sequence[Item], n: int) -> list[Item]:
    """`n` of `items` evenly spread over their (sorted) order; all when n <= 0 or n >= len."""
    if n <= 0 or n >= len(items):
        return list(items)
    picks = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in sorted(set(picks.tolist()))]


def load_dataset(
    name: str,
    data: Path | None,
    work: Path,
    *,
    max_train: int = 0,
    max_test: int = 0,
    seed: int = 0,
    split_file: Path | None = None,
    generated: dict[str, int] | None = None,
) -> Dataset:
    if name == "dubai":
        ds = load_dubai(_need(data, name), work)
    elif name == "bbbc":
        ds = load_bbbc(_need(data, name), work)
    elif name == "generated":
        ds = load_generated(work, seed=seed, **(generated or {}))
    elif name == "folder":
        ds = load_folder(_need(data, name), work, split_file)
    else:
        raise ValueError(f"unknown dataset {name!r}; accepted: {', '.join(DATASETS)}")
    for split in ("train", "test"):
        for i, item in enumerate(ds.side(split)):
            item.index = i
    ds.items = subsample(ds.side("train"), max_train) + subsample(ds.side("test"), max_test)
    if not ds.side("train") or not ds.side("test"):
        raise ValueError(f"{name}: needs train and test images; got {len(ds.items)} in all")
    return ds


def _need(data: Path | None, name: str) -> Path:
    if data is None or not data.is_dir():
        raise FileNotFoundError(f"dataset {name}: folder {data} not found (give --data)")
    return data


# -- clicks ------------------------------------------------------------------------------


def pure_pixels(truth: np.ndarray, value: int) -> np.ndarray:
    """Pixels whose whole 3x3 neighbourhood (inside the image) is class `value`."""
    inside = truth == value
    pure = ndimage.binary_erosion(inside, structure=np.ones((3, 3), bool), border_value=0)
    return pure


def sample_clicks(
    truth: np.ndarray, n: int, *, seed: int, image_index: int, val_every: int = 5
) -> list[Click]:
    """Up to `n` clicks per class present in `truth` (all pure pixels when fewer), drawn
    without replacement by a generator seeded with (seed, image_index, class); of each
    class's clicks in drawing order, every `val_every`-th is val, the others train."""
    clicks: list[Click] = []
    for value in sorted(int(v) for v in np.unique(truth) if v != 0):
        rows, cols = np.nonzero(pure_pixels(truth, value))
        if rows.size == 0:
            continue
        rng = np.random.default_rng([seed, image_index, value, 104651])
        take = rng.choice(rows.size, size=min(n, rows.size), replace=False)
        for j, i in enumerate(take):
            split = "val" if j % val_every == val_every - 1 else "train"
            clicks.append(Click(int(rows[i]), int(cols[i]), value, split))
    return clicks


def clicks_geojson(clicks: Sequence[Click], classes: Sequence[str]) -> dict[str, Any]:
    """Point ROIs on pixel centres, in pixel coordinates (one pixel each)."""
    return {
        "type": "FeatureCollection",
        "sipd:coordinates": "pixel",
        "features": [
            {
                "type": "Feature",
                "properties": {"class": classes[c.value - 1], "split": c.split},
                "geometry": {"type": "Point", "coordinates": [c.col + 0.5, c.row + 0.5]},
            }
            for c in clicks
        ],
    }


# -- full masks as polygons --------------------------------------------------------------


def val_stripe(height: int) -> int:
    """Rows per stripe of the full-mask train/val division: about 5 cycles of 5 stripes
    per image (at least 4 rows)."""
    return max(4, height // 25)


def full_split(shape: tuple[int, int], stripe: int = 0) -> np.ndarray:
    """Per pixel True where it is val: every 5th stripe of `stripe` rows (default
    `val_stripe`), so 4:1 train:val by rows, spread over the whole image."""
    rows = np.arange(shape[0]) // (stripe or val_stripe(shape[0]))
    return np.broadcast_to((rows % 5 == 4)[:, None], shape)


def mask_geojson(truth: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """The full mask as polygon ROIs (rasterio.features.shapes, pixel coordinates): per
    class and split, polygons that rasterize back to exactly the mask by the pixel-centre
    rule. Val = every 5th stripe of rows (`full_split`), train the rest."""
    from rasterio.features import shapes

    val = full_split(truth.shape)
    # One label per (class, split): 2k-1 train, 2k val, so no polygon crosses a stripe edge
    # of a different split or a class edge.
    label = np.where(truth > 0, truth.astype(np.int32) * 2 - 1 + val, 0).astype(np.int32)
    features = []
    for geom, v in shapes(label, mask=label > 0, connectivity=4, transform=Affine.identity()):
        v = int(v)
        value, split = (v + 1) // 2, "val" if v % 2 == 0 else "train"
        features.append(
            {
                "type": "Feature",
                "properties": {"class": classes[value - 1], "split": split},
                "geometry": geom,
            }
        )
    return {"type": "FeatureCollection", "sipd:coordinates": "pixel", "features": features}


def write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(doc))
    tmp.replace(path)
    return path
