"""The operator dashboard in a real headless Chromium (the system browser, driven by Playwright).

A service on 127.0.0.1 reads a generated clip; the test signs in with a token, sees the
camera tile, draws a zone (written back to the YAML file, comments kept), sees cases
arrive, confirms one and rejects another with the keyboard, looks at the statistics and
exports the reviews as training data. Screenshots go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service.settings import ServiceConfig, load_service_config
from tests.helpers.data import DATA
from tests.helpers.net import free_port, wait_for
from tests.helpers.pg import restartable_postgres
from tests.helpers.service import TOKENS, running_service

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [pytest.mark.slow,  # a headless browser against a live service
              pytest.mark.skipif(CHROMIUM is None and os.environ.get("CI") != "true",
                                 reason="no system Chromium here (CI installs it)")]

CONFIG = """\
# Dashboard test service: one camera looping a generated clip.
server: {{host: 127.0.0.1, port: {port}}}
auth:
  tokens:
    - {{name: admin, role: admin, env: ADMIN_T}}   # the operator signs in with this one
storage:
  db: {tmp}/cases.db
  evidence: {tmp}/evidence
cameras:
  - id: cam-b
    name: B street  # a comment the zone editor must keep
    source: {clip}
    zones:
      - id: pavement
        polygon: [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]]
        violations: [street_stall, garbage]
rules:
  dwell_s: {{street_stall: 2, garbage: 2}}
  gap_tolerance_s: 3
"""


@pytest.fixture()
def dashboard(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    path = tmp_path / "service.yaml"
    path.write_text(CONFIG.format(port=port, tmp=tmp_path, clip=DATA / "clips" / "reg_violations_b.mp4"))
    cfg, errors = load_service_config(path)
    assert errors == []
    with running_service(cfg, config_path=path) as url:
        yield url, path


def _api(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS['ADMIN_T']}"}, timeout=30)


def _open(pw: Any, url: str) -> tuple[Any, Any, list[str]]:
    """The dashboard in a new headless Chromium page, in English (for the screenshots; it starts in Chinese);
    the list collects the page's script errors."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url + "/")
    page.click("#lang")
    return browser, page, errors


