"""RADARSAT-2 and RCM readers against GDAL's test layouts (../shared/fixtures).

Expected values are computed here with separate code (regex parsing, explicit
loops, float64) from the published formulas, never with the reader's helpers:
RS2 (RN-RP-51-2713) and RCM (RCM-SP-53-0419): calibrated = (DN^2 + offset) / gain(j).
"""

from __future__ import annotations

import math
import re
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from sipd.errors import InvalidArgument
from sipd.preprocess.radarsat2 import open_radarsat2
from sipd.preprocess.rcm import open_rcm
from sipd.preprocess.sar_product import Gcp, Quantity, SarProduct
from tests.support import shared_fixture

# Detected RS2/RCM rasters carry no geotransform (GDAL's test TIFF and the ones written here).
pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

# ---------------------------------------------------------------- helpers


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # fixtures are read-only
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def rs2_product(tmp_path: Path, name: str = "RS2_SGF") -> Path:
    """GDAL's artificial RS2 layout made a valid detected product: its satellite and
    productType are placeholders upstream ("SATELLITE", "PRODUCT_TYPE")."""
    folder = _copy(shared_fixture("radarsat2"), tmp_path / name)
    _edit(folder / "product.xml", ">SATELLITE<", ">RADARSAT-2<")
    _edit(folder / "product.xml", ">PRODUCT_TYPE<", ">SGF<")
    return folder


def parse_rs2_lut(path: Path) -> tuple[float, list[float]]:
    text = path.read_text()
    offset = float(re.search(r"<offset>([^<]+)</offset>", text).group(1))  # type: ignore[union-attr]
    gains = [float(g) for g in re.search(r"<gains>([^<]+)</gains>", text).group(1).split()]  # type: ignore[union-attr]
    return offset, gains


def read_dn(product: SarProduct, pol: str) -> np.ndarray:
    with rasterio.open(product.band(pol).measurement) as ds:
        return ds.read(1).astype(np.float64)


def value(product: SarProduct, pol: str, q: Quantity, noise: bool, rows: slice, cols: slice,
          dn: np.ndarray) -> np.ndarray:  # fmt: skip
    k, n = product.band(pol).radiometry.terms(rows, cols, q, noise)
    assert k.dtype == np.float32
    if isinstance(n, np.ndarray):
        assert n.dtype == np.float32
    return (dn**2 - np.asarray(n, dtype=np.float64)) * k.astype(np.float64)


RCM_LINES, RCM_PIXELS = 3297, 17915  # numLines/samplesPerLine of GDAL's fake_VV_VH_GRD
RCM_ROWS = slice(0, 4)  # the rows of imagery/VH.tif the tests write (the rest stays sparse)


def rcm_product(tmp_path: Path, name: str = "RCM_GRD", size: tuple[int, int] | None = None,
                vh: bool = True) -> Path:  # fmt: skip
    folder = _copy(shared_fixture("rcm/fake_VV_VH_GRD"), tmp_path / name)
    if vh:
        lines, pixels = size or (RCM_LINES, RCM_PIXELS)
        (folder / "imagery").mkdir()
        profile = {
            "driver": "GTiff", "width": pixels, "height": lines, "count": 1, "dtype": "uint16",
            "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
            "sparse_ok": True,
        }  # fmt: skip
        with rasterio.open(folder / "imagery" / "VH.tif", "w", **profile) as ds:
            rows = min(RCM_ROWS.stop, lines)
            ds.write(rcm_dn(rows, pixels), 1, window=Window(0, 0, pixels, rows))
    return folder


def rcm_dn(rows: int, pixels: int) -> np.ndarray:
    r, c = np.mgrid[0:rows, 0:pixels]
    return ((c * 7 + r * 13) % 3000 + 500).astype(np.uint16)


