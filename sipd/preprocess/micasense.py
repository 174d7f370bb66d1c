"""The micasense preprocessor: a MicaSense RedEdge/Altum-style capture (one 16-bit TIFF
frame per band, IMG_<capture>_<band>.tif) to one scene of aligned bands.

Steps: find the capture's frames and check that they belong together; raw values to
radiance with each frame's own calibration (micasense_meta: MicaSense's radiometric
model); radiance to reflectance from a calibration-panel capture or from the downwelling
light sensor (DLS), or radiance left as it is; every band registered onto the first one
(micasense_align); written block by block through band_stack.write_stack.

Reflectance, as in MicaSense's tutorials ("MicaSense RedEdge and Altum Image Processing
Tutorials", notebook 1, and micasense/image.py `reflectance()`):
  panel: rho = albedo * L / mean(L over the panel's area in the panel capture)
         (irradiance pi * L_panel / albedo, then rho = pi * L / irradiance);
  dls:   rho = pi * L / E, E = the frame's XMP Irradiance (DLS spectral irradiance,
         scaled to W/m^2/nm as MicaSense's metadata.py does, see micasense_meta;
         tagged MICASENSE_DLS_IRRADIANCE_SOURCE) as recorded: no correction for the
         sensor's tilt or the sun's angle
         (MicaSense's code derives a horizontal irradiance from them); a simplification
         that is exact only for a level sensor under a diffuse sky.
The frames have no map: the output grid is the first band's pixel grid, no CRS.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.windows import Window

from sipd.contracts.options.micasense import MicasenseOptions
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.paths import require_regular
from sipd.preprocess.band_stack import RunResult, StackGrid, write_stack
from sipd.preprocess.micasense_align import Warp, estimate_warp, gradient_magnitude
from sipd.preprocess.micasense_meta import FRAME_NAME, Frame, read_frame
from sipd.preprocess.product_files import open_measurement
from sipd.preprocess.streaming import DatasetsPerThread
from sipd.progress import JobContext
from sipd.raster import check_files_read

# Band names as the common names (the slug of XMP BandName otherwise).
COMMON_NAMES = {"blue": "blue", "green": "green", "red": "red", "rededge": "rededge",
                "nir": "nir", "panchro": "pan", "lwir": "lwir"}  # fmt: skip
# The panel's area must be a uniform target: the coefficient of variation of its
# PANEL_BLOCK x PANEL_BLOCK block means is ~1 % on a panel (fixtures) and 3-6 % even on
# smooth concrete; above PANEL_MAX_CV the region holds something else (an edge, the QR
# code, the ground).
PANEL_BLOCK = 8
PANEL_MAX_CV = 0.025
# More than this fraction of saturated (or outside-the-frame) pixels in the region
# makes its mean unusable.
PANEL_MAX_BAD = 0.01
# A panel reads well above the black level: less than 1 % of the sensor's range is dark.
PANEL_MIN_SIGNAL = 0.01


@dataclass
class Capture:
    """The frames of one capture in band-number order, thermal bands left out."""

    prefix: str
    frames: list[Frame]
    skipped: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [f.output_name for f in self.frames]


def accepts(path: Path) -> bool:
    """A MicaSense frame (IMG_xxxx_n.tif with MicaSense radiometric XMP), or a folder
    holding such frames (one of them is sniffed). Never raises."""
    try:
        if path.is_dir():
            with os.scandir(path) as entries:
                first = next((Path(e.path) for e in entries if FRAME_NAME.match(e.name)), None)
            return first is not None and _sniff(first)
        return bool(FRAME_NAME.match(path.name)) and path.is_file() and _sniff(path)
    except Exception:  # noqa: BLE001 - a sniff answers no, whatever went wrong
        return False


def _sniff(path: Path) -> bool:
    check_files_read([str(path)])
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags.get(700)
        xmp = tag.value if tag is not None else b""
    xmp = xmp if isinstance(xmp, bytes) else str(xmp).encode()
    return b"RadiometricCalibration" in xmp and b"CentralWavelength" in xmp


def run(
    source: Path,
    step: PreprocessStep,
    output: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int,
) -> RunResult:
    options = step.options
    if not isinstance(options, MicasenseOptions):
        raise TypeError(f"micasense needs MicasenseOptions, not {type(options).__name__}")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    ctx.progress("open", 0.0, "reading the capture's metadata", force=True)
    capture = find_capture(Path(source), "capture")
    frames = select_bands(capture, options.bands)
    black = {f.output_name: f.black_level(options.black_level) for f in frames}
    seconds["open"] = time.perf_counter() - t
    ctx.check_cancelled()

    t = time.perf_counter()
    method = options.method
    calibration = _calibration(method, capture, frames, options, ctx)
    seconds["calibrate"] = time.perf_counter() - t
    ctx.check_cancelled()

    t = time.perf_counter()
    warps = align(frames, black, options, ctx, "align")
    seconds["align"] = time.perf_counter() - t
    ctx.check_cancelled()

    reference = frames[0]
    grid = StackGrid(reference.width, reference.height, None, Affine.identity())
    datasets = DatasetsPerThread(opener=open_measurement)
    mask_saturated = "saturated" in options.mask
    factors = calibration.factors

    def read_block(row0: int, row1: int) -> np.ndarray:
        out = np.empty((len(frames), row1 - row0, grid.width), dtype=np.float32)
        for i, frame in enumerate(frames):
            radiance = _aligned_rows(
                frame, warps[i], black[frame.output_name], row0, row1, grid.width,
                mask_saturated, datasets.get,
            )  # fmt: skip
            out[i] = radiance * np.float32(factors[i])
        # A pixel that any band lacks (outside its shifted frame, saturated) is nodata
        # in every band: a classifier must not see a partial spectrum.
        out[:, np.isnan(out).any(axis=0)] = np.nan
        return out

    all_tags = {**_dataset_tags(capture, frames, options, calibration, warps), **tags}
    band_tags = [_band_tags(f, warps[i], black[f.output_name], calibration, i)
                 for i, f in enumerate(frames)]  # fmt: skip
    names = [f.output_name for f in frames]
    try:
        written = write_stack(
            output, grid, names, read_block, ctx, all_tags, threads=threads, band_tags=band_tags
        )
        seconds.update(written)
    finally:
        datasets.close()
    metadata = {
        "camera": f"{reference.make} {reference.model}".strip(),
        "capture_id": reference.capture_id,
        "bands": ",".join(f.output_name for f in frames),
        "reflectance": method,
        "alignment": "; ".join(
            f"{f.output_name}: {w.kind}" for f, w in zip(frames, warps, strict=True)
        ),
    }
    if capture.skipped:
        metadata["skipped"] = ",".join(capture.skipped)
    return RunResult(metadata["camera"] or "MicaSense", metadata, seconds)


# --- the capture ------------------------------------------------------------------------


def find_capture(path: Path, what: str) -> Capture:
    """The frames of the capture `path` names: a frame (its siblings with the same
    IMG_xxxx_ prefix) or a folder holding one capture's frames. `what` names it in errors
    ("capture", "panel capture")."""
    require_regular(path, what)
    if path.is_dir():
        folder, names = path, _frame_names(path)
        prefixes = sorted({FRAME_NAME.match(n).group(1).upper() for n in names})  # type: ignore[union-attr]
        if not prefixes:
            raise InvalidArgument(
                f"{what} folder {path} holds no MicaSense frames; accepted: a folder of one "
                "capture's frames IMG_xxxx_<band>.tif, or one of the frames"
            )
        if len(prefixes) > 1:
            raise InvalidArgument(
                f"{what} folder {path} holds {len(prefixes)} captures ({', '.join(prefixes[:5])}"
                f"{', ...' if len(prefixes) > 5 else ''}); name one frame of the capture "
                "(e.g. IMG_0001_1.tif) or a folder holding only that capture's frames"
            )
        prefix = prefixes[0]
    else:
        m = FRAME_NAME.match(path.name)
        if not m:
            raise InvalidArgument(
                f"{what} {path.name} is not a MicaSense frame; accepted: a frame named "
                "IMG_xxxx_<band>.tif or a folder holding one capture's frames"
            )
        folder, prefix = path.parent, m.group(1).upper()
        names = _frame_names(folder)
    mine = sorted(
        (n for n in names if FRAME_NAME.match(n).group(1).upper() == prefix),  # type: ignore[union-attr]
        key=lambda n: int(FRAME_NAME.match(n).group(2)),  # type: ignore[union-attr]
    )
    frames = []
    for name in mine:
        require_regular(folder / name, f"{what} frame")
        frames.append(read_frame(folder / name))
    return _check_capture(prefix, frames, what, folder)


def _frame_names(folder: Path) -> list[str]:
    check_files_read([str(folder)])
    with os.scandir(folder) as entries:
        return [e.name for e in entries if FRAME_NAME.match(e.name)]


def _check_capture(prefix: str, frames: list[Frame], what: str, folder: Path) -> Capture:
    """Refuse frame sets that do not make one capture: duplicated or missing band
    numbers, several capture ids, different sizes, two frames of one band."""
    where = f"{what} {prefix} in {folder}"
    numbers = [f.band_number for f in frames]
    duplicated = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicated:
        raise InvalidArgument(
            f"{where} has band {', '.join(map(str, duplicated))} more than once "
            f"({', '.join(f.path.name for f in frames if f.band_number in duplicated)}); "
            "keep one frame per band"
        )
    missing = sorted(set(range(min(numbers), max(numbers) + 1)) - set(numbers))
    if missing:
        raise InvalidArgument(
            f"{where} is incomplete: band {', '.join(map(str, missing))} is missing "
            f"(found bands {', '.join(map(str, numbers))}); copy every frame of the capture"
        )
    ids = sorted({f.capture_id for f in frames if f.capture_id})
    if len(ids) > 1:
        raise InvalidArgument(
            f"{where} mixes frames of different captures (XMP CaptureId "
            f"{', '.join(ids)}): its frames were not taken together; keep one capture's "
            "frames under one IMG_xxxx_ prefix"
        )
    thermal = [f for f in frames if f.thermal]
    reflective = [f for f in frames if not f.thermal]
    if not reflective:
        raise InvalidArgument(f"{where} has only thermal frames; micasense needs reflective bands")
    sizes = sorted({(f.width, f.height) for f in reflective})
    if len(sizes) > 1:
        raise InvalidArgument(
            f"{where} has frames of different sizes ("
            + ", ".join(f"{f.path.name} {f.width}x{f.height}" for f in reflective)
            + "): not frames of one camera"
        )
    names = [f.output_name for f in reflective]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidArgument(
            f"{where} has band {', '.join(twice)} in more than one frame; each band "
            "(XMP BandName and CentralWavelength) must come once"
        )
    skipped = [f"{f.output_name} (thermal)" for f in thermal]
    return Capture(prefix, reflective, skipped)


def select_bands(capture: Capture, wanted: list[str]) -> list[Frame]:
    """The frames the `bands` option names, in its order (all, in band order, if empty)."""
    if not wanted:
        return list(capture.frames)
    chosen = []
    for name in wanted:
        hits = [f for f in capture.frames if name in (f.output_name, f.slug)]
        if not hits:
            raise InvalidArgument(
                f"band {name!r} is not in capture {capture.prefix}; its bands are "
                f"{', '.join(capture.names)}"
            )
        if len(hits) > 1:
            raise InvalidArgument(
                f"band {name!r} matches {', '.join(f.output_name for f in hits)}; name one of them"
            )
        chosen.append(hits[0])
    return chosen


# --- radiance and alignment --------------------------------------------------------------


def _read(frame: Frame, window: Window | None, opener: Callable[[str], object]) -> np.ndarray:
    ds = opener(str(frame.path))
    try:
        raw = ds.read(1, window=window)  # type: ignore[attr-defined]
    except RasterioError as exc:
        raise InvalidArgument(
            f"frame {frame.path} is truncated or corrupt ({exc}); copy it again from the camera"
        ) from exc
    return raw


def full_radiance(frame: Frame, black: float, mask_saturated: bool) -> np.ndarray:
    """The whole frame's radiance, NaN where saturated when asked."""
    ds = open_measurement(str(frame.path))
    try:
        raw = _read(frame, None, lambda _: ds)
    finally:
        ds.close()
    if raw.shape != (frame.height, frame.width):
        raise InvalidArgument(f"frame {frame.path} reads as {raw.shape}, its tags say otherwise")
    return _radiance(frame, raw, 0, black, mask_saturated)


