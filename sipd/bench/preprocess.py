"""Benchmark of the SAR preprocessing chain on a full-size product.

    python -m sipd.bench.preprocess --template S1_GRD.SAFE [--dir bench-data] [--scale 1]

A product of real dimensions in the real layout is made from `template` (its
manifest, annotation, calibration and noise files; DN generated here, see
sipd.bench.sar_products) and kept in --dir for later runs; then the same chain
the preprocess job runs turns it into a geocoded, speckle-filtered dB COG.
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sipd.contracts.preprocessing import PreprocessStep
    from sipd.preprocess.runner import preprocess
    from sipd.progress import JobContext
    from sipd.recipes import make_step

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
    options = dict(DEFAULT_OPTIONS)
    for item in args.option:
        name, _, value = item.partition("=")
        options[name] = value
    step: PreprocessStep = make_step("sentinel1", options)
    out = folder / "out" / f"{safe.stem}_preprocessed.tif"
    load = os.getloadavg()[0]
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    result = preprocess(str(safe), str(out), step, JobContext(), overwrite=True)
    seconds = time.perf_counter() - t0
    info = result["info"]
    lines, pixels = _size(safe)
    return {
        "product": str(safe),
        "made_seconds": round(made, 1),
        "lines": lines,
        "pixels": pixels,
        "polarisations": list(pols),
        "input_megapixels": round(lines * pixels * len(pols) / 1e6, 1),
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


def _size(safe: Path) -> tuple[int, int]:
    from sipd.preprocess.sentinel1 import open_sentinel1

    p = open_sentinel1(str(safe))
    return p.lines, p.pixels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
