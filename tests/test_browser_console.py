"""The console's operator workflow in a real browser (Debian's Chromium via Playwright), on generated
telemetry fed by the test (event time, no wall-clock decisions): subsystem tiles, names never cut,
UTC axes, time until limit, alarm details with notes, mark-nominal, incidents that grow, the time
conductor over the archive, limits changed from the page.

The browser runs in New York's time zone, so a local-time axis would show 19:xx where UTC is 00:xx.
The tests share one server, page and stream, in file order (the stream moves on as they go): run the
file, not one test alone.
"""

from __future__ import annotations

import re
import shutil
import threading
import time

import numpy as np
import pytest
from server_support import served

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if shutil.which("chromium") is None:
    pytest.skip("chromium is not installed (run scripts/install-test-deps.sh as root)", allow_module_level=True)

TOKEN = "browser-test-token-0123456789"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HYD = [f"LEFT_WING_HYDRAULIC_RETURN_LINE_{k}_TEMPERATURE" for k in range(1, 8)]
OTHERS = ["aocs", "cdh", "comms", "eps", "gnc", "obc", "propulsion", "structure", "ttc", "zz-payload"]
HEATER_AT, AGAIN_AT, SPIKE_AT, DROP_AT = 1000, 1540, 1200, 1600


def channel_config() -> dict:
    chans = {name: {"subsystem": "hydraulics", "units": "degF", "limits": {"warning": [50, 150]}} for name in HYD}
    chans["HTR_T"] = {"subsystem": "thermal", "units": "degC"}
    chans["BATT_T"] = {"subsystem": "thermal", "units": "degC", "limits": {"critical": [-10, 40]}}
    for sub in OTHERS:
        chans[f"{sub.upper().replace('-', '_')}_X"] = {"subsystem": sub, "limits": {"critical": [-8, 8]}}
    return {"incident_window_s": 30, "channels": chans}


def generate(names: list[str], n: int, seed: int, live: bool) -> np.ndarray:
    """Nominal noise per channel; live: the injected episodes (see the module constants)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    x = rng.uniform(-1, 1, (n, len(names)))  # bounded: live noise stays in the range history showed
    col = {name: k for k, name in enumerate(names)}
    for name in HYD:
        x[:, col[name]] = 100 + rng.uniform(-1, 1, n)
    x[:, col["HTR_T"]] = 20 + 2 * np.sin(2 * np.pi * t / 600) + rng.normal(0, 0.05, n)
    x[:, col["BATT_T"]] = 20 + rng.normal(0, 0.05, n) + (0.002 * t if live else 0)
    if live:
        for at in (HEATER_AT, AGAIN_AT):  # the heater bump, and its recurrence
            x[at : at + 40, col["HTR_T"]] += 3 * np.sin(np.linspace(0, np.pi, 40))
        x[SPIKE_AT:, col["ZZ_PAYLOAD_X"]] = 30.0  # far past critical
        for k, name in enumerate(HYD):  # the hydraulic lines go low one after the other, 3 s apart
            x[DROP_AT + 3 * k :, col[name]] = 0.0
    return x


class Stack:
    """A monitor with the default detector, operator state, archive and trend, served by uvicorn."""

    def __init__(self, tmp) -> None:
        from vigil.alarms import AlarmManager
        from vigil.config import MonitorConfig
        from vigil.detect import build_detector
        from vigil.model import TelemetryBlock
        from vigil.monitor import Monitor
        from vigil.monitor.extras import attach
        from vigil.monitor.operator import with_operator_state
        from vigil.serve.app import create_app
        from vigil.store.sqlite import SqliteStore

        self.config = MonitorConfig.from_dict(channel_config())
        self.names = list(self.config.channels)
        nominal = TelemetryBlock.from_arrays(
            T0 - 3000 + np.arange(3000.0), generate(self.names, 3000, 0, False), self.names
        )
        self.store = SqliteStore(tmp / "s.sqlite")
        detector = with_operator_state(build_detector(self.config).fit(nominal), self.config, self.store)
        self.manager = AlarmManager(self.config, store=self.store)
        self.monitor = Monitor(self.config, detector, self.manager, store=self.store)
        self.extras = attach(self.monitor, self.manager, archive_dir=tmp / "archive")
        self.lock = threading.RLock()
        self.app = create_app(self.monitor, self.manager, self.store, TOKEN, lock=self.lock, extras=self.extras)
        self.live = generate(self.names, 3000, 7, True)
        self.fed = 0
        self.TelemetryBlock = TelemetryBlock

    def feed_to(self, end: int) -> None:
        with self.lock:
            for a in range(self.fed, end, 100):  # in 100-row blocks, as a live feed would
                b = min(end, a + 100)
                t = T0 + np.arange(a, b, dtype=float)
                self.monitor.feed_block(self.TelemetryBlock.from_arrays(t, self.live[a:b], self.names))
        self.fed = end

    def alarm_of(self, channel: str):
        return min((a for a in self.manager.alarms(state="all") if a.channel == channel), key=lambda a: a.id)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("console"))
    stack.feed_to(1500)
    with served(stack.app) as url:
        stack.url = f"{url}/"
        yield stack
    stack.extras.close()
    stack.store.close()


@pytest.fixture(scope="module")
def page(stack):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1600, "height": 900}, timezone_id="America/New_York")
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.errors = errors
        pg.goto(stack.url)
        pg.wait_for_selector("#link[data-state=live]", timeout=15_000)
        pg.locator("#chan-foot", has_text=re.compile(r"^19 of 19 channels$")).wait_for()
        yield pg
        assert errors == []
        browser.close()


def wait_js(page, expression: str, timeout_s: float = 15.0) -> None:
    """Poll a page expression until it is true (the page's CSP forbids wait_for_function's eval)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        time.sleep(0.1)