def _radiance(
    frame: Frame, raw: np.ndarray, row0: int, black: float, mask_saturated: bool
) -> np.ndarray:
    """Radiance of the frame rows from row0 (raw DN), NaN where saturated when asked."""
    radiance = frame.radiance(raw, row0, black)
    if mask_saturated:
        radiance[raw >= frame.saturation] = np.nan
    return radiance


def align(
    frames: list[Frame],
    black: dict[str, float],
    options: MicasenseOptions,
    ctx: JobContext,
    stage: str,
    radiances: list[np.ndarray] | None = None,
) -> list[Warp]:
    """One warp per frame onto frames[0] (identity for it, and for all with align=none).
    `radiances`: the frames' radiance when the caller has it already."""
    if options.align == "none" or len(frames) == 1:
        return [Warp.identity() for _ in frames]
    what = "the panel capture's bands" if stage == "panel" else "the bands"
    ctx.progress(stage, 0.0, f"registering {what}", force=True)

    def gradient(i: int) -> np.ndarray:
        if radiances is not None:
            return gradient_magnitude(radiances[i])
        return gradient_magnitude(full_radiance(frames[i], black[frames[i].output_name], False))

    reference = gradient(0)
    warps = [Warp(Warp.identity().coefficients, "reference")]
    for i, frame in enumerate(frames[1:], start=1):
        ctx.check_cancelled()
        moving = gradient(i)
        warp = estimate_warp(reference, moving, options.align)
        if warp is None:
            raise InvalidArgument(
                f"band {frame.output_name} could not be registered onto "
                f"{frames[0].output_name} (no plausible offset: a featureless or "
                "mismatched frame); use align=none to stack the frames as they are"
            )
        warps.append(warp)
        ctx.progress(stage, i / (len(frames) - 1), f"registered {frame.output_name}")
    return warps


