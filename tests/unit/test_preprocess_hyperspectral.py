"""The hyperspectral preprocessor on the real ENVI cube of ../shared/fixtures (PlantCV's
corn kernel cube: 43 samples x 31 lines x 580 bands, uint16, BIL, no byte order).

Expected values are computed here with separate code: the header parsed with a regex,
the pixels read with numpy.fromfile (little-endian, BIL = [line][band][sample]), float64.

- Reference calibration (flat field of push-broom imagers; Geladi, Burger & Lestander
  2004, Chemometr. Intell. Lab. Syst. 72:209-217): R = r_w * (raw - dark) / (white - dark),
  white and dark averaged over their lines, per band and sample.
- Principal components (Jolliffe 2002, Principal Component Analysis, ch. 1-3): the right
  singular vectors of the centred data matrix (np.linalg.svd here), compared with the
  fitted basis up to sign.
"""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from sipd.contracts.options.hyperspectral import HyperspectralOptions
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess import hyperspectral
from sipd.preprocess.hyperspectral_pca import fit_projection
from sipd.progress import JobCancelled, JobContext
from tests.support import shared_fixture

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

CUBE = "hyperspectral_envi/corn-kernel-hyperspectral"


# ---------------------------------------------------------------- independent helpers


def header_fields(path: Path) -> dict[str, str]:
    """key -> value of an ENVI header, by regex ({...} values across lines)."""
    text = path.read_text()
    fields = {}
    for m in re.finditer(r"^\s*([^=;\n]+?)\s*=\s*(\{[^}]*\}|[^\n]*)", text, re.M):
        fields[m.group(1).strip().lower()] = m.group(2).strip().strip("{}").strip()
    return fields


def wavelengths_of(path: Path) -> np.ndarray:
    return np.array([float(v) for v in header_fields(path)["wavelength"].split(",")])


def read_cube(hdr: Path, data: Path, byteorder: str = "<") -> np.ndarray:
    """float64 [bands, lines, samples] from the raw bytes (uint16 BIL)."""
    f = header_fields(hdr)
    samples, lines, bands = int(f["samples"]), int(f["lines"]), int(f["bands"])
    assert f["data type"] == "12" and f["interleave"] == "bil"
    raw = np.fromfile(data, dtype=f"{byteorder}u2").reshape(lines, bands, samples)
    return raw.transpose(1, 0, 2).astype(np.float64)


def write_envi(
    path: Path,
    cube: np.ndarray,
    wavelengths: np.ndarray | None,
    extra: str = "",
    byte_order: int | None = 0,
) -> Path:
    """An ENVI BIL uint16 cube [bands, lines, samples] at path.hdr / path.raw."""
    bands, lines, samples = cube.shape
    data = np.ascontiguousarray(cube.transpose(1, 0, 2)).astype("<u2" if byte_order != 1 else ">u2")
    path.with_suffix(".raw").write_bytes(data.tobytes())
    text = f"ENVI\nsamples = {samples}\nlines = {lines}\nbands = {bands}\ndata type = 12\n"
    text += "interleave = bil\n"
    if byte_order is not None:
        text += f"byte order = {byte_order}\n"
    if wavelengths is not None:
        text += (
            "wavelength units = nm\nwavelength = {\n"
            + ",\n".join(f"{w:g}" for w in wavelengths)
            + "}\n"
        )
    path.with_suffix(".hdr").write_text(text + extra)
    return path.with_suffix(".hdr")


@pytest.fixture(scope="module")
def fixture_cube() -> tuple[Path, np.ndarray, np.ndarray]:
    hdr = shared_fixture(CUBE + ".hdr")
    data = shared_fixture(CUBE + ".raw")
    return hdr, read_cube(hdr, data), wavelengths_of(hdr)