def select_channel(page, name: str) -> None:
    page.fill("#filter", name)
    page.locator(f"#chanlist .row[data-name='{name}']").click()
    page.locator("#plot-head .fullname", has_text=name).wait_for()
    page.wait_for_selector("#plots canvas")
    page.fill("#filter", "")


def confirm_with_token(page, button: str = "#verb-ok") -> None:
    """Confirm a dialog; the first action of the session asks for the token."""
    asks = page.evaluate("!sessionStorage.getItem('vigil-token')")
    page.click(button)
    if asks:
        page.wait_for_selector("#token-dialog[open]")
        page.fill("#token-input", TOKEN)
        page.click("#token-ok")


def test_every_subsystem_tile_is_on_screen_worst_first(page):
    tiles = page.locator("#subsystems .tile")
    assert tiles.count() == 12
    levels = [int(re.search(r"\bl(\d)\b", tiles.nth(k).get_attribute("class")).group(1)) for k in range(12)]
    assert levels == sorted(levels, reverse=True) and levels[0] >= 4  # worst first
    payload = [tiles.nth(k).get_attribute("data-sub") for k in range(12)].index("zz-payload")
    assert levels[payload] == 4 and payload < levels.count(5) + levels.count(4)  # critical, though last by name
    for k in range(12):
        box = tiles.nth(k).bounding_box()
        assert box["y"] + box["height"] <= 900, f"tile {k} is below the fold"
    assert page.inner_text("#tiles-more") == ""


def test_names_and_values_are_never_cut(page):
    overflowing = page.evaluate(  # any cell whose text does not fit
        """[...document.querySelectorAll('#chanlist .row > span, #alarms td, .tile div')]
           .filter((e) => e.scrollWidth > e.clientWidth + 1).map((e) => e.textContent)"""
    )
    assert overflowing == []
    shown = {page.locator(f"#chanlist .row[data-name='{n}'] .name").inner_text().replace("\n", "") for n in HYD}
    assert shown == set(HYD)  # seven long names differing in one digit, all in full
    assert page.locator("#alarms td.name", has_text="ZZ_PAYLOAD_X").count() == 1


