"""The labeling studio in a real browser (headless Chromium) against a real daemon.

One daemon with the studio on and one browser serve the module. The page is
driven the way a person uses it: sign in through the address with the token,
draw a polygon and a line with the mouse, watch the live label map, draw once
more, train, test a version, predict the scene, undo. What the page did is
checked where it lands: ROIs through `sipctl roi list`, the live label map and
the prediction layer through the canvas pixels, models and their test reports
through the page's tables. A screenshot of the end state goes to the test
artifacts.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shapely import wkt as shapely_wkt

from tests.support import Sipd, wait_for, write_raster

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
REPO = Path(__file__).resolve().parents[2]
PROJECT = "lake"
SCENE = "s1"
# Class colours as the project stores them; the live label map paints these.
COLORS = {"water": (0x1F, 0x77, 0xB4), "land": (0x2C, 0xA0, 0x2C)}
SIZE = 512  # scene pixels across and down: water left of column 256, land right of it
FINAL = ["SUCCEEDED", "FAILED", "CANCELLED"]
# Test ROIs (added with sipctl), away from the train ROIs the page draws.
TEST_ROIS = [
    ("water", "POLYGON ((20 250, 220 250, 220 420, 20 420, 20 250))"),
    ("land", "POLYGON ((300 330, 500 330, 500 500, 300 500, 300 330))"),
]

pytestmark = pytest.mark.slow


def _browser_or_skip() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium package")
    pytest.skip(f"needs Chromium at {CHROMIUM} (apt-get install chromium); not found")


def _scene(path: Path) -> Path:
    """Two regions of distinct colour, with noise: water left, land right."""
    rng = np.random.default_rng(0)
    water = np.zeros((SIZE, SIZE), dtype=bool)
    water[:, : SIZE // 2] = True
    data = np.empty((3, SIZE, SIZE), dtype=np.uint8)
    for band, (w, land) in enumerate([(30, 150), (60, 130), (140, 70)]):
        data[band] = np.where(water, w, land) + rng.integers(0, 20, (SIZE, SIZE))
    return write_raster(path, data)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sipd]:
    _browser_or_skip()
    root = tmp_path_factory.mktemp("studio")
    d = Sipd(root / "state", roots=[root], studio=True).start()
    try:
        d.sipctl(
            "project", "create", PROJECT, "--classes", "water,land",
            "--colors", "#1f77b4,#2ca02c", "--bands", "red,green,blue",
        )  # fmt: skip
        d.sipctl("scene", "add", PROJECT, str(_scene(root / "scene.tif")), "--name", SCENE)
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


@pytest.fixture(scope="module")
def browser(studio: Sipd) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, studio: Sipd) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    # Script errors fail the test: a page that throws is broken even if it looks right.
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"the page threw: {errors}\ndaemon log tail:\n{studio.log()[-3000:]}"


def _base(d: Sipd) -> str:
    return f"http://{d.studio_address}"


def _rois(d: Sipd) -> list[dict[str, Any]]:
    return d.sipctl_json("roi", "list", PROJECT)["rois"]


def _wait_rois(d: Sipd, n: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The project's ROIs once there are exactly `n`."""
    found: list[list[dict[str, Any]]] = []

    def check() -> bool:
        found[:] = [_rois(d)]
        return len(found[0]) == n

    _wait(check, timeout, f"{n} ROIs", d)
    return found[0]


def _geometry(roi: dict[str, Any]) -> str:
    return roi["wkt"].split("(", 1)[0].strip().upper()


