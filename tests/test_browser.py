"""The console in a real browser: Debian's headless Chromium driven by Playwright.

A real server (uvicorn, on a free local port) serves the demo stack; the page is loaded before the
replay starts, so the alarms must arrive through the live feed. Then one alarm is acknowledged
through the page's dialogs with the token, and a screenshot is checked for content.
"""

from __future__ import annotations

import io
import re
import shutil
import time

import pytest
from server_support import served

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "browser-test-token-0123456789"

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if shutil.which("chromium") is None:
    pytest.skip("chromium is not installed (run scripts/install-test-deps.sh as root)", allow_module_level=True)


@pytest.fixture(scope="module")
def console():
    from vigil.serve.demo import build_demo

    demo = build_demo(TOKEN, speed=150.0)
    with served(demo.app) as url:
        yield demo, url
        demo.replay.stop()
    demo.store.close()


@pytest.fixture(scope="module")
def page(console):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        pg = browser.new_page(viewport={"width": 1600, "height": 900})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.errors = errors
        yield pg
        browser.close()


def test_alarms_appear_live_and_acknowledge_with_token(console, page, tmp_path):
    demo, url = console
    page.goto(url)
    page.wait_for_selector("#link[data-state=live]", timeout=15_000)
    assert page.locator("#alarms tbody tr").count() == 0  # nothing replayed yet

    demo.replay.start()
    # Alarms arrive through the WebSocket feed while the replay runs (the entry's hydraulic
    # return-line temperatures go off-scale low about 8 minutes after entry interface).
    page.wait_for_selector("#alarms tbody tr.alarm", timeout=30_000)
    page.locator("#chanlist .row.l4, #chanlist .row.l5").first.wait_for()

    row = page.locator("#alarms tbody tr.state-active").first
    alarm_id = int(row.get_attribute("data-id"))
    row.locator("button[data-verb=acknowledge]").click()
    page.fill("#verb-comment", "seen by the browser test")
    page.click("#verb-ok")
    page.fill("#token-input", TOKEN)
    page.click("#token-ok")
    # The replay runs on (150x): the alarm may return to normal and be raised again (a new occurrence
    # needs a new acknowledgement), so the audit trail, not the row's state, says what the page did.
    deadline = time.monotonic() + 10
    while not [e for e in demo.manager.audit(alarm_id) if e.action == "acknowledged"]:
        assert time.monotonic() < deadline, "the acknowledgement did not reach the server"
        time.sleep(0.1)
    (ack,) = [e for e in demo.manager.audit(alarm_id) if e.action == "acknowledged"]
    assert (ack.user, ack.comment) == ("operator", "seen by the browser test")

    # Select the alarm's channel: its plot (uPlot canvas) appears with the channel's name.
    page.locator("#alarms tbody tr.alarm").first.click()
    page.wait_for_selector("#plots canvas")
    assert page.locator("#plot-head b").first.inner_text()

    shot = page.screenshot(path=str(tmp_path / "console.png"))
    _assert_not_blank(shot)
    assert page.errors == []


def test_token_is_required_by_the_page(console, page):
    """Without a stored token the page asks; a wrong token is refused (401) and not kept."""
    demo, url = console
    page.evaluate("sessionStorage.clear()")
    page.goto(url)
    page.wait_for_selector("#alarms tbody tr.alarm", timeout=30_000)
    row = page.locator("#alarms tbody tr.alarm:has(button[data-verb=shelve])").first
    alarm_id = int(row.get_attribute("data-id"))
    row.locator("button[data-verb=shelve]").click()
    page.click("#verb-ok")
    page.fill("#token-input", "not-the-token-0000000000")
    page.click("#token-ok")
    page.wait_for_selector("#toast.err")
    assert "token refused" in page.inner_text("#toast")
    # The replay may move the alarm on by itself (e.g. back to normal); what must not happen is a shelve.
    assert demo.manager.get(alarm_id).shelved_until is None
    assert not [entry for entry in demo.manager.audit(alarm_id) if "shelve" in entry.action]
    assert page.evaluate("sessionStorage.getItem('vigil-token')") is None


def _assert_not_blank(png: bytes) -> None:
    """Enough distinct colours and enough non-background pixels that something was drawn."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB").resize((400, 225))
    pixels = list(img.get_flattened_data()) if hasattr(img, "get_flattened_data") else list(img.getdata())
    background = max(set(pixels), key=pixels.count)
    share = sum(p != background for p in pixels) / len(pixels)
    assert len(set(pixels)) > 200, "screenshot has almost no colours"
    assert share > 0.05, f"only {share:.1%} of the screenshot differs from the background"


def test_ten_thousand_channels_stay_responsive(page):
    """10,000 channels: the list is virtualised (a screenful of rows in the DOM), filtering is quick."""
    from vigil.serve.app import create_app
    from vigil.serve.loadtest import big_stack

    monitor, manager = big_stack(10_000)
    app = create_app(monitor, manager, None, TOKEN)
    with served(app) as url:
        big = page.context.browser.new_page(viewport={"width": 1600, "height": 900})
        try:
            big.goto(f"{url}/")
            big.locator("#chan-foot", has_text=re.compile(r"^10000 of 10000 channels$")).wait_for()
            assert big.locator("#chanlist .row").count() < 100
            # The 100 channels pushed out of limits (every 100th, by +5 V: past critical 6 V within 60
            # samples of N(0, 1)) sort to the top, coloured critical.
            first = big.locator("#chanlist .row").first
            assert first.get_attribute("data-name").endswith("00") and "l4" in first.get_attribute("class")
            big.fill("#filter", "CH0999")
            big.locator("#chan-foot", has_text=re.compile(r"^10 of 10000 channels$")).wait_for()
            big.select_option("#chan-view", "alarm")
            big.fill("#filter", "")
            big.locator("#chan-foot", has_text=re.compile(r"^100 of 10000 channels$")).wait_for()
        finally:
            big.close()