def test_axes_and_labels_are_utc(page):
    select_channel(page, "BATT_T")
    ticks = page.evaluate("__vigil.state.plots[0].axes[0]._values")
    assert ticks and all(re.fullmatch(r"\d\d:\d\d(:\d\d)?", t) for t in ticks), ticks
    assert {t[:2] for t in ticks} <= {"00"}, ticks  # 00:xx UTC (New York's local time is 19:xx)
    assert page.inner_text("#clock") == "2026-01-01 00:24:59Z"
    assert "UTC" in page.inner_text("#span-label")


def test_time_to_limit_beside_the_channel_and_on_its_plot(page, stack):
    badge = page.locator("#chanlist .row[data-name='BATT_T'] .ttl")
    assert badge.inner_text().startswith("→crit")
    select_channel(page, "BATT_T")
    note = page.inner_text("#detail .ttl-note")
    assert note.startswith("BATT_T reaches critical 40 degC in about") and "UTC" not in note
    x_max = page.evaluate("__vigil.state.plots[0].scales.x.max")
    assert x_max > stack.monitor.latest()["BATT_T"][0]  # the plot reaches ahead, where the trend goes


def test_alarm_explanation_is_visible_and_notes_are_kept(page, stack):
    alarm = stack.alarm_of("HTR_T")
    page.locator(f"#alarms tr.alarm[data-id='{alarm.id}'] td.name").click()
    detail = page.locator(f"#detail .alarm-detail[data-id='{alarm.id}'] .explanation")
    detail.wait_for()
    assert detail.is_visible() and detail.inner_text() == alarm.explanation
    assert page.locator(f"#alarms tr.alarm[data-id='{alarm.id}'] + tr.why-row").is_visible()
    page.click("#detail button[data-verb=comment]")
    page.fill("#verb-comment", "heater cycle during pass 12")
    confirm_with_token(page)
    page.locator("#detail .notes", has_text="heater cycle during pass 12").wait_for()
    assert stack.manager.audit(alarm_id=alarm.id)[-1].action == "commented"
    with stack.lock:  # another operator, elsewhere: the open details follow through the live feed
        stack.manager.comment(alarm.id, "bob", "from the other console")
    page.locator("#detail .notes", has_text="from the other console").wait_for()


def test_mark_nominal_from_the_page_and_the_recurrence_does_not_alarm(page, stack):
    alarm = stack.alarm_of("HTR_T")
    page.locator(f"#alarms tr.alarm[data-id='{alarm.id}'] td.name").click()
    page.click("#detail button[data-verb=mark-nominal]")
    page.click("#verb-ok")  # no reason given: the form refuses (the field is required)
    assert page.locator("#verb-dialog[open]").count() == 1
    page.fill("#verb-comment", "heater cycle, nominal")
    confirm_with_token(page)
    page.locator("#detail .nominal-note", has_text="matches the nominal pattern marked by operator").wait_for()
    page.click(".tabs button[data-tab=nominal]")
    page.locator("#nominal li[data-alarm]", has_text="HTR_T").wait_for()
    stack.manager.acknowledge(alarm.id, "operator")  # the marked alarm ends
    stack.feed_to(1590)  # the heater bump recurs at AGAIN_AT
    raised = [e for e in stack.manager.audit() if e.action in ("raised", "reactivated") and e.time >= T0 + AGAIN_AT]
    assert [e for e in raised if stack.manager.get(e.alarm_id).channel == "HTR_T"] == []
    page.click(".tabs button[data-tab=alarms]")


