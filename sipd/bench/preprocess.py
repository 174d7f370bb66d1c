"""Benchmark of a preprocessor on a product of real size.

    python -m sipd.bench.preprocess [--sensor sentinel1|landsat|sentinel2|sentinel3]
        [--template S1_GRD.SAFE] [--dir bench-data] [--scale 1]

A product of real dimensions in the real layout is made and kept in --dir for
later runs: for Sentinel-1 from `template` (its manifest, annotation,
calibration and noise files; DN generated here, see sipd.bench.sar_products);
for Landsat (7,800 x 7,700, 7 bands, Collection 2 Level-2 with QA_PIXEL),
Sentinel-2 (10,980 x 10,980 at 10 m, 4 bands, L2A with SCL) and Sentinel-3
(an OLCI EFR swath, 4,091 x 4,865, 4 bands) by sipd.bench.landsat_products,
sentinel2_products and sentinel3_products. Then the same
code the preprocess job runs turns it into a COG (Sentinel-1: geocoded,
speckle-filtered dB).
Prints one JSON line: wall seconds, seconds per step, CPU seconds, peak RSS
(VmHWM of this process: it does nothing else) and the load average it ran under.
`sipctl bench preprocess` runs this in a child process and shows the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sipd.bench.throughput import cpu_seconds, peak_rss_mb

SENSORS = ("sentinel1", "landsat", "sentinel2", "sentinel3")
# Clouds, shadows and fill masked, as an operational recipe would.
OPTICAL_OPTIONS = {
    "landsat": {"mask": "fill,dilated_cloud,cloud,shadow"},
    "sentinel2": {"mask": "cloud,cloud_shadow"},
    "sentinel3": {"bands": "Oa04,Oa06,Oa08,Oa17", "mask": "invalid"},
}
# The target: 40 m, speckle-filtered, dB, geocoded (UTM of the scene).
DEFAULT_OPTIONS = {
    "multilook": "4x4",
    "speckle": "refined-lee:7",
    "db": "true",
    "crs": "auto",
    "resolution": "40",
}


def default_template() -> Path | None:
    """The real S1 GRD metadata in ../shared/fixtures beside a source checkout."""
    root = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sentinel1"
    found = sorted(root.glob("S1*_GRD*.SAFE")) if root.is_dir() else []
    return found[0] if found else None


def product(template: Path, folder: Path, scale: int, pols: tuple[str, ...]) -> Path:
    from sipd.bench.sar_products import make_s1_product

    dest = folder / f"scale{scale}-{'-'.join(pols)}" / template.name
    if not (dest / "manifest.safe").is_file():
        if dest.exists():
            import shutil

            shutil.rmtree(dest)
        make_s1_product(template, dest, scale=scale, polarisations=pols)
    return dest


def measure(product: Path, sensor: str, options: dict[str, str], out: Path) -> dict[str, Any]:
    """Preprocess `product` as the job does, with wall and CPU seconds, peak RSS and load."""
    from sipd.preprocess.runner import preprocess
    from sipd.progress import JobContext
    from sipd.recipes import make_step

    step = make_step(sensor, options)
    load = os.getloadavg()[0]
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    result = preprocess(str(product), str(out), step, JobContext(), overwrite=True)
    seconds = time.perf_counter() - t0
    info = result["info"]
    return {
        "product": str(product),
        "sensor": sensor,
        "options": step.options.model_dump(mode="json"),
        "seconds": round(seconds, 2),
        "step_seconds": result["step_seconds"],
        "cpu_s": round(cpu_seconds() - cpu0, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "load_avg": round(load, 2),
        "cpus": os.cpu_count(),
        "output": str(out),
        "output_size": [info["width"], info["height"], info["band_count"]],
        "crs": info["crs"],
    }


def run_optical(args: argparse.Namespace) -> dict[str, Any]:
    """Landsat, Sentinel-2 or Sentinel-3: the product made once (kept in --dir), then
    preprocessed."""
    folder = Path(args.dir).expanduser().resolve() / f"{args.sensor}-scale{args.scale}"
    marker = folder / ".complete"
    t = time.perf_counter()
    if args.sensor == "landsat":
        from sipd.bench.landsat_products import make_landsat_product

        width, height, bands = 7800 // args.scale, 7700 // args.scale, 7
        if not marker.is_file():
            make_landsat_product(folder, width=width, height=height, bands=bands)
    elif args.sensor == "sentinel2":
        from sipd.bench.sentinel2_products import make_s2_product

        width = height = 10980 // args.scale // 6 * 6  # the 10, 20 and 60 m grids nest
        bands = 4
        if not marker.is_file():
            make_s2_product(folder, size=width)
    else:
        from sipd.bench.sentinel3_products import make_s3_olci_product

        # An OLCI EFR swath: 4,091 lines of 4,865 columns at 300 m.
        width, height, bands = 4865 // args.scale, 4091 // args.scale, 4
        if not marker.is_file():
            make_s3_olci_product(folder, lines=height, columns=width)
    if not marker.is_file():
        marker.write_text("made\n")
    made = time.perf_counter() - t
    product = next(p for p in sorted(folder.iterdir()) if not p.name.startswith("."))
    options = {**OPTICAL_OPTIONS[args.sensor], **dict(i.partition("=")[::2] for i in args.option)}
    data = measure(product, args.sensor, options, folder.parent / "out" / f"{args.sensor}.tif")
    data.update(
        made_seconds=round(made, 1),
        input=f"{height} x {width} x {bands}",
        input_megapixels=round(width * height * bands / 1e6, 1),
    )
    return data


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.sensor != "sentinel1":
        return run_optical(args)
    template = Path(args.template) if args.template else default_template()
    if template is None or not (template / "manifest.safe").is_file():
        raise SystemExit(
            "give --template: a Sentinel-1 GRD .SAFE folder whose manifest, annotation, "
            "calibration and noise files the benchmark product is made from"
        )
    folder = Path(args.dir).expanduser().resolve()
    pols = tuple(p.strip().upper() for p in args.polarisations.split(",") if p.strip())
    t = time.perf_counter()
    safe = product(template, folder, args.scale, pols)
    made = time.perf_counter() - t
    options = {**DEFAULT_OPTIONS, **dict(item.partition("=")[::2] for item in args.option)}
    data = measure(safe, "sentinel1", options, folder / "out" / f"{safe.stem}_preprocessed.tif")
    lines, pixels = _size(safe)
    data.update(
        made_seconds=round(made, 1),
        input=f"{lines} x {pixels} x {len(pols)}",
        input_megapixels=round(lines * pixels * len(pols) / 1e6, 1),
        polarisations=list(pols),
    )
    return data


def _size(safe: Path) -> tuple[int, int]:
    from sipd.preprocess.sentinel1 import open_sentinel1

    p = open_sentinel1(str(safe))
    return p.lines, p.pixels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensor", default="sentinel1", choices=SENSORS)
    parser.add_argument("--template", default="", help="Sentinel-1 GRD .SAFE with real metadata")
    parser.add_argument("--dir", default="bench-data")
    parser.add_argument("--scale", type=int, default=1, help="shrink the product (1 = full size)")
    parser.add_argument("--polarisations", default="VV,VH")
    parser.add_argument("--option", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
