"""The studio's HTTP/JSON surface end to end: a real sipd serving it on an ephemeral port,
real HTTP (urllib, ssl), real rasters; PNGs decoded by GDAL's PNG driver, not ours."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from sipd.synthetic import make_scene, sample_rois
from tests.support import Sipd, wait_for, write_raster

READER = "studio-reader-0123456789abcdef"
LABELER = "studio-labeler-0123456789abcdef"
TOKENS = {
    "SIPD_ACCESS__TOKENS": (
        f"[{{name: viewer, token: {READER}, scopes: [read]}}, "
        f"{{name: analyst, token: {LABELER}, scopes: [label]}}]"
    )
}
CLASSES = ["water", "ice", "land"]
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c"]


class Http:
    """Plain HTTP calls to the studio; the answer is (status, headers, body)."""

    def __init__(self, base: str, context: ssl.SSLContext | None = None) -> None:
        self.base = base
        self.context = context

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, bytes]:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if method != "GET":
            sent.setdefault("X-Sipd-Studio", "1")
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.context), _NoRedirect()
        )
        try:
            with opener.open(request, timeout=120) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def json(self, method: str, path: str, body: Any = None, token: str | None = None,
             status: int = 200) -> Any:  # fmt: skip
        code, _, data = self.call(method, path, body, token)
        assert code == status, (code, data[:500])
        return json.loads(data)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def _raw_request(base: str, request: bytes) -> tuple[int, bytes, bytes]:
    """One request as bytes on a plain socket: (status, headers, body) of the first answer."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += conn.recv(65536)
    return int(head.split()[1]), head, body[:length]


