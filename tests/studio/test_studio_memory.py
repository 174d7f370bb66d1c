"""A 10000 x 10000 scene costs the browser what a 1000 x 1000 one does.

The same walk through each scene (zoom in, pan across, zoom out) in headless
Chromium against a real daemon; afterwards the page's tile cache and its JS
heap are compared between the two scenes. The large scene is DEFLATE-tiled
with a smooth pattern, so it is small on disk and quick to write.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from tests.support import Sipd

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--enable-precise-memory-info"]  # fmt: skip
# The page's own bound on cached tiles (TILE_CACHE_MAX in studio.js).
TILE_CACHE_MAX = 200

pytestmark = pytest.mark.slow


def _write(path: Path, size: int) -> None:
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32633", "transform": from_origin(500000, 7000000, 10, 10),
               "tiled": True, "blockxsize": 512, "blockysize": 512,
               "compress": "deflate"}  # fmt: skip
    cols = np.arange(size, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as ds:
        for top in range(0, size, 1024):
            rows = np.arange(top, min(size, top + 1024), dtype=np.float32)[:, None]
            wave = (np.sin(cols / 97.0) + np.cos(rows / 131.0)) * 60 + 128
            band = wave.astype(np.uint8)
            ds.write(np.stack([band, band[:, ::-1], 255 - band]),
                     window=Window(0, top, size, len(rows)))  # fmt: skip


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium package")
        pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    root = tmp_path_factory.mktemp("studio-memory")
    _write(root / "small.tif", 1000)
    _write(root / "large.tif", 10000)
    d = Sipd(root / "state", roots=[root], studio=True).start()
    d.sipctl("project", "create", "m", "--classes", "a,b", "--bands", "R,G,B")
    d.sipctl("scene", "add", "m", str(root / "small.tif"), "--name", "small")
    d.sipctl("scene", "add", "m", str(root / "large.tif"), "--name", "large")
    yield d
    d.stop()


def _walk(page: Any, scene: str, requested: set[str]) -> dict[str, float]:
    page.select_option("#scene", scene)
    # The cache may still hold the other scene's tiles: wait for this scene's own.
    page.wait_for_function(
        f"() => window.sipdStudio.state.scene && window.sipdStudio.state.scene.id === '{scene}'"
    )
    deadline = time.monotonic() + 60
    while not any(f"/scenes/{scene}/" in u for u in requested):
        assert time.monotonic() < deadline, f"no tile of {scene} was asked for"
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    # Wheel steps (a factor e^0.6 each, studio.js) from the fitted view to full resolution.
    fit = page.evaluate("() => window.sipdStudio.state.view.scale")
    steps = max(1, round(math.log(1 / fit) / 0.6))
    for _ in range(steps):
        page.mouse.wheel(0, -400)
        page.wait_for_timeout(120)
    for step in range(36):  # pan across and down, loading new tiles each time
        dx, dy = (-400, 0) if (step // 6) % 2 == 0 else (0, -400)
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + dx, cy + dy, steps=4)
        page.mouse.up()
        page.wait_for_timeout(200)
    for _ in range(steps):
        page.mouse.wheel(0, 400)
        page.wait_for_timeout(120)
    page.wait_for_timeout(1500)
    found = page.evaluate(
        """() => ({tiles: window.sipdStudio.tileCount(),
                   heap: performance.memory ? performance.memory.usedJSHeapSize : 0})"""
    )
    return {**found, "requested": len({u for u in requested if f"/scenes/{scene}/" in u})}


def test_a_large_scene_costs_the_browser_what_a_small_one_does(daemon: Sipd) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            requested: set[str] = set()
            page.on("request", lambda r: requested.add(r.url) if "/tiles/" in r.url else None)
            page.goto(f"http://{daemon.studio_address}/?token={daemon.token}")
            page.wait_for_selector("body[data-ready='1']")
            page.click("#tool-pan")
            small = _walk(page, "small", requested)
            large = _walk(page, "large", requested)
        finally:
            browser.close()
    print(f"small: {small}, large: {large}")
    # The large walk needed more distinct tiles than the cache holds; it kept its bound.
    assert large["requested"] > TILE_CACHE_MAX
    assert 0 < small["tiles"] <= TILE_CACHE_MAX and 0 < large["tiles"] <= TILE_CACHE_MAX
    if small["heap"] and large["heap"]:
        # The JS heap after the large walk is within a few MB of the small one's.
        assert large["heap"] < small["heap"] * 1.5 + 8 * 2**20, (small, large)