def test_incident_view_follows_the_incident_and_plots_every_channel(page, stack):
    stack.feed_to(DROP_AT + 5)  # two lines low so far
    page.click(".tabs button[data-tab=incidents]")
    item = page.locator("#incidents li", has_text="hydraulics")
    item.wait_for()
    item.click()
    page.locator("#incident-n", has_text="2").wait_for()
    stack.feed_to(DROP_AT + 60)  # the five others join while the view is open
    page.locator("#incident-n", has_text="7").wait_for()
    wait_js(page, "document.querySelectorAll('#plots .uplot').length === 7")
    titles = [t.replace("\n", "") for t in page.locator("#plots .plot-title .fullname").all_inner_texts()]
    assert sorted(t.split(". ", 1)[1] for t in titles) == HYD  # every channel of the incident, in full
    page.click(".tabs button[data-tab=alarms]")


def test_time_conductor_spans_scroll_zoom_and_the_archive(page, stack):
    alarm = stack.alarm_of("HTR_T")  # raised at 00:16:40Z, long before the live ring's 256 samples
    page.locator("#alarm-state").select_option("all")
    page.locator(f"#alarms tr.alarm[data-id='{alarm.id}'] td.name").click()
    page.locator("#plots .plot-title", has_text="from the archive").wait_for()
    scale = page.evaluate("[__vigil.state.plots[0].scales.x.min, __vigil.state.plots[0].scales.x.max]")
    assert scale[0] <= alarm.first_time <= scale[1]
    assert page.inner_text("#span-label").startswith("span: 2026-01-01 00:")
    width = scale[1] - scale[0]
    page.click("#conductor button[data-pan='-0.5']")
    wait_js(page, f"__vigil.state.plots[0] && __vigil.state.plots[0].scales.x.max < {scale[1] - width * 0.4}")
    page.click("#conductor button[data-zoom='0.5']")
    wait_js(page, f"(p => p.scales.x.max - p.scales.x.min < {width * 0.6})(__vigil.state.plots[0])")
    before = page.evaluate("(p => p.scales.x.max - p.scales.x.min)(__vigil.state.plots[0])")
    over = page.locator("#plots .u-over").first.bounding_box()  # drag over a quarter of the plot: zoom to it
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.5, y, steps=5)
    page.mouse.up()
    wait_js(page, f"!__vigil.conductor.live && Math.abs(__vigil.conductor.width - {before / 4}) < {before / 20}")
    page.mouse.move(over["x"] + over["width"] * 0.5, y)
    page.mouse.wheel(0, 300)  # the wheel zooms out
    wait_js(page, f"__vigil.conductor.width > {before / 4 * 1.2}")
    page.click("#conductor button[data-width='3600']")
    wait_js(page, "__vigil.conductor.live && __vigil.conductor.width === 3600")
    assert page.locator("#live-btn.on").count() == 1
    page.locator("#alarm-state").select_option("open")


def test_limits_changed_from_the_page(page, stack):
    select_channel(page, "AOCS_X")
    page.click("#limits-btn")
    page.fill("#limits-table input[data-sev=critical][data-side='1']", "12")
    page.fill("#limits-comment", "new wheel speed margin")
    confirm_with_token(page, "#limits-ok")
    wait_js(page, "__vigil.state.meta.get('AOCS_X').limits.critical[1] === 12")
    assert stack.config.channels["AOCS_X"].limits.critical == (-8.0, 12.0)
    (change,) = stack.store.limit_changes("AOCS_X")
    assert change["user"] == "operator" and change["comment"] == "new wheel speed margin"
    stack.feed_to(stack.fed + 30)  # samples after the change: the plot draws the limits in force at each time
    series = "(p => p.data[p.series.findIndex((x) => x.label === 'critical high')])(__vigil.state.plots[0])"
    wait_js(page, f"{series}.at(-1) === 12")
    assert page.evaluate(f"{series}[0]") == 8  # before the change: the old limit
    page.click(".tabs button[data-tab=audit]")
    page.locator("#audit li", has_text="limits of AOCS_X changed by operator").wait_for()
    page.click(".tabs button[data-tab=alarms]")