def _wait(predicate: Any, timeout: float, what: str, d: Sipd, interval: float = 0.2) -> Any:
    try:
        return wait_for(predicate, timeout, interval, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ndaemon log tail:\n{d.log()[-3000:]}") from None


def _screen(page: Any, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of scene pixel (x, y), through the page's own view transform."""
    box = page.locator("#map").bounding_box()
    px, py = page.evaluate("([x, y]) => window.sipdStudio.sceneToScreen(x, y)", [x, y])
    return box["x"] + px, box["y"] + py


def _click_scene(page: Any, x: float, y: float) -> None:
    page.mouse.click(*_screen(page, x, y))


def _revision(page: Any) -> int:
    return int(page.locator("#live-status").get_attribute("data-revision") or 0)


def _wait_revision(page: Any, at_least: int) -> None:
    """Until the page has drawn its `at_least`-th live answer. (Functions, not expression
    strings: the page's Content-Security-Policy forbids eval, and the test keeps it on.)"""
    page.wait_for_function(
        "(n) => Number(document.getElementById('live-status').dataset.revision) >= n",
        arg=at_least,
        timeout=60_000,
    )


def _pixel(page: Any, x: float, y: float) -> tuple[int, int, int, int]:
    """The canvas's RGBA at scene pixel (x, y)."""
    return tuple(
        page.evaluate(
            """([x, y]) => {
                const c = document.getElementById("map");
                const [px, py] = window.sipdStudio.sceneToScreen(x, y);
                const k = c.width / c.getBoundingClientRect().width;
                return Array.from(c.getContext("2d")
                    .getImageData(Math.round(px * k), Math.round(py * k), 1, 1).data);
            }""",
            [x, y],
        )
    )


def _near(rgba: tuple[int, ...], rgb: tuple[int, int, int], tol: int = 6) -> bool:
    return rgba[3] == 255 and all(abs(a - b) <= tol for a, b in zip(rgba[:3], rgb, strict=True))


def _wait_job(page: Any, state_id: str, before: str | None, timeout: float = 120_000) -> str:
    """The final state of the job the element `state_id` shows, once it is not `before`."""
    page.wait_for_function(
        """([id, before, final]) => {
            const s = document.getElementById(id);
            return s.dataset.job && s.dataset.job !== before && final.includes(s.textContent);
        }""",
        arg=[state_id, before, FINAL],
        timeout=timeout,
    )
    return page.locator(f"#{state_id}").inner_text()


def _show_layers(page: Any, *names: str) -> None:
    """Only these map layers on; their opacity untouched."""
    for name in ("image", "prediction", "rois", "labels", "uncertainty"):
        box = page.locator(f"#layer-{name}")
        if name in names:
            box.check()
        else:
            box.uncheck()


def test_page_refused_without_the_token(studio: Sipd, page: Any) -> None:
    base = _base(studio)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(base + "/", timeout=10)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as api_refused:
        urllib.request.urlopen(base + "/api/projects", timeout=10)
    assert api_refused.value.code == 401
    response = page.goto(base + "/")
    assert response is not None and response.status == 401
    text = page.locator("body").inner_text()
    assert "Not signed in" in text and "sipctl studio" in text, text


def test_draw_live_train_undo(studio: Sipd, page: Any) -> None:
    d = studio
    page.goto(_base(d) + "/?token=" + d.token)
    # The token left the address bar for a cookie; the page picked the project and scene.
    assert "token" not in page.url
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#project").input_value() == PROJECT
    assert page.locator("#scene").input_value() == SCENE
    assert page.locator("#signin-overlay").is_hidden()
    # The scene's bands have no names: the selects show the project's.
    options = page.locator("#band-r option").all_inner_texts()
    assert options == ["1: red", "2: green", "3: blue"], options

    # A water polygon: class, tool, four clicks, Enter.
    page.click("#class-list button[data-class='water']")
    page.click("#tool-polygon")
    for x, y in [(40, 60), (200, 60), (200, 220), (40, 220)]:
        _click_scene(page, x, y)
    page.keyboard.press("Enter")
    # A land line: two clicks, the second one a double click that finishes it.
    page.click("#class-list button[data-class='land']")
    page.click("#tool-line")
    _click_scene(page, 320, 80)
    page.mouse.dblclick(*_screen(page, 460, 300))
    rois = _wait_rois(d, 2)
    kinds = sorted((_geometry(r), r["class_name"]) for r in rois)
    assert kinds == [("LINESTRING", "land"), ("POLYGON", "water")], rois
    polygon = next(r for r in rois if _geometry(r) == "POLYGON")
    # Where the mouse clicked, in scene pixels (a screen pixel is under one scene pixel here).
    ring = shapely_wkt.loads(polygon["wkt"]).exterior.coords[:-1]
    assert np.allclose(ring, [(40, 60), (200, 60), (200, 220), (40, 220)], atol=1.0), ring
    assert page.locator("#message.error").count() == 0 or page.locator("#message").is_hidden()

    # Live: the label map of the view arrives and paints the class colours.
    page.check("#live")
    _wait_revision(page, 1)
    assert re.search(r"live [\d.]+ s, 2 classes", page.locator("#live-status").inner_text())
    # Only the labels layer, opaque: the canvas then shows the predicted colours.
    page.uncheck("#layer-image")
    page.uncheck("#layer-rois")
    page.uncheck("#layer-uncertainty")
    page.locator("#layer-labels-opacity").fill("100")
    page.wait_for_timeout(200)  # one animation frame at least
    water, land = _pixel(page, 120, 400), _pixel(page, 400, 420)
    assert _near(water, COLORS["water"]), f"water pixel {water}, wanted {COLORS['water']}"
    assert _near(land, COLORS["land"]), f"land pixel {land}, wanted {COLORS['land']}"
    page.check("#layer-image")
    page.check("#layer-rois")
    page.check("#layer-uncertainty")
    page.locator("#layer-labels-opacity").fill("50")

    # One more edit: a point; the label map refreshes after it.
    before = _revision(page)
    page.click("#class-list button[data-class='water']")
    page.click("#tool-point")
    _click_scene(page, 100, 450)
    _wait_revision(page, before + 1)
    _wait_rois(d, 3)

    # Suggestions: the same live call, its boxes listed (one entry per box the page holds).
    before = _revision(page)
    page.click("#suggest")
    _wait_revision(page, before + 1)
    held = page.evaluate("() => window.sipdStudio.state.suggestions.length")
    assert page.locator("#suggestions li").count() == held
    if held:
        page.locator("#suggestions li button").first.click()
        assert page.locator("#suggestions li.current").count() == 1
        page.click("#fit")  # back to the whole scene (the screenshot below shows it)

    # Training: the forest (seconds), then a small net for two epochs; each one's progress,
    # then its version in the models table.
    for arch, version in (("forest", 1), ("unet", 2)):
        page.select_option("#train-arch", arch)
        page.fill("#train-epochs", "2")
        before = page.locator("#train-state").get_attribute("data-job")
        page.click("#train")
        # This job (not the one before) in a final state.
        page.wait_for_function(
            """(before) => {
                const s = document.getElementById('train-state');
                return s.dataset.job && s.dataset.job !== before
                    && ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(s.textContent);
            }""",
            arg=before,
            timeout=120_000,
        )
        state = page.locator("#train-state").inner_text()
        progress = page.locator("#train-progress").inner_text()
        assert state == "SUCCEEDED", f"{arch}: {state}: {progress}\n{d.log()[-3000:]}"
        # Polled once a second, the page saw the job running or at least its progress.
        seen = page.locator("#train-state").get_attribute("data-seen") or ""
        assert "RUNNING" in seen or page.locator("#train-progress").get_attribute("data-seen"), seen
        row = page.locator(f"#models tbody tr[data-version='{version}']")
        row.wait_for()
        assert arch in row.inner_text()

    # Testing a version without test ROIs: the page says why (the server's 409).
    page.locator("#models button.test[data-version='1']").click()
    page.wait_for_function(
        """() => {
            const m = document.getElementById('message');
            return !m.hidden && m.textContent.includes('no test ROIs');
        }"""
    )
    # With test ROIs (from sipctl) the test job runs and its report shows.
    for class_name, wkt in TEST_ROIS:
        d.sipctl("roi", "add", PROJECT, "--scene", SCENE, "--class", class_name,
                 "--split", "test", "--wkt", wkt)  # fmt: skip
    before = page.locator("#test-state").get_attribute("data-job")
    page.locator("#models button.test[data-version='1']").click()
    page.wait_for_function(
        """([before, final]) => {
            const s = document.getElementById('test-state');
            return s.dataset.job && s.dataset.job !== before && final.includes(s.dataset.state);
        }""",
        arg=[before, FINAL],
        timeout=60_000,
    )
    test_state = page.locator("#test-state").inner_text()
    assert "SUCCEEDED" in test_state, f"{test_state}\n{d.log()[-3000:]}"
    # The models table reloads with the report: the detail of version 1 shows it.
    page.wait_for_selector("#model-detail[data-version='1'] table.per-class", timeout=10_000)
    # The table compares versions: v, arch, best val, test OA, test kappa (v1 tested, v2 not).
    cells = page.locator("#models tbody tr[data-version='1'] td").all_inner_texts()
    assert cells[1] == "forest" and float(cells[3]) > 0.9 and float(cells[4]) > 0.8, cells
    cells = page.locator("#models tbody tr[data-version='2'] td").all_inner_texts()
    assert cells[1] == "unet" and cells[3] == "–" and cells[4] == "–", cells
    # The detail of version 1: per-class scores and the confusion matrix.
    detail = page.locator("#model-detail")
    assert detail.get_attribute("data-version") == "1"
    head = detail.locator("table.per-class tr").first.locator("th").all_inner_texts()
    assert head == ["class", "precision", "recall", "F1", "IoU", "support"], head
    names = detail.locator("table.per-class tr th:first-child").all_inner_texts()[1:]
    assert names == ["water", "land"], names
    confusion = detail.locator("table.confusion tr")
    assert confusion.count() == 3, detail.inner_text()
    assert sum(int(v) for v in confusion.locator("td").all_inner_texts()) > 0

    # Predict the scene with version 1: the label map is written beside the scene.
    page.select_option("#predict-version", "1")
    before = page.locator("#predict-state").get_attribute("data-job")
    page.click("#predict")
    state = _wait_job(page, "predict-state", before)
    info = page.locator("#predict-info").inner_text()
    assert state == "SUCCEEDED", f"{state}: {info}\n{d.log()[-3000:]}"
    assert "scene_lake_v1_labels.tif" in info, info
    # Nothing shown: the canvas is empty there. Then only the prediction layer, opaque:
    # its tiles paint the class colours in the two regions.
    _show_layers(page)
    page.wait_for_timeout(200)  # one animation frame at least
    assert _pixel(page, 120, 400)[3] == 0, _pixel(page, 120, 400)
    page.locator("#layer-prediction-opacity").fill("100")
    _show_layers(page, "prediction")
    painted: list[tuple[int, ...]] = []

    def prediction_drawn() -> bool:
        painted[:] = [_pixel(page, 120, 400), _pixel(page, 400, 420)]
        return _near(painted[0], COLORS["water"]) and _near(painted[1], COLORS["land"])

    try:
        _wait(prediction_drawn, 15, "the prediction layer's colours", d)
    except AssertionError as exc:
        raise AssertionError(f"prediction pixels {painted}, wanted {COLORS}\n{exc}") from None

    # The screenshot of the finished session, for people reading the CI run: the image
    # under the prediction and the ROIs, the sidebar at the models and the prediction.
    page.locator("#layer-prediction-opacity").fill("55")
    _show_layers(page, "image", "prediction", "rois")
    page.locator("#predict-info").scroll_into_view_if_needed()
    page.wait_for_function("() => window.sipdStudio.tileCount() > 0")
    page.wait_for_timeout(500)  # the image tiles arrive (cached) and are drawn
    artifacts = Path(os.environ.get("SIPD_TEST_ARTIFACTS", REPO / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "studio.png"
    page.screenshot(path=str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, len(data)

    # Undo takes the point back out (the test ROIs from sipctl stay).
    page.locator("#map").focus()
    page.keyboard.press("Control+z")
    rois = _wait_rois(d, 2 + len(TEST_ROIS))
    drawn = sorted(_geometry(r) for r in rois if r["split"] not in ("test", "SPLIT_TEST"))
    assert drawn == ["LINESTRING", "POLYGON"], rois