def _png(data: bytes) -> np.ndarray:
    """[bands, H, W] of a PNG, read by GDAL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeference
        with MemoryFile(data) as mem, mem.open() as ds:
            assert ds.driver == "PNG"
            return ds.read()


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sipd, Http, Path]]:
    root = tmp_path_factory.mktemp("studio")
    d = Sipd(root / "state", roots=[root], env=TOKENS, studio=True).start()
    d.sipctl("project", "create", "p", "--classes", ",".join(CLASSES), "--colors",
             ",".join(COLOURS), "--bands", "B1,B2,B3")  # fmt: skip
    yield d, Http(f"http://{d.studio_address}"), root
    if d.proc is not None and d.proc.poll() is None:
        d.stop()


def _scene(d: Sipd, root: Path, name: str, **kwargs: Any) -> np.ndarray:
    truth = make_scene(root / f"{name}.tif", bands=3, seed=3, **kwargs)
    d.sipctl("scene", "add", "p", str(root / f"{name}.tif"), "--name", name)
    return np.asarray(truth)


def test_page_and_api_are_refused_without_a_valid_token(studio: Any) -> None:
    _, http, _ = studio
    code, headers, body = http.call("GET", "/")
    assert code == 401 and headers["Content-Type"].startswith("text/html")
    assert b"sipctl studio" in body
    code, _, body = http.call("GET", "/api/projects")
    assert code == 401 and json.loads(body)["code"] == "UNAUTHENTICATED"
    code, _, body = http.call("GET", "/api/projects", token="not-a-token-of-this-daemon")
    assert code == 401 and "not one this sipd knows" in json.loads(body)["error"]
    code, headers, _ = http.call("GET", "/?token=not-a-token-of-this-daemon")
    assert code == 401 and "Set-Cookie" not in headers
    code, _, _ = http.call("GET", "/static/studio.js")
    assert code == 401


def test_sign_in_sets_a_private_cookie_that_opens_the_page(studio: Any) -> None:
    d, http, _ = studio
    code, headers, _ = http.call("GET", f"/?token={d.token}")
    assert code == 303 and headers["Location"] == "/"  # the token leaves the address bar
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";")[0]
    # Other programs' cookies for this host come along, some of them malformed.
    value = f'theme=dark mode; pref={{"a":1}}; {value}; x=\u00e9'
    code, headers, body = http.call("GET", "/", headers={"Cookie": value})
    assert code == 200 and headers["Content-Type"].startswith("text/html")
    assert b"studio.js" in body and b"http://" not in body and b"https://" not in body
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    code, headers, _ = http.call("GET", "/static/studio.js", headers={"Cookie": value})
    assert code == 200 and "javascript" in headers["Content-Type"]
    session = json.loads(http.call("GET", "/api/session", headers={"Cookie": value})[2])
    assert session["who"] == "owner" and session["scope"] == "admin"
    # Nothing outside the static folder is served.
    for path in ("/static/../server.py", "/static/%2e%2e/api.py", "/etc/passwd"):
        assert http.call("GET", path, headers={"Cookie": value})[0] == 404, path


def test_scopes_are_the_grpc_methods_scopes(studio: Any) -> None:
    d, http, root = studio
    _scene(d, root, "scopes", width=300, height=200)
    roi = {"class_name": "water", "split": "train", "wkt": "POINT (10 10)", "width": 3}
    assert http.json("GET", "/api/projects", token=READER)["projects"][0]["id"] == "p"
    code, _, body = http.call("POST", "/api/projects/p/scenes/scopes/rois", roi, READER)
    assert code == 403 and json.loads(body)["code"] == "PERMISSION_DENIED"
    assert "label scope" in json.loads(body)["error"]
    created = http.json("POST", "/api/projects/p/scenes/scopes/rois", roi, LABELER, status=201)
    assert created["source"] == "studio"
    # A change without the studio's header (what a form on another site would send).
    code, _, body = http.call("POST", "/api/projects/p/scenes/scopes/rois", roi, LABELER,
                              headers={"X-Sipd-Studio": "0"})  # fmt: skip
    assert code == 403 and "X-Sipd-Studio" in json.loads(body)["error"]
    assert http.json("GET", "/api/projects/p/scenes/scopes/rois", token=READER)["rois"] == [
        created
    ]


def test_rois_drawn_in_the_page_are_sipctls_and_back(studio: Any) -> None:
    d, http, root = studio
    _scene(d, root, "draw", width=400, height=300)
    base = "/api/projects/p/scenes/draw/rois"
    polygon = http.json("POST", base, {"class_name": "water", "split": "train",
                                       "wkt": "POLYGON ((10 10, 60 10, 60 50, 10 50, 10 10))"},
                        d.token, status=201)  # fmt: skip
    line = http.json("POST", base, {"class_name": "land", "split": "val",
                                    "wkt": "LINESTRING (100 100, 180 120)", "width": 5},
                     d.token, status=201)  # fmt: skip
    listed = json.loads(d.sipctl("--json", "roi", "list", "p", "--scene", "draw").stdout)["rois"]
    assert [(r["class_name"], r["split"], r["wkt"].split(" ")[0], r["width"]) for r in listed] == [
        ("water", "SPLIT_TRAIN", "POLYGON", 1.0), ("land", "SPLIT_VAL", "LINESTRING", 5.0)
    ]  # fmt: skip
    d.sipctl("roi", "add", "p", "--scene", "draw", "--class", "ice", "--wkt", "POINT (200 200)")
    rois = http.json("GET", base, token=d.token)["rois"]
    assert [r["class_name"] for r in rois] == ["water", "land", "ice"]
    assert rois[2]["source"] != "studio"
    assert http.json("DELETE", f"{base}/{line['id']}", token=d.token) == {}
    listed = json.loads(d.sipctl("--json", "roi", "list", "p", "--scene", "draw").stdout)["rois"]
    assert [r["name"].rsplit("/", 1)[1] for r in listed] == [str(polygon["id"]), str(rois[2]["id"])]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"class_name": "water", "wkt": "POLYGON ((1 1, 2"}, 400, "WKT"),
        ({"class_name": "lava", "wkt": "POINT (5 5)"}, 400, "lava"),
        ({"class_name": "water", "wkt": "POINT (5000 5)"}, 400, "outside"),
        ({"class_name": "water", "wkt": "POINT (5 5)", "split": "later"}, 400, "split"),
        ({"class_name": "water", "wkt": "POINT (5 5)", "width": "wide"}, 400, "width"),
        ({"class_name": "water"}, 400, "wkt"),
    ],
)
def test_bad_rois_are_refused_with_a_sentence_and_nothing_is_stored(
    studio: Any, body: dict[str, Any], status: int, words: str
) -> None:
    d, http, root = studio
    if not (root / "bad.tif").exists():
        _scene(d, root, "bad", width=100, height=100)
    code, _, answer = http.call("POST", "/api/projects/p/scenes/bad/rois", body, d.token)
    error = json.loads(answer)
    assert code == status and error["code"] == "INVALID_ARGUMENT", error
    assert words.lower() in error["error"].lower()
    assert http.json("GET", "/api/projects/p/scenes/bad/rois", token=d.token)["rois"] == []


def test_malformed_requests_get_clear_errors_and_the_daemon_stays_up(studio: Any) -> None:
    d, http, _ = studio
    cases = [
        (http.call("POST", "/api/projects/p/train", raw=b"{not json", token=d.token), 400),
        (http.call("POST", "/api/projects/p/train", raw=b"[1, 2]", token=d.token), 400),
        (http.call("GET", "/api/nothing/here", token=d.token), 404),
        (http.call("DELETE", "/api/projects", token=d.token), 405),
        (http.call("POST", "/", {}, d.token), 405),
        (http.call("GET", "/api/projects/nope/scenes", token=d.token), 404),
        (http.call("GET", "/api/jobs/99999", token=d.token), 404),
        (http.call("POST", "/api/projects/p/train", {"epochs": "many"}, d.token), 400),
        (http.call("POST", "/api/projects/p/train", {"arch": "nope"}, d.token), 400),
    ]
    for (code, _, body), expected in cases:
        assert code == expected, body
        assert json.loads(body)["error"]
    code, _, body = http.call("POST", "/api/projects/p/train", raw=b"x" * 10,
                              headers={"Content-Length": str(2**40)}, token=d.token)  # fmt: skip
    assert code == 400 and "Content-Length" in json.loads(body)["error"]
    code, _, body = _raw_request(http.base, b"POST /api/projects/p/train HTTP/1.1\r\n"
                                 b"Host: x\r\nTransfer-Encoding: chunked\r\nX-Sipd-Studio: 1\r\n"
                                 b"Authorization: Bearer " + d.token.encode() +
                                 b"\r\n\r\n2\r\n{}\r\n0\r\n\r\n")  # fmt: skip
    assert code == 400 and b"chunked" in body
    code, headers, _ = http.call("OPTIONS", "/api/projects", token=d.token)
    assert code == 405 and "POST" in headers["Allow"]
    assert d.sipctl("status").returncode == 0
    assert http.json("GET", "/api/session", token=d.token)["who"] == "owner"


def test_tiles_are_the_stretched_scene_with_nodata_transparent(studio: Any) -> None:
    d, http, root = studio
    rng = np.random.default_rng(5)
    data = rng.integers(100, 4000, size=(3, 400, 600), dtype=np.uint16)
    data[:, 300:, 520:] = 0  # nodata in the bottom-right tile
    # One band at the nodata value among valid others is a real pixel (sipd.validity).
    data[0, 260:280, 530:560] = 0
    write_raster(root / "tiles.tif", data, nodata=0)
    d.sipctl("scene", "add", "p", str(root / "tiles.tif"), "--name", "tiles")
    stats = http.json("GET", "/api/projects/p/scenes/tiles/stats", token=d.token)["bands"]
    # A band's nodata values are left out of its statistics, not the pixel's other bands.
    valid = [band[band != 0] for band in data]
    assert valid[0].size < valid[1].size
    for band, s in zip(valid, stats, strict=True):
        assert s["p2"] == pytest.approx(np.percentile(band, 2))
        assert s["p98"] == pytest.approx(np.percentile(band, 98))
        assert (s["min"], s["max"]) == (band.min(), band.max())

    # Level 0, the bottom-right tile: 600 - 512 = 88 across, 400 - 256 = 144 down.
    code, headers, png = http.call(
        "GET", "/api/projects/p/scenes/tiles/tiles/0/2/1.png?bands=3,1,2&lo=100,200,300"
        "&hi=3000,3500,4000", token=d.token,
    )  # fmt: skip
    assert code == 200 and headers["Content-Type"] == "image/png"
    tile = _png(png)
    assert tile.shape == (4, 144, 88)
    window = data[[2, 0, 1], 256:400, 512:600].astype(np.float64)
    lo = np.array([100, 200, 300])[:, None, None]
    hi = np.array([3000, 3500, 4000])[:, None, None]
    expected = np.clip((window - lo) / (hi - lo) * 255, 0, 255)
    nodata = (window == 0).all(axis=0)
    assert (window == 0).any(axis=0).sum() > nodata.sum()  # the one-band pixels are in the tile
    assert np.abs(tile[:3][:, ~nodata] - expected[:, ~nodata]).max() <= 1
    assert (tile[3][nodata] == 0).all() and (tile[3][~nodata] == 255).all()
    # The coarsest level holds the whole scene in one tile: ceil(600/4) x ceil(400/4).
    assert _png(http.call("GET", "/api/projects/p/scenes/tiles/tiles/2/0/0.png",
                          token=d.token)[2]).shape == (4, 100, 150)  # fmt: skip
    for query, words in [
        ("3/0/0.png", "level 3 is not in 0..2"), ("0/3/0.png", "outside"),
        ("0/0/0.png?bands=4", "band numbers in 1..3"), ("0/0/0.png?bands=1,2", "one or three"),
        ("0/0/0.png?lo=a", "comma-separated numbers"), ("0/-1/0.png", "outside"),
    ]:  # fmt: skip
        code, _, body = http.call("GET", f"/api/projects/p/scenes/tiles/tiles/{query}",
                                  token=d.token)  # fmt: skip
        assert code == 400 and words in json.loads(body)["error"], (query, body)


@pytest.mark.slow  # a 2.5k x 2.5k scene's overviews
def test_overviews_of_a_large_scene_are_built_once_in_the_data_dir(studio: Any) -> None:
    d, http, root = studio
    folder = root / "large"
    folder.mkdir()
    data = np.tile(np.arange(2500, dtype=np.uint16), (3, 2500, 1))
    write_raster(folder / "large.tif", data)
    d.sipctl("scene", "add", "p", str(folder / "large.tif"), "--name", "large")
    before = sorted(p.name for p in folder.iterdir())
    tile = _png(http.call("GET", "/api/projects/p/scenes/large/tiles/4/0/0.png?bands=1&lo=0"
                          "&hi=2500", token=d.token)[2])  # fmt: skip
    assert tile.shape == (4, 157, 157)
    # Averaged overview pixels of a ramp: the ramp at 157 pixels across (the centre of
    # pixel j is column (j + 0.5) * 2500 / 157 - 0.5), stretched 0..2500 -> 0..255.
    centre = (np.arange(157) + 0.5) * 2500 / 157 - 0.5
    assert np.abs(tile[0, 10] - centre / 2500 * 255).max() <= 1.5
    assert sorted(p.name for p in folder.iterdir()) == before  # the user's folder untouched
    cached = list((d.data_dir / "studio" / "overviews").rglob("*.ovr"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    http.call("GET", "/api/projects/p/scenes/large/tiles/3/1/1.png", token=d.token)
    assert cached[0].stat().st_mtime_ns == stamp
    # The scene file changes: its overviews are built again and the old ones go.
    os.utime(folder / "large.tif", ns=(stamp + 10**9, stamp + 10**9))
    assert http.call("GET", "/api/projects/p/scenes/large/tiles/3/1/1.png",
                     token=d.token)[0] == 200  # fmt: skip
    rebuilt = list((d.data_dir / "studio" / "overviews").rglob("*.ovr"))
    assert len(rebuilt) == 1 and rebuilt[0].parent != cached[0].parent


def test_a_scene_file_gone_missing_is_a_clear_error(studio: Any) -> None:
    d, http, root = studio
    _scene(d, root, "gone", width=300, height=300)
    (root / "gone.tif").unlink()
    for path in ("/stats", "/tiles/0/0/0.png"):
        code, _, body = http.call("GET", f"/api/projects/p/scenes/gone{path}", token=d.token)
        assert code == 400 and "does not exist" in json.loads(body)["error"], body


def test_live_view_classifies_a_pixel_whose_one_band_is_nodata(studio: Any) -> None:
    """Through the live API, sipd.validity's rule: a pixel with one band at its nodata
    value (-9999) is valid, shown and classified well. (The value that band takes in
    the features is checked exactly in tests/unit/test_studio_units.py.)"""
    d, http, root = studio
    path = root / "onebandnd.tif"
    truth = np.asarray(make_scene(path, width=256, height=256, bands=3, dtype="float32",
                                  seed=5))  # fmt: skip
    with rasterio.open(path) as ds:
        data = ds.read()
    data[0, :, 128:] = -9999  # band 1 gone on the right half; bands 2 and 3 intact
    write_raster(path, data, nodata=-9999)  # make_scene's grid and CRS
    d.sipctl("scene", "add", "p", str(path), "--name", "onebandnd")
    base = "/api/projects/p/scenes/onebandnd"
    rois = sample_rois(truth, seed=6, n_lines_per_class=3, n_points_per_class=4,
                       splits={"train": 1.0})  # fmt: skip
    for r in rois:
        http.json("POST", f"{base}/rois", {"class_name": CLASSES[r["class_value"] - 1],
                  "wkt": r["wkt"], "width": 3}, d.token, status=201)  # fmt: skip
    live = http.json("POST", f"{base}/live", {"x": 0, "y": 0, "width": 256, "height": 256,
                                              "level": 0}, d.token)  # fmt: skip
    labels = _png(_data(live["labels"]))
    assert (labels[3] == 255).all(), "one band at nodata leaves the pixel valid"
    values = np.zeros((256, 256), dtype=np.uint8)
    for v, c in enumerate(COLOURS):
        rgb = np.array([int(c[i : i + 2], 16) for i in (1, 3, 5)])
        values[(labels[:3] == rgb[:, None, None]).all(axis=0)] = v + 1
    right = values[:, 128:] == truth[:, 128:]
    assert right.mean() > 0.9, right.mean()


def test_live_update_trains_the_instant_model_and_labels_the_view(studio: Any) -> None:
    d, http, root = studio
    truth = _scene(d, root, "live", width=512, height=512)
    base = "/api/projects/p/scenes/live"
    view = {"x": 0, "y": 0, "width": 512, "height": 512, "level": 0}
    rois = sample_rois(truth, seed=4, n_lines_per_class=3, n_points_per_class=4,
                       splits={"train": 1.0})  # fmt: skip
    first = [r for r in rois if r["class_value"] == 1]
    for r in first:
        http.json("POST", f"{base}/rois", {"class_name": "water", "wkt": r["wkt"], "width": 3},
                  d.token, status=201)  # fmt: skip
    code, _, body = http.call("POST", f"{base}/live", view, d.token)
    assert code == 409 and "at least two classes" in json.loads(body)["error"]
    for r in rois:
        if r["class_value"] != 1:
            http.json("POST", f"{base}/rois", {"class_name": CLASSES[r["class_value"] - 1],
                      "wkt": r["wkt"], "width": 3}, d.token, status=201)  # fmt: skip
    live = http.json("POST", f"{base}/live", view, d.token)
    assert (live["x"], live["y"], live["width"], live["height"], live["level"]) == (0, 0, 512,
                                                                                     512, 0)
    labels = _png(_data(live["labels"]))
    assert labels.shape == (4, 512, 512) and (labels[3] == 255).all()
    colours = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)): v + 1
               for v, c in enumerate(COLOURS)}  # fmt: skip
    values = np.zeros((512, 512), dtype=np.uint8)
    for rgb, value in colours.items():
        values[(labels[:3] == np.array(rgb)[:, None, None]).all(axis=0)] = value
    assert (values > 0).all(), "every pixel is one class colour"
    assert (values == truth).mean() > 0.95
    assert set(live["classes"]) == {1, 2, 3}
    assert set(live["train_pixels"]) == set(CLASSES) and min(live["train_pixels"].values()) > 20
    uncertainty = _png(_data(live["uncertainty"]))
    assert uncertainty.shape == (4, 512, 512)
    # Alpha grows with the uncertainty: the wrongly labeled pixels are the less certain ones.
    wrong = values != truth
    assert uncertainty[3][wrong].mean() > uncertainty[3][~wrong].mean()
    assert 0 <= live["mean_uncertainty"] <= 1
    assert 1 <= len(live["suggestions"]) <= 5
    for box in live["suggestions"]:
        assert 0 <= box["x"] < 512 and 0 <= box["y"] < 512 and box["class_name"] in CLASSES
    assert live["timing"]["total_s"] > 0

    # A view of part of the scene at level 1 comes back aligned to that level's pixels.
    part = http.json("POST", f"{base}/live", {"x": 101, "y": 33, "width": 300, "height": 200,
                                              "level": 1}, d.token)  # fmt: skip
    assert (part["x"], part["y"], part["level"]) == (100, 32, 1)
    # Both ends on the level's grid: the PNG's pixels are the window's, none stretched.
    assert (part["width"], part["height"]) == (302, 202)
    assert _png(_data(part["labels"])).shape == (4, math.ceil(part["height"] / 2),
                                                 math.ceil(part["width"] / 2))  # fmt: skip
    code, _, body = http.call("POST", f"{base}/live", raw=b'{"x": 0, "y": 0, "width": 9, '
                              b'"height": 9, "level": 1e400}', token=d.token)  # fmt: skip
    assert code == 400 and "whole number level" in json.loads(body)["error"]
    for bad, words in [
        ({"x": 0, "y": 0, "width": -5, "height": 10}, "positive width"),
        ({"x": 0, "y": 0, "width": 10, "height": 10, "level": 9}, "level 9"),
        ({"x": 900, "y": 0, "width": 10, "height": 10}, "does not overlap"),
        ({"x": "left"}, "needs numbers"),
        ({"x": 0, "y": 0, "width": 10, "height": 10, "level": 1.7}, "whole number level"),
        ({"x": 0, "y": 0, "width": 10, "height": 10, "level": True}, "whole number level"),
    ]:
        code, _, body = http.call("POST", f"{base}/live", bad, d.token)
        assert code == 400 and words in json.loads(body)["error"], (bad, body)


def _data(url: str) -> bytes:
    import base64

    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return base64.b64decode(url[len(prefix) :])


def test_training_from_the_page_is_a_job_sipctl_sees(studio: Any) -> None:
    d, http, root = studio
    if not (root / "live.tif").exists():
        pytest.skip("needs the live test's scene and ROIs")
    job = http.json("POST", "/api/projects/p/train", {"arch": "forest"}, d.token, status=202)
    assert job["type"] == "train" and job["state"] in ("QUEUED", "RUNNING")
    seen = _wait_job(http, d.token, job)
    assert seen["state"] == "SUCCEEDED", seen["error"]
    assert (seen["result"]["project"], seen["result"]["version"]) == ("p", 1)
    jobs = json.loads(d.sipctl("--json", "jobs", "list").stdout)
    assert any(j["name"] == f"jobs/{job['id']}" for j in jobs["jobs"])
    models = http.json("GET", "/api/projects/p/models", token=READER)["models"]
    assert [(m["version"], m["arch"]) for m in models] == [(1, "forest")]
    # Not tested yet: no evaluation.
    assert "best_val_accuracy" in models[0] and models[0]["evaluation"] is None
    code, _, body = http.call("POST", f"/api/jobs/{job['id']}/cancel", {}, READER)
    assert code == 403


def _wait_job(http: Http, token: str, job: dict[str, Any]) -> dict[str, Any]:
    return wait_for(
        lambda: (j := http.json("GET", f"/api/jobs/{job['id']}", token=token))["state"]
        in ("SUCCEEDED", "FAILED", "CANCELLED") and j,
        timeout=300,
    )


def test_test_report_and_prediction_from_the_page(studio: Any) -> None:
    d, http, root = studio
    models = http.json("GET", "/api/projects/p/models", token=d.token)["models"]
    if not models:
        pytest.skip("needs the training test's model")
    truth = np.asarray(make_scene(root / "check.tif", bands=3, seed=3, width=512, height=512))
    for r in sample_rois(truth, seed=9, n_lines_per_class=2, n_points_per_class=2,
                         splits={"test": 1.0}):  # fmt: skip
        http.json("POST", "/api/projects/p/scenes/live/rois", {"class_name": CLASSES[
            r["class_value"] - 1], "split": "test", "wkt": r["wkt"], "width": 3}, d.token,
            status=201)  # fmt: skip
    tested = _wait_job(http, d.token,
                       http.json("POST", "/api/projects/p/models/1/test", {}, d.token, 202))
    assert tested["state"] == "SUCCEEDED", tested["error"]
    report = http.json("GET", "/api/projects/p/models", token=d.token)["models"][0]["evaluation"]
    assert report["overall_accuracy"] > 0.9 and "kappa" in report

    job = http.json("POST", "/api/projects/p/scenes/live/predict", {"version": "1"}, d.token, 202)
    done = _wait_job(http, d.token, job)
    assert done["state"] == "SUCCEEDED", done["error"]
    written = root / "live_p_v1_labels.tif"
    assert written.exists()  # beside the scene, named after project and version
    with rasterio.open(written) as ds:
        labels = ds.read(1)
        colours = ds.colormap(1)
    tile = _png(http.call("GET", f"/api/jobs/{job['id']}/outputs/0/tiles/0/1/1.png",
                          token=d.token)[2])  # fmt: skip
    part = labels[256:512, 256:512]
    expected = np.array([colours[v][:3] for v in part.ravel()]).T.reshape(3, 256, 256)
    assert (tile[:3] == expected).all() and (tile[3] == 255).all()
    assert (labels == truth).mean() > 0.9
    for path, words in [
        (f"/api/jobs/{tested['id']}/outputs/0/tiles/0/0/0.png", "not a predict job"),
        (f"/api/jobs/{job['id']}/outputs/3/tiles/0/0/0.png", "output 3 is none"),
    ]:
        code, _, body = http.call("GET", path, token=d.token)
        assert code == 400 and words in json.loads(body)["error"], body
    code, _, body = http.call("POST", "/api/projects/p/scenes/live/predict", {"version": "7"},
                              d.token)  # fmt: skip
    assert code in (400, 404) and "7" in json.loads(body)["error"]
    code, _, body = http.call("POST", "/api/projects/p/scenes/live/predict",
                              {"version": "1", "overwrite": "false"}, d.token)  # fmt: skip
    assert code == 400 and "true or false" in json.loads(body)["error"]


@pytest.mark.slow  # a daemon of its own with TLS
def test_studio_takes_the_daemons_tls_and_refuses_plain_http(pki: Path, tmp_path: Path) -> None:
    d = Sipd(tmp_path / "tls", roots=[tmp_path], studio=True, tls_ca=pki / "ca.pem",
             extra_args=["--tls-cert", str(pki / "server.pem"),
                         "--tls-key", str(pki / "server.key")]).start()  # fmt: skip
    try:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        https = Http(f"https://{d.studio_address}", context)
        # A client that connects and says nothing holds its own thread, nobody else's.
        host, port = d.studio_address.rsplit(":", 1)
        silent = socket.create_connection((host, int(port)))
        assert https.call("GET", "/api/projects")[0] == 401
        assert https.json("GET", "/api/projects", token=d.token) == {"projects": []}
        code, headers, _ = https.call("GET", f"/?token={d.token}")
        assert code == 303 and "Secure" in headers["Set-Cookie"]
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://{d.studio_address}/api/projects", timeout=10)
        silent.close()
    finally:
        d.stop()


@pytest.mark.slow  # a daemon start that must fail
def test_studio_on_a_public_address_needs_tls(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "sipd", "--listen", "127.0.0.1:0", "--metrics-listen", "",
            "--studio-listen", "0.0.0.0:0", "--data-dir", str(tmp_path / "open")]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "studio_listen" in result.stderr and "without TLS" in result.stderr


def test_sipctl_studio_prints_the_signed_in_address(studio: Any) -> None:
    d, http, _ = studio
    shown = json.loads(d.sipctl("--json", "studio").stdout)
    assert shown["url"] == f"http://{d.studio_address}/"
    assert shown["signed_in_url"] == f"http://{d.studio_address}/?token={d.token}"
    code, headers, _ = http.call("GET", shown["signed_in_url"].removeprefix(http.base))
    port = d.studio_address.rsplit(":", 1)[1]
    assert code == 303 and headers["Set-Cookie"].startswith(f"sipd_studio_{port}=")
    assert json.loads(d.sipctl("--json", "status").stdout)["studio_listen"] == d.studio_address


def test_studio_is_off_when_not_configured(sipd: Sipd) -> None:
    result = sipd.sipctl("studio", "--no-open", check=False)
    assert result.returncode == 1 and "the studio is off" in result.stderr
    assert not (sipd.data_dir / "sipd.studio_address").exists()