@pytest.fixture(scope="module")
def references(
    tmp_path_factory: pytest.TempPathFactory, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A white (5 lines) and a dark (3 lines) reference with the cube's bands and width."""
    _, raw, w = fixture_cube
    folder = tmp_path_factory.mktemp("refs")
    rng = np.random.default_rng(7)
    white = rng.integers(3000, 4000, size=(raw.shape[0], 5, raw.shape[2]))
    dark = rng.integers(0, 30, size=(raw.shape[0], 3, raw.shape[2]))
    return (
        write_envi(folder / "white", white, w),
        write_envi(folder / "dark", dark, w),
        white.astype(np.float64),
        dark.astype(np.float64),
    )


def run(source: Path, out: Path, ctx: JobContext | None = None, **options: object) -> object:
    step = PreprocessStep(
        preprocessor="hyperspectral", options={k: str(v) for k, v in options.items()}
    )
    return hyperspectral.run(source, step, out, ctx or JobContext(), {"SIPD_SOURCE": "t"}, 2)


def read(path: Path) -> tuple[np.ndarray, rasterio.DatasetReader]:
    ds = rasterio.open(path)
    return ds.read().astype(np.float64), ds


# ---------------------------------------------------------------- detection and header


def test_accepts_envi_forms_and_refuses_others(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    hdr = fixture_cube[0]
    assert hyperspectral.accepts(hdr)
    assert hyperspectral.accepts(hdr.with_suffix(".raw"))
    assert hyperspectral.accepts(hdr.parent)  # a folder holding one header
    text = tmp_path / "notes.hdr"
    text.write_text("not a header")
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=4, height=4, count=3, dtype="uint8") as d:
        d.write(np.zeros((3, 4, 4), np.uint8))
    for path in (text, plain, tmp_path / "missing.hdr", tmp_path, Path("/dev/null")):
        assert not hyperspectral.accepts(path), path


def test_header_read_as_written(fixture_cube: tuple[Path, np.ndarray, np.ndarray]) -> None:
    """Wavelengths, size and byte order (none in the header: little-endian assumed, as
    GDAL does; the 12-bit camera's values only make sense that way)."""
    hdr, raw, w = fixture_cube
    cube = hyperspectral.open_cube(hdr, HyperspectralOptions())
    assert (cube.count, cube.height, cube.width) == raw.shape == (580, 31, 43)
    np.testing.assert_array_equal(cube.wavelengths, w)
    assert cube.crs is None and cube.good.all() and cube.fwhm is None
    assert "assumed" in cube.byte_order and "little" in cube.byte_order
    assert raw.max() < 4096  # 12-bit data read little-endian


# ---------------------------------------------------------------- calibration


def test_reflectance_matches_the_formula(
    tmp_path: Path,
    fixture_cube: tuple[Path, np.ndarray, np.ndarray],
    references: tuple[Path, Path, np.ndarray, np.ndarray],
) -> None:
    """R = 0.99 * (raw - dark) / (white - dark), per band and sample, bands 600-650 nm."""
    hdr, raw, w = fixture_cube
    white_hdr, dark_hdr, white, dark = references
    out = tmp_path / "refl.tif"
    result = run(hdr, out, white=white_hdr, dark=dark_hdr, white_reflectance=0.99,
                 wavelength_min=600, wavelength_max=650)  # fmt: skip
    keep = (w >= 600) & (w <= 650)
    wm, dm = white.mean(axis=1, keepdims=True), dark.mean(axis=1, keepdims=True)
    expected = (0.99 * (raw - dm) / (wm - dm))[keep]
    got, ds = read(out)
    with ds:
        assert ds.count == keep.sum() and ds.crs is None
        assert ds.descriptions == tuple(f"w{x:.1f}nm" for x in w[keep])
        assert float(ds.tags(1)["wavelength"]) == pytest.approx(w[keep][0])
        tags = ds.tags()
        assert (
            tags["HYPERSPECTRAL_WHITE"] == "white.hdr" and tags["HYPERSPECTRAL_DARK"] == "dark.hdr"
        )
        assert "(raw - dark) / (white - dark)" in tags["HYPERSPECTRAL_CALIBRATION"]
        assert tags["SIPD_SOURCE"] == "t"
    np.testing.assert_allclose(got, expected, rtol=2e-6, atol=1e-7)
    assert result.metadata["bands_kept"] == str(keep.sum())  # type: ignore[attr-defined]


def test_single_spectrum_white_and_dead_columns(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    """A white of one sample applies to every column; a dark no darker than the white
    (a dead detector element) gives nodata, not infinity."""
    hdr, raw, w = fixture_cube
    white = np.full((580, 1, 1), 3500.0)
    white[10] = 0  # band 11: white == dark
    white_hdr = write_envi(tmp_path / "w1", white, w)
    out = tmp_path / "o.tif"
    run(hdr, out, white=white_hdr, wavelength_max=420)
    got, ds = read(out)
    ds.close()
    with np.errstate(divide="ignore"):
        expected = (raw / white)[w <= 420]
    expected[10] = np.nan
    np.testing.assert_allclose(got, expected, rtol=2e-6)


def test_bad_bands_and_ignore_value(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    hdr, raw, w = fixture_cube
    shutil.copy(hdr.with_suffix(".raw"), tmp_path / "c.raw")
    bbl = np.ones(580, int)
    bbl[:5] = 0
    bbl[30] = 0
    value = raw[0, 0, 0]
    extra = "bbl = {" + ",".join(map(str, bbl)) + "}\n" + f"data ignore value = {value:g}\n"
    (tmp_path / "c.hdr").write_text(hdr.read_text() + "\n" + extra)
    out = tmp_path / "o.tif"
    run(tmp_path / "c.raw", out, wavelength_max=420)  # the data file named
    got, ds = read(out)
    with ds:
        assert ds.tags()["HYPERSPECTRAL_BAD_BANDS_DROPPED"] == "6"
    expected = np.where(raw == value, np.nan, raw)[(bbl == 1) & (w <= 420)]
    np.testing.assert_array_equal(got, expected)


def test_band_list_nearest_within_tolerance(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    hdr, raw, w = fixture_cube
    out = tmp_path / "o.tif"
    run(hdr, out, bands="650,450,550.3")
    got, ds = read(out)
    nearest = [int(np.argmin(np.abs(w - t))) for t in (650, 450, 550.3)]
    with ds:
        assert ds.descriptions == ("w650nm", "w450nm", "w550.3nm")
        assert [int(ds.tags(i + 1)["source_band"]) - 1 for i in range(3)] == nearest
    np.testing.assert_array_equal(got, raw[nearest])
    with pytest.raises(InvalidArgument, match="wrong wavelengths: no band .* 1200"):
        run(hdr, tmp_path / "x.tif", bands="550,1200")
    assert not (tmp_path / "x.tif").exists()


def test_byte_order_option_and_header(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    """Big-endian data: read right with 'byte order = 1', or byte_order=big without it."""
    _, raw, w = fixture_cube
    small = raw[100:103, :8, :9]
    for name, order, option in (("h", 1, "auto"), ("o", None, "big")):
        hdr = write_envi(tmp_path / name, small, w[100:103], byte_order=1)
        if order is None:  # drop the line: no byte order in the header
            hdr.write_text(hdr.read_text().replace("byte order = 1\n", ""))
        run(hdr, tmp_path / f"{name}.tif", byte_order=option)
        got, ds = read(tmp_path / f"{name}.tif")
        ds.close()
        np.testing.assert_array_equal(got, small)


def test_geotiff_cube_with_wavelengths(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    """A multi-band GeoTIFF with band tags wavelength (micrometres): read, its map kept."""
    _, raw, w = fixture_cube
    tif = tmp_path / "cube.tif"
    sub = raw[::50].astype(np.uint16)
    transform = from_origin(500000, 6000000, 0.5, 0.5)
    profile = dict(driver="GTiff", width=43, height=31, count=sub.shape[0], dtype="uint16",
                   crs=CRS.from_epsg(32633), transform=transform)  # fmt: skip
    with rasterio.open(tif, "w", **profile) as d:
        d.write(sub)
        for i, wl in enumerate(w[::50], start=1):
            d.update_tags(i, wavelength=f"{wl / 1000:.6f}", wavelength_units="Micrometers")
    assert hyperspectral.accepts(tif)
    out = tmp_path / "o.tif"
    run(tif, out, wavelength_max=800)
    got, ds = read(out)
    keep = w[::50] <= 800
    with ds:
        assert ds.crs == CRS.from_epsg(32633) and ds.transform == profile["transform"]
        assert ds.tags()["HYPERSPECTRAL_FORMAT"] == "GTiff"
        assert [float(ds.tags(i + 1)["wavelength"]) for i in range(ds.count)] == pytest.approx(
            w[::50][keep], abs=1e-3
        )
    np.testing.assert_array_equal(got, sub[keep])


# ---------------------------------------------------------------- principal components


def test_pca_fit_and_projection_match_svd(
    tmp_path: Path,
    fixture_cube: tuple[Path, np.ndarray, np.ndarray],
    references: tuple[Path, Path, np.ndarray, np.ndarray],
) -> None:
    """On every pixel (max_pixels above the cube's 1333), the basis spans the top right
    singular vectors of the centred calibrated spectra, and run() projects with it."""
    hdr, raw, w = fixture_cube
    white_hdr, dark_hdr, white, dark = references
    base = {"white": str(white_hdr), "dark": str(dark_hdr), "wavelength_min": 500.0,
            "wavelength_max": 560.0, "components": 4}  # fmt: skip
    fitted = fit_projection([hdr], HyperspectralOptions(**base), max_pixels=10_000)
    keep = (w >= 500) & (w <= 560)
    wm, dm = white.mean(axis=1, keepdims=True), dark.mean(axis=1, keepdims=True)
    x = ((raw - dm) / (wm - dm))[keep].reshape(keep.sum(), -1).T  # pixels x bands
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    basis = np.array(fitted["pca_basis"])
    np.testing.assert_allclose(fitted["pca_mean"], mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fitted["pca_wavelengths"], w[keep])
    assert basis.shape == (4, keep.sum())
    np.testing.assert_allclose(np.abs(np.sum(basis * vt[:4], axis=1)), 1.0, atol=1e-4)
    # Run with the fitted projection: the components, each up to its sign.
    out = tmp_path / "pc.tif"
    run(hdr, out, **{k: v for k, v in base.items()}, **{k: _text(v) for k, v in fitted.items()})
    got, ds = read(out)
    with ds:
        assert ds.descriptions == ("pc1", "pc2", "pc3", "pc4")
        assert ds.tags()["HYPERSPECTRAL_PCA_COMPONENTS"] == "4"
    expected = ((x - mean) @ vt[:4].T).T.reshape(4, 31, 43)
    signs = np.sign(np.sum(basis * vt[:4], axis=1))
    np.testing.assert_allclose(
        got, expected * signs[:, None, None], atol=1e-4 * np.abs(expected).max()
    )


def _text(value: object) -> str:
    """A fitted value as option text: lists as "a,b", the basis as rows "[..],[..]"."""
    assert isinstance(value, list)
    return ",".join(str(v) for v in value)


def test_pca_sample_is_bounded_and_reproducible(
    fixture_cube: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    hdr = fixture_cube[0]
    options = HyperspectralOptions(components=3, wavelength_min=700, wavelength_max=760)
    a = fit_projection([hdr], options, max_pixels=400)
    b = fit_projection([hdr, hdr], options, max_pixels=400)
    assert a == fit_projection([hdr], options, max_pixels=400)
    # Sampled subspaces stay close to each other (the leading component dominates).
    assert abs(np.dot(a["pca_basis"][0], b["pca_basis"][0])) > 0.99  # type: ignore[index]


def test_components_need_a_fit(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    with pytest.raises(InvalidArgument, match=r"fit it first \(sipctl recipe create"):
        run(fixture_cube[0], tmp_path / "o.tif", components=3)
    options = HyperspectralOptions(components=2, bands="500,600,700")
    fitted = fit_projection([fixture_cube[0]], options)
    # The same projection on a cube whose bands differ: refused.
    with pytest.raises(InvalidArgument, match="wrong wavelengths"):
        run(fixture_cube[0], tmp_path / "o.tif", components=2, bands="500,600,900",
            **{k: _text(v) for k, v in fitted.items()})  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad input


def test_bad_references_are_refused(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    hdr, raw, w = fixture_cube
    shifted = write_envi(tmp_path / "shifted", np.ones((580, 2, 43)) * 3000, w + 2.0)
    narrow = write_envi(tmp_path / "narrow", np.ones((580, 2, 40)) * 3000, w)
    fewer = write_envi(tmp_path / "fewer", np.ones((579, 2, 43)) * 3000, w[:579])
    out = tmp_path / "out" / "o.tif"
    cases = ((shifted, "wrong wavelengths: white reference .* band 1 is at 368.551"),
             (narrow, "40 samples wide, the cube 43"),
             (fewer, "wrong wavelengths: white reference .* 579 bands"))  # fmt: skip
    for ref, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            run(hdr, out, white=ref)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_bad_cubes_are_refused(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    hdr, raw, w = fixture_cube
    short = tmp_path / "short"
    write_envi(short, raw[:, :4, :5], w)
    data = short.with_suffix(".raw")
    data.write_bytes(data.read_bytes()[:-100])
    units = write_envi(tmp_path / "units", raw[:3, :2, :2], w[:3])
    units.write_text(units.read_text().replace("wavelength units = nm", "wavelength units = GHz"))
    lonely = tmp_path / "lonely.hdr"
    lonely.write_text(hdr.read_text())
    out = tmp_path / "out" / "o.tif"
    cases = ((short.with_suffix(".hdr"), "is short: 23100 bytes, but the header describes 23200"),
             (units, "wavelength units 'GHz' are not understood"),
             (lonely, "has no data file beside it"))  # fmt: skip
    for cube, message in cases:
        with pytest.raises(InvalidArgument, match=message):
            run(cube, out)
    with pytest.raises(InvalidArgument, match="keep none of the cube's bands"):
        run(hdr, out, wavelength_min=1100)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_cancel_leaves_no_output(
    tmp_path: Path, fixture_cube: tuple[Path, np.ndarray, np.ndarray]
) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelled):
        run(fixture_cube[0], tmp_path / "o.tif", JobContext(cancel_event=cancel))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- options


def test_options_from_text() -> None:
    o = HyperspectralOptions.model_validate(
        {"bands": "450, 550.5,650", "white": "/x/w.hdr", "components": "2",
         "pca_mean": "1,2,3", "pca_basis": "1,0,0;0,1,0", "pca_wavelengths": "450,550,650"}
    )  # fmt: skip
    assert o.bands == [450.0, 550.5, 650.0] and o.pca_basis == [[1, 0, 0], [0, 1, 0]]
    assert o.output_bands() == ["pc1", "pc2"]
    assert HyperspectralOptions(bands="450,550.5").output_bands() == ["w450nm", "w550.5nm"]
    assert HyperspectralOptions().output_bands() == []
    # The API's text of a list of rows ("[..],[..]") and JSON read back the same.
    assert HyperspectralOptions(components=2, pca_mean="1,2", pca_basis="[1.0, 0.0],[0.0, 1.0]")\
        .pca_basis == HyperspectralOptions(components=2, pca_mean="1,2",
                                          pca_basis="[[1, 0], [0, 1]]").pca_basis  # fmt: skip
    assert HyperspectralOptions.PATH_OPTIONS == ("white", "dark")
    for model in HyperspectralOptions.model_fields.values():
        assert model.description


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"wavelength_min": "900", "wavelength_max": "400"}, "wavelength_min 900.0 is above"),
        ({"bands": "550,550"}, "listed twice"),
        ({"bands": "-5"}, "not a positive number"),
        ({"pca_mean": "1,2", "pca_basis": "1,0"}, "components is 0"),
        ({"components": "2", "pca_mean": "1,2", "pca_basis": "1,0"}, "1 rows but components is 2"),
        ({"components": "1", "pca_mean": "1,2", "pca_basis": "1,0,0"}, "row 1 has 3 weights"),
        ({"pca_basis": "[1,"}, "not a list of rows"),
        ({"byte_order": "middle"}, "byte_order"),
        ({"white_reflectance": "0"}, "white_reflectance"),
    ],
)
def test_options_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HyperspectralOptions.model_validate(options)


def test_micrometres_fwhm_and_header_fields(tmp_path: Path) -> None:
    """Units converted to nm (FWHM too); a requested wavelength may be half a FWHM away;
    multi-line values (holding '=') and the sensor type reach the tags."""
    cube = np.arange(5 * 3 * 4, dtype=np.uint16).reshape(5, 3, 4)
    hdr = write_envi(tmp_path / "um", cube, None)
    hdr.write_text(
        hdr.read_text()
        + "description = {\n  lab scan; exposure = 3 ms\n}\nsensor type = HySpex\n"
        + "wavelength units = Micrometers\nwavelength = {0.50, 0.52, 0.54, 0.56, 0.58}\n"
        + "fwhm = {0.010, 0.010, 0.012, 0.010, 0.010}\n"
    )
    out = tmp_path / "o.tif"
    result = run(hdr, out, bands="504.9,546")  # 4.9 nm < 10/2, 6 nm = 12/2
    got, ds = read(out)
    with ds:
        assert ds.descriptions == ("w504.9nm", "w546nm")
        assert [ds.tags(i)["fwhm"] for i in (1, 2)] == ["10", "12"]
        tags = ds.tags()
        assert tags["HYPERSPECTRAL_SENSOR_TYPE"] == "HySpex"
        assert tags["HYPERSPECTRAL_DESCRIPTION"] == "lab scan; exposure = 3 ms"
        assert tags["HYPERSPECTRAL_SOURCE_WAVELENGTH_UNITS"] == "Micrometers"
    np.testing.assert_array_equal(got, cube[[0, 2]])
    assert result.sensor.startswith("HySpex (ENVI, 5 bands, 500.0-580.0 nm)")  # type: ignore[attr-defined]
    with pytest.raises(InvalidArgument, match="no band of the cube within 5 nm of 505.1"):
        run(hdr, tmp_path / "x.tif", bands="505.1")