def write_rcm_lut(path: Path, first: int, step: int, gains: list[float], offset: float) -> None:
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<lut xmlns="rcmGsProductSchema">\n'
        f"\t<pixelFirstLutValue>{first}</pixelFirstLutValue>\n\t<stepSize>{step}</stepSize>\n"
        f"\t<numberOfValues>{len(gains)}</numberOfValues>\n\t<offset>{offset}</offset>\n"
        f"\t<gains>{' '.join(repr(g) for g in gains)}</gains>\n</lut>\n"
    )


def sampled(first: int, step: int, values: list[float], col: int) -> float:
    """The value at column `col` of a vector given at columns first + k*step, by hand:
    linear between the two bracketing samples, the end value beyond the ends."""
    pts = sorted((first + k * step, v) for k, v in enumerate(values))
    if col <= pts[0][0]:
        return pts[0][1]
    if col >= pts[-1][0]:
        return pts[-1][1]
    for (x0, v0), (x1, v1) in zip(pts, pts[1:], strict=False):
        if x0 <= col <= x1:
            return v0 + (v1 - v0) * (col - x0) / (x1 - x0)
    raise AssertionError("unreachable")


def zip_folder(folder: Path, dest: Path) -> Path:
    """A zip of the product folder as delivered (the folder itself at the top)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{folder.name}/{p.relative_to(folder)}")
    return dest


# ---------------------------------------------------------------- RADARSAT-2


def test_rs2_sigma0_matches_lut_formula(tmp_path: Path) -> None:
    product = open_radarsat2(str(rs2_product(tmp_path)))
    offset, gains = parse_rs2_lut(tmp_path / "RS2_SGF" / "lut.xml")
    with rasterio.open(shared_fixture("radarsat2/byte_scanline.tif")) as ds:
        dn = ds.read(1).astype(np.float64)
    expected = np.array(
        [[(dn[i, j] ** 2 + offset) / gains[j] for j in range(20)] for i in range(20)]
    )
    for q in (Quantity.SIGMA0, Quantity.BETA0, Quantity.GAMMA0):  # all three name lut.xml
        got = value(product, "HH", q, False, slice(0, 20), slice(0, 20), dn)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    # A window sees the gains of its own columns.
    got = value(product, "HV", Quantity.SIGMA0, False, slice(3, 9), slice(5, 17), dn[3:9, 5:17])
    np.testing.assert_allclose(got, expected[3:9, 5:17], rtol=1e-6)
    assert not product.band("HH").radiometry.noise_available()


def test_rs2_offset_noise_and_decreasing_pixel_order(tmp_path: Path) -> None:
    folder = rs2_product(tmp_path)
    _edit(folder / "lut.xml", "<offset>0.000000e+00</offset>", "<offset>250.5</offset>")
    noise_db = [-20.0, -23.0, -26.0]
    _edit(
        folder / "product.xml",
        "<sourceAttributes>",
        "<sourceAttributes><radarParameters>"
        '<referenceNoiseLevel incidenceAngleCorrection="Sigma Nought">'
        "<pixelFirstNoiseValue>2</pixelFirstNoiseValue><stepSize>8</stepSize>"
        "<numberOfNoiseLevelValues>3</numberOfNoiseLevelValues>"
        f'<noiseLevelValues units="dB">{" ".join(map(str, noise_db))}</noiseLevelValues>'
        "</referenceNoiseLevel></radarParameters>"
        "<orbitAndAttitude><orbitInformation><passDirection>Ascending</passDirection>"
        "</orbitInformation></orbitAndAttitude>",
    )
    _edit(
        folder / "product.xml",
        "<sampledLineSpacing>1</sampledLineSpacing>",
        "<sampledLineSpacing>1</sampledLineSpacing><pixelTimeOrdering>Decreasing"
        "</pixelTimeOrdering>",
    )
    product = open_radarsat2(str(folder / "product.xml"))
    offset, gains = parse_rs2_lut(folder / "lut.xml")
    dn = read_dn(product, "HH")
    band = product.band("HH").radiometry
    assert band.noise_available()
    assert product.metadata["orbit_direction"] == "Ascending"
    rows, cols = slice(0, 20), slice(0, 20)
    # Decreasing pixel time: image column j is LUT/noise sample 19 - j.
    plain = np.array([[(dn[i, j] ** 2 + offset) / gains[19 - j] for j in range(20)]
                      for i in range(20)])  # fmt: skip
    np.testing.assert_allclose(value(product, "HH", Quantity.SIGMA0, False, rows, cols, dn),
                               plain, rtol=1e-6)  # fmt: skip
    noise = np.array([10 ** (sampled(2, 8, noise_db, 19 - j) / 10) for j in range(20)])
    got = value(product, "HH", Quantity.SIGMA0, True, rows, cols, dn)
    np.testing.assert_allclose(got, plain - noise[np.newaxis, :], rtol=1e-5)
    with pytest.raises(InvalidArgument, match="no beta0 noise levels.*noise for: sigma0"):
        band.terms(rows, cols, Quantity.BETA0, True)


def test_rs2_zip_reads_the_same(tmp_path: Path) -> None:
    folder = rs2_product(tmp_path)
    archive = zip_folder(folder, tmp_path / "RS2_SGF.zip")
    plain, zipped = open_radarsat2(str(folder)), open_radarsat2(str(archive))
    assert zipped.band("HH").measurement.startswith("/vsizip/")
    assert zipped.files == [str(archive)]
    names = ("product.xml", "lut.xml", "byte_scanline.tif")
    assert sorted(plain.files) == sorted(str(folder / f) for f in names)
    np.testing.assert_array_equal(read_dn(plain, "HV"), read_dn(zipped, "HV"))
    for q in Quantity:
        k1, n1 = plain.band("HV").radiometry.terms(slice(0, 20), slice(0, 20), q, False)
        k2, n2 = zipped.band("HV").radiometry.terms(slice(0, 20), slice(0, 20), q, False)
        np.testing.assert_array_equal(k1, k2)
        assert n1 == n2
    assert (plain.gcps, plain.metadata, plain.lines) == (zipped.gcps, zipped.metadata, 20)


def test_rs2_gcps_and_metadata(tmp_path: Path) -> None:
    product = open_radarsat2(str(rs2_product(tmp_path)))
    assert product.sensor == "radarsat2"
    assert (product.lines, product.pixels, product.pixel_spacing) == (20, 20, (1.0, 1.0))
    # Tie points are sample centres (imageCoordinate 0 = centre of sample 0).
    assert product.gcps == [
        Gcp(line=0.5, pixel=0.5, lon=2.0, lat=49.0),
        Gcp(line=0.5, pixel=20.5, lon=3.0, lat=49.0),
        Gcp(line=20.5, pixel=0.5, lon=2.0, lat=48.0),
        Gcp(line=20.5, pixel=20.5, lon=3.0, lat=48.0),
    ]
    assert product.metadata == {
        "mission": "RADARSAT-2",
        "mode": "BEAM_MODE_MNEMONIC",
        "product_type": "SGF",
        "polarisations": "HH,HV",
        "start_time": "2009-03-13T00:00:00Z",
        "incidence_near": "10",
        "incidence_far": "20",
        "pixel_spacing": "1x1",
    }
    assert [b.polarisation for b in open_radarsat2(str(tmp_path / "RS2_SGF"), ["hv"]).bands] == [
        "HV"
    ]


def test_rs2_errors(tmp_path: Path) -> None:
    folder = rs2_product(tmp_path)
    with pytest.raises(InvalidArgument, match=r"has no VV band; it has HH, HV"):
        open_radarsat2(str(folder), ["VV"])

    # A quantity with no LUT names the LUTs present.
    only_sigma = _copy(folder, tmp_path / "only_sigma")
    _edit(
        only_sigma / "product.xml",
        '<lookupTable incidenceAngleCorrection="Beta Nought">lut.xml</lookupTable>',
        "",
    )
    _edit(only_sigma / "product.xml",
          '<lookupTable incidenceAngleCorrection="Gamma">lut.xml</lookupTable>', "")  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"no beta0 LUT for HH; it has: sigma0"):
        open_radarsat2(str(only_sigma)).band("HH").radiometry.terms(
            slice(0, 1), slice(0, 20), Quantity.BETA0, False
        )

    # A LUT listed but absent: the product opens, the quantity names the file.
    no_lut = _copy(folder, tmp_path / "no_lut")
    (no_lut / "lut.xml").unlink()
    with pytest.raises(InvalidArgument, match=r"LUT lut.xml is listed in product.xml but missing"):
        open_radarsat2(str(no_lut)).band("HH").radiometry.terms(
            slice(0, 1), slice(0, 20), Quantity.SIGMA0, False
        )

    slc = _copy(folder, tmp_path / "slc")
    _edit(slc / "product.xml", ">SGF<", ">SLC<")
    with pytest.raises(InvalidArgument, match=r"single-look complex \(SLC\).*only detected"):
        open_radarsat2(str(slc))

    wrong = _copy(folder, tmp_path / "wrong")
    _edit(wrong / "product.xml", ">RADARSAT-2<", ">SENTINEL-1A<")
    with pytest.raises(InvalidArgument, match=r"is a SENTINEL-1A product, not RADARSAT-2"):
        open_radarsat2(str(wrong))
    rcm = rcm_product(tmp_path)
    with pytest.raises(InvalidArgument, match=r"is a RCM-1 product, not RADARSAT-2"):
        open_radarsat2(str(rcm))
    with pytest.raises(InvalidArgument, match=r"is a RCM-1 product, not RADARSAT-2"):
        open_radarsat2(str(rcm / "metadata" / "product.xml"))

    small = _copy(folder, tmp_path / "small")
    _edit(small / "product.xml", "<numberOfLines>20</numberOfLines>",
          "<numberOfLines>21</numberOfLines>")  # fmt: skip
    with pytest.raises(InvalidArgument, match=r"is 20x20 pixels but product.xml says 20x21"):
        open_radarsat2(str(small))

    truncated = tmp_path / "truncated.zip"
    data = zip_folder(folder, tmp_path / "whole.zip").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidArgument, match=r"not a readable zip"):
        open_radarsat2(str(truncated))


# ---------------------------------------------------------------- RCM


def test_rcm_beta0_as_published(tmp_path: Path) -> None:
    """The fixture's lutBeta_VH.xml: one gain (10), offset 0, stepSize -17915."""
    folder = rcm_product(tmp_path)
    product = open_rcm(str(folder), ["VH"])
    dn = rcm_dn(RCM_ROWS.stop, RCM_PIXELS).astype(np.float64)
    got = value(product, "VH", Quantity.BETA0, False, RCM_ROWS, slice(0, RCM_PIXELS), dn)
    np.testing.assert_allclose(got, (dn**2 + 0.0) / 10.0, rtol=1e-5)
    with rasterio.open(product.band("VH").measurement) as ds:
        np.testing.assert_array_equal(ds.read(1, window=Window(0, 0, RCM_PIXELS, 4)), dn)