def _aligned_rows(
    frame: Frame,
    warp: Warp,
    black: float,
    row0: int,
    row1: int,
    width: int,
    mask_saturated: bool,
    opener: Callable[[str], object],
) -> np.ndarray:
    """Radiance of reference rows row0..row1 of this band, warped onto the reference."""
    s0, s1 = warp.rows_needed(row0, row1, width, frame.height)
    if s1 <= s0:
        return np.full((row1 - row0, width), np.nan, dtype=np.float32)
    raw = _read(frame, Window(0, s0, frame.width, s1 - s0), opener)
    radiance = _radiance(frame, raw, s0, black, mask_saturated)
    return warp.sample(radiance, s0, row0, row1, width)


# --- reflectance --------------------------------------------------------------------------


@dataclass
class Calibration:
    """Radiance-to-output factor per selected band, and what it came from."""

    method: str
    factors: list[float]
    panel: Capture | None = None
    panel_radiance: list[float] = field(default_factory=list)
    panel_cv: list[float] = field(default_factory=list)
    albedo: list[float] = field(default_factory=list)
    irradiance: list[float] = field(default_factory=list)
    panel_warps: list[Warp] = field(default_factory=list)


def _calibration(
    method: str,
    capture: Capture,
    frames: list[Frame],
    options: MicasenseOptions,
    ctx: JobContext,
) -> Calibration:
    if method == "radiance":
        return Calibration(method, [1.0] * len(frames))
    if method == "dls":
        irradiance = [f.irradiance for f in frames]
        for f, e in zip(frames, irradiance, strict=True):
            if not (np.isfinite(e) and e > 0):
                raise InvalidArgument(
                    f"frame {f.path.name} has no DLS irradiance (XMP Irradiance) for "
                    f"reflectance=dls; give a panel capture (panel=..., panel_albedo=..., "
                    "panel_region=...) or use reflectance=radiance"
                )
        return Calibration(method, [float(np.pi / e) for e in irradiance], irradiance=irradiance)
    return panel_calibration(capture, frames, options, ctx)