def test_operator_signs_in_draws_a_zone_reviews_cases_and_exports_them(dashboard: tuple[str, Path],
                                                                       tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, config_path = dashboard
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser, page, errors = _open(pw, url)
        # A wrong token is refused on the page.
        page.fill("#token", "not-a-valid-token-at-all")
        page.click("#login-form button[type=submit]")
        page.wait_for_function("document.getElementById('login-error').textContent.length > 0")
        page.fill("#token", TOKENS["ADMIN_T"])
        page.click("#login-form button[type=submit]")
        # The camera tile shows a live frame (a blob image), its health and frame rate.
        page.wait_for_selector(".tile[data-camera=cam-b] img[src^='blob:']", timeout=60_000)
        page.wait_for_selector(".tile[data-camera=cam-b] .badge.live", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "cameras.png"))

        # Zone editor: draw a new polygon with four clicks, name it, keep only garbage, save.
        page.click(".tile[data-camera=cam-b] button.zones")
        page.wait_for_selector("#zone-editor[open]")
        canvas = page.locator("#ze-canvas")
        box = canvas.bounding_box()
        assert box is not None
        page.click("#ze-new")
        for fx, fy in ((0.05, 0.6), (0.4, 0.6), (0.4, 0.95), (0.05, 0.95)):
            page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.click("#ze-finish")
        page.fill("#ze-id", "kerb")
        for v in ("street_stall", "uncovered_truck", "barbecue", "overflowing_bin"):
            page.uncheck(f"#ze-violations input[data-v={v}]")
        page.fill("#ze-violations input[data-dwell=garbage]", "30")
        page.screenshot(path=str(ARTIFACTS / "zone-editor.png"))
        page.click("#ze-save")
        page.wait_for_selector("#zone-editor", state="hidden")
        with _api(url) as api:
            zones = api.get("/api/cameras/cam-b/config").json()["zones"]
        kerb = next(z for z in zones if z["id"] == "kerb")
        assert kerb["violations"] == ["garbage"] and kerb["dwell_s"] == {"garbage": 30.0}
        assert kerb["polygon"][0] == pytest.approx([0.05, 0.6], abs=0.01)
        saved = config_path.read_text()
        assert "# a comment the zone editor must keep" in saved and "kerb" in saved
        assert [z["id"] for z in yaml.safe_load(saved)["cameras"][0]["zones"]] == ["pavement", "kerb"]

        # Review: cases arrive (the queue reloads on live events); confirm one, reject another.
        page.click("nav button[data-tab=review]")
        page.wait_for_function("document.querySelectorAll('#queue li[data-case-id]').length >= 2", timeout=90_000)
        page.wait_for_selector("#case-snapshot[src^='blob:']", timeout=30_000)
        masked = page.get_attribute("#case-snapshot", "src")
        page.check("#case-original")  # the operator sees the original evidence, fetched anew
        page.wait_for_function(f"document.querySelector('#case-snapshot').src.startsWith('blob:') && "
                               f"document.querySelector('#case-snapshot').src !== '{masked}'", timeout=30_000)
        assert page.text_content("#case-error") == ""
        page.uncheck("#case-original")
        page.evaluate("document.activeElement.blur()")  # keyboard shortcuts act when no input has the focus
        page.screenshot(path=str(ARTIFACTS / "review.png"))
        first = page.get_attribute("#queue li.sel", "data-case-id")
        page.locator("body").focus()
        page.keyboard.press("c")
        with _api(url) as api:
            wait_for(lambda: api.get(f"/api/cases/{first}").json()["review"] == "confirmed", 30, "confirmation")
            page.wait_for_function(f"!document.querySelector('#queue li[data-case-id=\"{first}\"]')")
            second = page.get_attribute("#queue li.sel", "data-case-id")
            assert second and second != first
            page.keyboard.press("r")
            page.fill("#reject-reason", "a parked tricycle, no goods")
            page.press("#reject-reason", "Enter")
            rejected = wait_for(lambda: (c := api.get(f"/api/cases/{second}").json())["review"] == "rejected" and c,
                                30, "rejection")
        assert rejected["state"] == "rejected" and rejected["review_reason"] == "a parked tricycle, no goods"

        # Statistics: a picture of cases per day, per camera and the closure rate.
        page.click("nav button[data-tab=stats]")
        page.wait_for_selector("#chart-daily svg rect", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "stats.png"))
        assert page.inner_text("nav button[data-tab=stats]") == "Statistics"
        page.click("#lang")
        assert page.inner_text("nav button[data-tab=stats]") == "统计"
        assert errors == []
        browser.close()

    # Review -> data: the confirmed case is a labelled positive, the rejected one a hard negative.
    out = tmp_path / "reviews"
    run = subprocess.run([sys.executable, "-m", "service.cli", "datasets", "from-reviews", "--config",
                          str(config_path), "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "1 positives, 1 hard negatives, 0 skipped" in run.stdout
    labels = {p.stem: p.read_text() for p in (out / "labels").rglob("*.txt")}
    pos = next(v for k, v in labels.items() if k.endswith("_confirmed"))
    neg = next(v for k, v in labels.items() if k.endswith("_rejected"))
    assert len(pos.splitlines()) == 1 and neg == ""
    cls, cx, cy, w, h = pos.split()
    assert int(cls) in (0, 3) and 0 < float(w) <= 1 and 0 < float(h) <= 1  # street_stall or garbage
    assert 0.2 < float(cx) < 0.8 and 0.2 < float(cy) < 0.8  # the crop keeps the object in its middle


def test_operator_imports_shops_and_draws_a_frontage(dashboard: tuple[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, _ = dashboard
    registry = tmp_path / "shops.csv"
    registry.write_text("id,name,address,phone,camera,frontage,violations\n"
                        "fruit,水果店,解放路12号,13812345678,cam-b,0.44 0; 1 0; 1 1; 0.74 1,garbage\n"
                        "bad,面馆,,123,cam-b,0 0; 1 0; 1 1,garbage\n", encoding="utf-8")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser, page, errors = _open(pw, url)
        page.fill("#token", TOKENS["ADMIN_T"])
        page.click("#login-form button[type=submit]")
        page.wait_for_selector(".tile[data-camera=cam-b] img[src^='blob:']", timeout=60_000)  # a frame to draw on
        page.click("nav button[data-tab=shops]")
        # Import a registry file: the good row lands in the table, the bad one is reported with its line.
        page.set_input_files("#shop-import", str(registry))
        page.wait_for_selector("#shops tr[data-shop=fruit]", timeout=30_000)
        assert "shops.csv:3: phone" in page.inner_text("#shop-msg")
        # A new shop: its details, then its frontage drawn with four clicks on the camera's frame.
        page.click("#shop-new")
        page.wait_for_selector("#frontage-editor[open]")
        page.fill("#fe-id", "bakery")
        page.fill("#fe-name", "面包店")
        page.fill("#fe-phone", "13900001111")
        page.uncheck("#fe-violations input[data-v=street_stall]")
        canvas = page.locator("#fe-canvas")
        box = canvas.bounding_box()
        assert box is not None
        for fx, fy in ((0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.5, 0.9)):
            page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        page.screenshot(path=str(ARTIFACTS / "frontage-editor.png"))
        page.click("#fe-save")
        page.wait_for_selector("#frontage-editor", state="hidden")
        page.wait_for_selector("#shops tr[data-shop=bakery]", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "shops.png"))
        with _api(url) as api:
            bakery = api.get("/api/shops/bakery").json()
        assert bakery["violations"] == ["garbage"] and bakery["phone"] == "13900001111"
        assert bakery["frontage"][0] == pytest.approx([0.5, 0.5], abs=0.01)
        assert bakery["frontage"][2] == pytest.approx([0.9, 0.9], abs=0.01)
        # The muck-transport register below it: an import replaces the list; the bad row is reported.
        trucks = tmp_path / "trucks.csv"
        trucks.write_text("plate,company,permit,valid_from,valid_to,hours\n"
                          "晋HA6021,太原建运,TY-1,2026-01-01,2026-12-31,20:00-06:00\n"
                          "晋HO1234,某公司,X,2026-01-01,2026-12-31,\n", encoding="utf-8")
        page.set_input_files("#register-import", str(trucks))
        page.wait_for_selector("#register tr[data-plate='晋HA6021']", timeout=30_000)
        assert page.inner_text("#register-msg").startswith("1 vehicles; 1 rows set aside")
        assert "trucks.csv:3: plate" in page.inner_text("#register-msg")
        assert errors == []
        browser.close()


def test_the_dashboard_says_when_the_case_store_is_away_and_when_it_caught_up(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with restartable_postgres(free_port()) as pg:
        cfg = ServiceConfig.model_validate({
            "server": {"port": free_port()},
            "auth": {"tokens": [{"name": "admin", "role": "admin", "env": "ADMIN_T"}]},
            "storage": {"db": pg.url, "evidence": str(tmp_path / "evidence")},
            "cameras": [{"id": "cam-b", "source": str(DATA / "clips" / "reg_violations_b.mp4"),
                         "zones": [{"id": "pavement", "polygon": [[0.44, 0.0], [1.0, 0.0], [1.0, 1.0], [0.74, 1.0]],
                                    "violations": ["street_stall", "garbage"]}]}],
            "rules": {"dwell_s": {"street_stall": 1, "garbage": 1}, "gap_tolerance_s": 3},
        })
        with running_service(cfg) as url, sync_playwright() as pw:
            browser, page, errors = _open(pw, url)
            page.fill("#token", TOKENS["ADMIN_T"])
            page.click("#login-form button[type=submit]")
            page.wait_for_selector(".tile[data-camera=cam-b] .badge.live", timeout=60_000)
            assert page.locator("#store-banner").is_hidden()
            pg.stop()
            # The camera goes on; the banner says the store is away and counts what waits.
            page.wait_for_function("(() => { const b = document.getElementById('store-banner');"
                                   " return !b.hidden && / ([1-9][0-9]*)$/.test(b.textContent); })()",
                                   timeout=60_000)
            assert "does not answer" in page.inner_text("#store-banner")
            assert page.locator(".tile[data-camera=cam-b] .badge.live").count() == 1
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "store-away.png"))
            pg.start()
            page.wait_for_selector("#store-banner", state="hidden", timeout=90_000)  # all stored: it goes
            browser.close()
            assert errors == []