def test_rcm_interpolated_lut_and_noise(tmp_path: Path) -> None:
    folder = rcm_product(tmp_path)
    cal = folder / "metadata" / "calibration"
    # Far-to-near gains (negative step) as RCM writes them, with an offset.
    beta = ([17914, -4000, [1500.0, 1400.0, 1210.0, 1100.0, 1010.5]], 37.25)
    write_rcm_lut(cal / "lutBeta_VH.xml", *beta[0], offset=beta[1])  # type: ignore[arg-type]
    sigma = ([100, 5000, [900.0, 800.0, 650.0, 600.0]], 0.0)
    write_rcm_lut(cal / "lutSigma_VH.xml", *sigma[0], offset=sigma[1])  # type: ignore[arg-type]
    noise_db = [-21.0, -24.5, -22.0]
    _edit(
        cal / "noiseLevels_VH.xml",
        "<sarCalibrationType>Beta Nought</sarCalibrationType>\n"
        "\t\t<pixelFirstNoiseValue>0</pixelFirstNoiseValue>\n\t\t<stepSize>-23</stepSize>\n"
        "\t\t<numberOfValues>1</numberOfValues>\n"
        '\t\t<noiseLevelValues units="dB">0</noiseLevelValues>',
        "<sarCalibrationType>Beta Nought</sarCalibrationType>\n"
        "<pixelFirstNoiseValue>50</pixelFirstNoiseValue><stepSize>8000</stepSize>"
        f'<numberOfValues>3</numberOfValues><noiseLevelValues units="dB">'
        f"{' '.join(map(str, noise_db))}</noiseLevelValues>",
    )
    product = open_rcm(str(folder / "metadata" / "product.xml"), ["VH"])
    band = product.band("VH").radiometry
    assert band.noise_available()
    cols = list(range(0, RCM_PIXELS, 37)) + [RCM_PIXELS - 1]
    dn = rcm_dn(RCM_ROWS.stop, RCM_PIXELS).astype(np.float64)
    for q, ((first, step, gains), offset) in ((Quantity.BETA0, beta), (Quantity.SIGMA0, sigma)):
        expected = np.array(
            [[(dn[i, c] ** 2 + offset) / sampled(first, step, gains, c) for c in cols]
             for i in range(4)]
        )  # fmt: skip
        got = value(product, "VH", q, False, RCM_ROWS, slice(0, RCM_PIXELS), dn)[:, cols]
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Noise: dB interpolated along range, to linear, subtracted from the calibrated value.
    noise = np.array([10 ** (sampled(50, 8000, noise_db, c) / 10) for c in cols])
    plain = value(product, "VH", Quantity.BETA0, False, RCM_ROWS, slice(0, RCM_PIXELS), dn)
    got = value(product, "VH", Quantity.BETA0, True, RCM_ROWS, slice(0, RCM_PIXELS), dn)
    np.testing.assert_allclose((plain - got)[:, cols], np.broadcast_to(noise, (4, len(cols))),
                               rtol=1e-4)  # fmt: skip
    np.testing.assert_allclose(got[:, cols], plain[:, cols] - noise, rtol=1e-5)
    # The fixture's sigma0 noise: 0 dB everywhere = 1.0 linear.
    s_plain = value(product, "VH", Quantity.SIGMA0, False, RCM_ROWS, slice(10, 20), dn[:, 10:20])
    s_noise = value(product, "VH", Quantity.SIGMA0, True, RCM_ROWS, slice(10, 20), dn[:, 10:20])
    np.testing.assert_allclose(s_plain - s_noise, 1.0, rtol=1e-4)

    # Concurrent first use builds each LUT once and gives every caller the same terms.
    fresh = open_rcm(str(folder), ["VH"]).band("VH").radiometry
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: fresh.terms(RCM_ROWS, slice(0, 999), Quantity.BETA0,
                                                      True), range(16)))  # fmt: skip
    for k, n in results:
        np.testing.assert_array_equal(k, results[0][0])
        np.testing.assert_array_equal(n, results[0][1])