def panel_calibration(
    capture: Capture, frames: list[Frame], options: MicasenseOptions, ctx: JobContext
) -> Calibration:
    """Factors albedo / mean(L_panel) from the panel capture (MicaSense tutorial 1)."""
    if not options.panel:
        raise InvalidArgument(
            "reflectance=panel needs the panel option: a frame or folder of the "
            "calibration-panel capture (or use reflectance=dls or radiance)"
        )
    albedo = _albedo(capture, frames, options.panel_albedo)
    if not options.panel_region:
        raise InvalidArgument(
            "reflectance from a panel needs panel_region: the panel's reflective area in "
            "the panel capture's first band as x0,y0,x1,y1 pixels, e.g. 610,490,780,660"
        )
    panel = find_capture(Path(options.panel), "panel capture")
    by_name = {f.output_name: f for f in panel.frames}
    missing = [f.output_name for f in frames if f.output_name not in by_name]
    if missing:
        raise InvalidArgument(
            f"the panel capture {panel.prefix} has bands {', '.join(panel.names)} and the "
            f"scene has {', '.join(f.output_name for f in frames)}: no panel frame for "
            f"{', '.join(missing)} (band names and wavelengths must match); use a panel "
            "capture taken with the same camera"
        )
    panel_frames = [by_name[f.output_name] for f in frames]
    x0, y0, x1, y1 = options.panel_region
    ref = panel_frames[0]
    if min(x1 - x0, y1 - y0) < 2 * PANEL_BLOCK:
        raise InvalidArgument(
            f"panel_region {x0},{y0},{x1},{y1} is too small: at least {2 * PANEL_BLOCK} "
            "pixels each way are needed to check that it is a uniform panel"
        )
    if x1 > ref.width or y1 > ref.height:
        raise InvalidArgument(
            f"panel_region {x0},{y0},{x1},{y1} is outside the panel frame "
            f"({ref.width} x {ref.height} pixels)"
        )
    black = {f.output_name: f.black_level(options.black_level) for f in panel_frames}
    radiances = [full_radiance(f, black[f.output_name], True) for f in panel_frames]
    # The panel capture is registered on its own: at 1 m its parallax is not the scene's.
    warps = align(panel_frames, black, options, ctx, "panel", radiances)
    means, cvs = [], []
    for frame, warp, radiance in zip(panel_frames, warps, radiances, strict=True):
        region = warp.sample(radiance, 0, y0, y1, ref.width)[:, x0:x1]
        mean, cv = _panel_stats(frame, region, options.panel_region)
        means.append(mean)
        cvs.append(cv)
    factors = [a / m for a, m in zip(albedo, means, strict=True)]
    return Calibration("panel", factors, panel, means, cvs, albedo, panel_warps=warps)


