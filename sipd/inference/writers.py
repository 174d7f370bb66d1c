"""Output rasters of a prediction: label map, confidence, probabilities, quicklook.

Formats (all on the scene's grid, nodata marks unclassified pixels):
- labels: uint8, 1..K, nodata 0, colour table from the class colours (0 is
  transparent black), tags CLASS_k=name, band description "labels".
- confidence: uint8, round(255 * max softmax probability), nodata 0, with
  band scale 1/255 so GDAL-aware tools read it as a probability. A quarter of
  the size of float32 and compresses far better; 1/255 resolution is finer
  than any decision made on it. A valid pixel never reads 0: the maximum of
  K probabilities is at least 1/K, and values are clipped to >= 1 anyway.
- probabilities: float32, one band per class (described by class name), NaN
  as nodata (0.0 is a legitimate probability).
- uncertainty: normalized entropy u = H(p) / ln K of the class probabilities
  (sipd.inference.tile_loop.normalized_entropy; 0 = certain, 1 = all classes
  equally likely), encoded like confidence: uint8 round(255 * u) clipped to
  >= 1, nodata 0, band scale 1/255. So a certain pixel reads 1 (u = 0.004),
  never nodata; 1/255 is far finer than "where to label next" needs, and the
  map is a quarter of a float32 one. Per-scene figures (mean uncertainty over
  classified pixels, share above 0.5) are taken from the unquantized values.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning

from sipd.inference.tiling import Tile
from sipd.modelrepo.card import ClassDef
from sipd.raster import atomic_path, open_raster, tiled_gtiff_profile


def colormap(classes: tuple[ClassDef, ...]) -> dict[int, tuple[int, int, int, int]]:
    cmap = {0: (0, 0, 0, 0)}
    for c in classes:
        cmap[c.value] = (*c.rgb, 255)
    return cmap


def label_tags(classes: tuple[ClassDef, ...], model_name: str) -> dict[str, str]:
    tags = {f"CLASS_{c.value}": c.name for c in classes}
    tags["CLASS_0"] = "background"
    tags["MODEL"] = model_name
    return tags


class SceneWriter:
    """Tile sink writing label/confidence/probability windows into scratch GeoTIFFs.

    Opened and used only in the pipeline's writer thread (rasterio handles
    are not thread-safe). Counts labels per class as it goes, so the caller
    gets class areas without re-reading the map.
    """

    def __init__(
        self,
        grid_profile: dict[str, Any],
        classes: tuple[ClassDef, ...],
        model_name: str,
        labels_path: Path,
        confidence_path: Path | None = None,
        probabilities_path: Path | None = None,
        blocksize: int = 512,
        uncertainty_path: Path | None = None,
    ) -> None:
        self.profile = grid_profile
        self.classes = classes
        self.model_name = model_name
        self.paths = {"labels": labels_path}
        if confidence_path is not None:
            self.paths["confidence"] = confidence_path
        if probabilities_path is not None:
            self.paths["probabilities"] = probabilities_path
        if uncertainty_path is not None:
            self.paths["uncertainty"] = uncertainty_path
        self.blocksize = blocksize
        self.counts = np.zeros(len(classes) + 1, dtype=np.int64)  # index = label value
        # Over classified pixels, whenever the tile loop computed the uncertainty.
        self.uncertainty_sum = 0.0
        self.uncertainty_pixels = 0
        self.uncertain_pixels = 0  # above 0.5
        self.has_uncertainty = False
        self._ds: dict[str, Any] = {}

    def open(self) -> None:
        k = len(self.classes)
        specs = {
            "labels": (1, "uint8", 0),
            "confidence": (1, "uint8", 0),
            "probabilities": (k, "float32", float("nan")),
            "uncertainty": (1, "uint8", 0),
        }
        for role, path in self.paths.items():
            count, dtype, nodata = specs[role]
            prof = tiled_gtiff_profile(
                self.profile, count=count, dtype=dtype, nodata=nodata, blocksize=self.blocksize
            )
            ds = rasterio.open(path, "w", **prof)
            self._ds[role] = ds
            if role == "labels":
                ds.write_colormap(1, colormap(self.classes))
                ds.update_tags(**label_tags(self.classes, self.model_name))
                ds.set_band_description(1, "labels")
            elif role == "confidence":
                ds.set_band_description(1, "confidence")
                ds.scales = (1.0 / 255.0,)
                ds.offsets = (0.0,)
                ds.update_tags(ENCODING="uint8 = round(255 * max class probability); 0 = nodata")
            elif role == "uncertainty":
                ds.set_band_description(1, "uncertainty")
                ds.scales = (1.0 / 255.0,)
                ds.offsets = (0.0,)
                ds.update_tags(
                    ENCODING="uint8 = max(1, round(255 * H(p) / ln K)), normalized entropy of "
                    "the class probabilities; 0 = nodata"
                )
            else:
                for c in self.classes:
                    ds.set_band_description(c.value, c.name)

    def write(self, tile: Tile, outputs: dict[str, np.ndarray], invalid: np.ndarray | None) -> None:
        labels = outputs["labels"]
        window = tile.core
        self._ds["labels"].write(labels, 1, window=window)
        self.counts += np.bincount(labels.ravel(), minlength=self.counts.size)[: self.counts.size]
        if "confidence" in self._ds:
            conf = np.clip(np.rint(outputs["confidence"] * 255.0), 1, 255).astype(np.uint8)
            if invalid is not None:
                conf[invalid] = 0
            self._ds["confidence"].write(conf, 1, window=window)
        if "probabilities" in self._ds:
            probs = np.array(outputs["probabilities"], dtype=np.float32)
            if invalid is not None:
                probs[:, invalid] = np.nan
            self._ds["probabilities"].write(probs, window=window)
        if "uncertainty" in outputs:
            u = outputs["uncertainty"]
            valid = labels != 0  # classified: not nodata, not background
            values = u[valid]
            self.has_uncertainty = True
            self.uncertainty_sum += float(values.sum(dtype=np.float64))
            self.uncertainty_pixels += int(values.size)
            self.uncertain_pixels += int(np.count_nonzero(values > 0.5))
            if "uncertainty" in self._ds:
                enc = np.clip(np.rint(u * 255.0), 1, 255).astype(np.uint8)
                enc[~valid] = 0
                self._ds["uncertainty"].write(enc, 1, window=window)

    def uncertainty_figures(self) -> tuple[float | None, float | None]:
        """(mean uncertainty, share above 0.5) over classified pixels; None when the
        probabilities were not computed (0.0 for a scene without classified pixels)."""
        if not self.has_uncertainty:
            return None, None
        n = self.uncertainty_pixels
        if n == 0:
            return 0.0, 0.0
        return self.uncertainty_sum / n, self.uncertain_pixels / n

    def close(self) -> None:
        while self._ds:
            _, ds = self._ds.popitem()
            ds.close()


def write_quicklook(
    label_path: str | os.PathLike[str], png_path: str | os.PathLike[str], max_size: int = 1024
) -> dict[str, int]:
    """A paletted PNG preview of a label map, at most `max_size` px on its long side.

    Decimates with nearest neighbour (served from the COG's overviews), keeps
    the colour table, and makes 0 transparent. Returns the PNG's size.
    """
    with open_raster(label_path) as ds:
        scale = min(1.0, max_size / max(ds.width, ds.height))
        width = max(1, round(ds.width * scale))
        height = max(1, round(ds.height * scale))
        data = ds.read(1, out_shape=(height, width), resampling=Resampling.nearest)
        try:
            cmap = ds.colormap(1)
        except ValueError:
            cmap = None
    # Paletted PNGs are 8-bit: a label map is uint8 by construction.
    data = data.astype(np.uint8, copy=False)
    with atomic_path(png_path) as tmp:
        # A quicklook is a picture, deliberately without georeferencing (which
        # the PNG driver could only keep in a sidecar file).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(
                tmp, "w", driver="PNG", width=width, height=height, count=1, dtype="uint8",
                nodata=0,
            ) as out:
                out.write(data, 1)
                if cmap:
                    out.write_colormap(1, cmap)
        # The PNG driver may leave a PAM sidecar named after the temporary file.
        aux = tmp.with_name(tmp.name + ".aux.xml")
        if aux.exists():
            aux.unlink()
    return {"width": width, "height": height}