def test_rcm_zip_reads_the_same(tmp_path: Path) -> None:
    folder = rcm_product(tmp_path)
    archive = zip_folder(folder, tmp_path / "RCM_GRD.zip")
    plain, zipped = open_rcm(str(folder), ["VH"]), open_rcm(str(archive), ["VH"])
    assert zipped.files == [str(archive)]
    assert zipped.band("VH").measurement == f"/vsizip/{archive}/RCM_GRD/imagery/VH.tif"
    for noise in (False, True):
        k1, n1 = plain.band("VH").radiometry.terms(RCM_ROWS, slice(100, 900), "beta0", noise)
        k2, n2 = zipped.band("VH").radiometry.terms(RCM_ROWS, slice(100, 900), "beta0", noise)
        np.testing.assert_array_equal(k1, k2)
        np.testing.assert_array_equal(n1, n2)
    assert (plain.gcps, plain.metadata) == (zipped.gcps, zipped.metadata)
    with rasterio.open(zipped.band("VH").measurement) as ds:
        assert (ds.height, ds.width) == (RCM_LINES, RCM_PIXELS)


def test_rcm_gcps_and_metadata(tmp_path: Path) -> None:
    folder = rcm_product(tmp_path)
    product = open_rcm(str(folder), ["vh"])
    assert product.sensor == "rcm"
    assert (product.lines, product.pixels) == (RCM_LINES, RCM_PIXELS)
    # imageCoordinate line 1, pixel 2 (sample centres); incidence from incidenceAngles.xml (0).
    assert product.gcps == [Gcp(line=1.5, pixel=2.5, lon=2.5, lat=1.5, height=3.5, incidence=0.0)]
    assert product.metadata == {
        "mission": "RCM-1",
        "mode": "beamModeMnemonic",
        "product_type": "GRD",
        "polarisations": "VV,VH",
        # zeroDopplerTimeFirstLine/LastLine are placeholder text upstream; passed through.
        "start_time": "zeroDopplerTimeFirstLine",
        "stop_time": "zeroDopplerTimeLastLine",
        "orbit_direction": "Descending",
        "incidence_near": "0",
        "incidence_far": "0",
    }
    cal = folder / "metadata" / "calibration"
    assert sorted(product.files) == sorted(
        str(p) for p in (folder / "metadata" / "product.xml", folder / "imagery" / "VH.tif",
                         cal / "lutBeta_VH.xml", cal / "noiseLevels_VH.xml",
                         cal / "incidenceAngles.xml")
    )  # fmt: skip
    assert product.band("VH").radiometry.noise_available()