def _albedo(capture: Capture, frames: list[Frame], values: list[float]) -> list[float]:
    """panel_albedo per selected frame: one value for all, or one per capture band."""
    if not values:
        raise InvalidArgument(
            "reflectance from a panel needs panel_albedo: the panel's reflectance from its "
            f"calibration card, one value or one per band ({', '.join(capture.names)})"
        )
    if len(values) == 1:
        return [values[0]] * len(frames)
    if len(values) != len(capture.frames):
        raise InvalidArgument(
            f"panel_albedo has {len(values)} values; the capture has {len(capture.frames)} "
            f"bands ({', '.join(capture.names)}): give one value, or one per band in this order"
        )
    per_name = dict(zip(capture.names, values, strict=True))
    return [per_name[f.output_name] for f in frames]


def _panel_stats(frame: Frame, region: np.ndarray, box: list[int]) -> tuple[float, float]:
    """Mean radiance of the panel's area and the coefficient of variation of its 8 x 8
    block means; an area that is not a uniform, unsaturated, bright target is refused."""
    where = f"panel_region {','.join(map(str, box))} in {frame.path.name} ({frame.output_name})"
    bad = float(np.mean(~np.isfinite(region)))
    if bad > PANEL_MAX_BAD:
        raise InvalidArgument(
            f"{where} has {bad:.1%} saturated or out-of-frame pixels: the panel is "
            "overexposed or the region leaves the frame; choose a region inside the panel "
            "or a panel capture taken with a shorter exposure"
        )
    values = region.astype(np.float64)
    mean = float(np.nanmean(values))
    # Block means average the sensor's pixel noise away (a panel's pixels vary by ~2 %,
    # as much as some ground): what is left is the target's own texture.
    rows, cols = (s // PANEL_BLOCK * PANEL_BLOCK for s in values.shape)
    blocks = np.nanmean(
        values[:rows, :cols].reshape(rows // PANEL_BLOCK, PANEL_BLOCK, -1, PANEL_BLOCK),
        axis=(1, 3),
    )
    cv = float(np.nanstd(blocks) / mean) if mean > 0 else float("inf")
    # The normalised signal that mean radiance is (frame centre, no vignetting):
    # below PANEL_MIN_SIGNAL the region is dark ground or shadow.
    signal = mean * frame.gain * frame.exposure / frame.radiometric[0]
    if signal < PANEL_MIN_SIGNAL or cv > PANEL_MAX_CV:
        raise InvalidArgument(
            f"a panel frame without a panel: {where} is not a uniform bright target "
            f"(variation of its {PANEL_BLOCK}x{PANEL_BLOCK} means {cv:.1%}, at most "
            f"{PANEL_MAX_CV:.1%} accepted; signal {signal:.1%} of the sensor's range, at "
            f"least {PANEL_MIN_SIGNAL:.0%}); point panel_region at the panel's reflective "
            "area, inside its edges"
        )
    return mean, cv


# --- tags ---------------------------------------------------------------------------------


def _dataset_tags(
    capture: Capture,
    frames: list[Frame],
    options: MicasenseOptions,
    calibration: Calibration,
    warps: list[Warp],
) -> dict[str, str]:
    ref = frames[0]

    def per_band(values: list[object]) -> str:
        return ",".join(f"{f.output_name}:{v}" for f, v in zip(frames, values, strict=True))

    units = "W/m2/sr/nm" if calibration.method == "radiance" else "reflectance factor (0-1)"
    tags = {
        "MICASENSE_CAMERA": f"{ref.make} {ref.model}".strip(),
        "MICASENSE_SERIAL": ref.serial,
        "MICASENSE_SOFTWARE": ref.software,
        "MICASENSE_CAPTURE_ID": ref.capture_id,
        "MICASENSE_FLIGHT_ID": ref.flight_id,
        "MICASENSE_CAPTURE": capture.prefix,
        "MICASENSE_DATETIME": ref.taken,
        "MICASENSE_REFLECTANCE": calibration.method,
        "MICASENSE_UNITS": units,
        "MICASENSE_BLACK_LEVEL": options.black_level,
        "MICASENSE_REFERENCE_BAND": ref.output_name,
        "MICASENSE_ALIGNMENT": per_band([w.kind for w in warps]),
        "MICASENSE_EXPOSURE": per_band([f.exposure for f in frames]),
        "MICASENSE_GAIN": per_band([f.gain for f in frames]),
        "SIPD_MASK": ",".join(options.mask),
    }
    if ref.gps is not None:
        tags["MICASENSE_GPS"] = "{:.7f},{:.7f},{:.2f}".format(*ref.gps)
    if capture.skipped:
        tags["MICASENSE_SKIPPED"] = ",".join(capture.skipped)
    if calibration.method == "dls":
        tags["MICASENSE_DLS_IRRADIANCE"] = per_band(calibration.irradiance)
        tags["MICASENSE_DLS_IRRADIANCE_SOURCE"] = per_band([f.irradiance_source for f in frames])
    if calibration.panel is not None:
        pf = calibration.panel.frames[0]
        tags["MICASENSE_PANEL_CAPTURE"] = calibration.panel.prefix
        tags["MICASENSE_PANEL_CAPTURE_ID"] = pf.capture_id
        tags["MICASENSE_PANEL_ALBEDO"] = per_band(calibration.albedo)
        tags["MICASENSE_PANEL_REGION"] = ",".join(map(str, options.panel_region))
        tags["MICASENSE_PANEL_RADIANCE"] = per_band(calibration.panel_radiance)
    return tags


def _band_tags(
    frame: Frame, warp: Warp, black: float, calibration: Calibration, i: int
) -> dict[str, str]:
    tags = {
        "band_name": frame.band_name,
        "band_number": str(frame.band_number),
        "wavelength": f"{frame.wavelength:g}",
        "fwhm": f"{frame.fwhm:g}",
        "common_name": COMMON_NAMES.get(frame.slug, frame.slug),
        "exposure_time": repr(frame.exposure),
        "gain": repr(frame.gain),
        "black_level": repr(black),
        "radiometric_calibration": ",".join(map(repr, frame.radiometric)),
        "alignment": warp.describe(),
        # Full precision: output pixel (r, c) is this band's (row, col) =
        # (a0 + a1 r + a2 c, b0 + b1 r + b2 c).
        "alignment_coefficients": ",".join(map(repr, warp.coefficients)),
        "factor": repr(calibration.factors[i]),
    }
    if calibration.irradiance:
        tags["irradiance"] = repr(calibration.irradiance[i])
        tags["irradiance_source"] = frame.irradiance_source
    if calibration.panel_radiance:
        tags["panel_radiance"] = repr(calibration.panel_radiance[i])
        tags["panel_cv"] = f"{calibration.panel_cv[i]:.4f}"
        tags["panel_alignment"] = calibration.panel_warps[i].describe()
        tags["panel_alignment_coefficients"] = ",".join(
            map(repr, calibration.panel_warps[i].coefficients)
        )
    return tags
