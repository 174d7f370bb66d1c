"""Which raster bands feed the model, in the project's band order."""

from __future__ import annotations

import rasterio

from sipd.errors import InvalidArgument


def band_indexes(ds: rasterio.DatasetReader, bands: list[str], scene: str) -> list[int]:
    """1-based raster band indexes for `bands`, matched by band description.

    Names match exactly, else case-insensitively. A raster without any band
    descriptions (plain TIFF, PNG) is taken positionally when its band count
    equals len(bands), since there is nothing else to go by.
    """
    if not bands:
        raise InvalidArgument("bands is empty; list the band names the model uses, e.g. [B1, B2]")
    names = [d or "" for d in ds.descriptions]
    if not any(names):
        if ds.count == len(bands):
            return list(range(1, ds.count + 1))
        raise InvalidArgument(
            f"scene {scene!r} has {ds.count} unnamed band(s) but the project expects "
            f"{len(bands)} ({', '.join(bands)}); name the bands or give the project "
            "the scene's band count"
        )
    exact = {n: i + 1 for i, n in enumerate(names) if n}
    folded = {n.casefold(): i + 1 for i, n in enumerate(names) if n}
    out, missing = [], []
    for band in bands:
        idx = exact.get(band) or folded.get(band.casefold())
        if idx is None:
            missing.append(band)
        else:
            out.append(idx)
    if missing:
        raise InvalidArgument(
            f"scene {scene!r} lacks band(s) {', '.join(missing)}; it has "
            f"{', '.join(n or '?' for n in names)}"
        )
    return out