def test_rcm_errors(tmp_path: Path) -> None:
    folder = rcm_product(tmp_path)
    band = open_rcm(str(folder), ["VH"]).band("VH").radiometry
    with pytest.raises(
        InvalidArgument,
        match=r"LUT metadata/calibration/lutSigma_VH.xml is listed in product.xml but missing",
    ):
        band.terms(RCM_ROWS, slice(0, 10), Quantity.SIGMA0, False)
    # VV: listed in product.xml, no imagery (GDAL's layout ships none).
    with pytest.raises(InvalidArgument, match=r"measurement imagery/VV.tif is missing"):
        open_rcm(str(folder))
    with pytest.raises(InvalidArgument, match=r"has no HH band; it has VV, VH"):
        open_rcm(str(folder), ["HH"])

    slc = _copy(folder, tmp_path / "slc")
    _edit(slc / "metadata" / "product.xml", "<productType>GRD<", "<productType>SLC<")
    with pytest.raises(InvalidArgument, match=r"complex RCM product \(SLC.*only detected"):
        open_rcm(str(slc), ["VH"])

    rs2 = rs2_product(tmp_path)
    with pytest.raises(InvalidArgument, match=r"is a RADARSAT-2 product, not RCM"):
        open_rcm(str(rs2 / "product.xml"))
    with pytest.raises(InvalidArgument, match=r"is a RADARSAT-2 product, not RCM"):
        open_rcm(str(zip_folder(rs2, tmp_path / "rs2.zip")))

    small = rcm_product(tmp_path, "small", size=(10, 20))
    with pytest.raises(InvalidArgument, match=r"is 20x10 pixels but product.xml says 17915x3297"):
        open_rcm(str(small), ["VH"])

    data = zip_folder(folder, tmp_path / "whole.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(InvalidArgument, match=r"not a readable zip"):
        open_rcm(str(truncated), ["VH"])

    assert math.isfinite(float(band.terms(RCM_ROWS, slice(0, 1), "beta0", False)[0][0, 0]))
    with pytest.raises(InvalidArgument, match=r"window columns"):
        band.terms(RCM_ROWS, slice(RCM_PIXELS - 5, RCM_PIXELS + 5), "beta0", False)
