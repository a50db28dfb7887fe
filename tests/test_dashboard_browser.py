"""The dashboard in a real headless browser (Debian's chromium and chromedriver).

The page must load without console errors, draw its charts, and redraw them when
commands run; a screenshot is left in artifacts/dashboard.png.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("selenium")
pytest.importorskip("uvicorn")

import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from eventcore import Application, InMemoryEventStore
from eventcore.demo.bank import Deposit, bank_codec
from eventcore.performance import PerformanceMetrics
from eventcore.prometheus import PrometheusObserver
from eventcore.web import create_app

CHROMEDRIVER = shutil.which("chromedriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

if not (CHROMEDRIVER and CHROMIUM):
    if os.environ.get("CI"):  # .ci/run installs them: missing there is a failure
        pytest.fail(
            "chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        )
    pytest.skip("chromium and chromedriver are not installed", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def monitored() -> AsyncIterator[tuple[Application, str]]:
    """An observed application, and the URL of its monitoring app served by uvicorn
    in this test's own event loop."""
    app = Application(
        InMemoryEventStore(),
        codec=bank_codec,
        observers=[PerformanceMetrics(window=30), PrometheusObserver()],
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(app), host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.01)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def open_browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1100")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


# How many pixels of each chart's canvas are drawn on, and what it looks like.
CANVAS_STATE = """
const out = {};
for (const canvas of document.querySelectorAll("canvas")) {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) inked++;
  out[canvas.id] = {inked: inked, image: canvas.toDataURL()};
}
return out;
"""


def wait_for(driver: webdriver.Chrome, script: str, timeout: float = 30.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        lambda d: d.execute_script(script)
    )


async def test_the_dashboard_draws_live_charts_without_console_errors(
    monitored: tuple[Application, str],
) -> None:
    app, url = monitored
    driver = await asyncio.to_thread(open_browser)
    try:
        await asyncio.to_thread(driver.get, f"{url}/dashboard?interval_ms=300")
        await asyncio.to_thread(wait_for, driver, "return window.eventcoreDashboard.updates >= 2")
        before = await asyncio.to_thread(driver.execute_script, CANVAS_STATE)
        assert set(before) == {"throughput", "latency", "memory", "streams", "lag"}
        assert all(state["inked"] > 0 for state in before.values())  # axes, legends, lines

        for n in range(200):
            await app.execute(Deposit(f"account-{n % 20}", 1))
        await asyncio.to_thread(
            wait_for,
            driver,
            "const d = window.eventcoreDashboard.last;"
            "return d && d.snapshot.commands >= 200 && d.snapshot.active_streams === 20;",
        )
        after = await asyncio.to_thread(driver.execute_script, CANVAS_STATE)
        for chart in ("throughput", "latency", "streams"):
            assert after[chart]["image"] != before[chart]["image"], chart
        figures = await asyncio.to_thread(
            driver.execute_script,
            "return document.querySelector('[data-name=\"active streams\"] .value').textContent",
        )
        assert figures == "20"

        ARTIFACTS.mkdir(exist_ok=True)
        await asyncio.to_thread(driver.save_screenshot, str(ARTIFACTS / "dashboard.png"))
        log = await asyncio.to_thread(driver.get_log, "browser")
    finally:
        await asyncio.to_thread(driver.quit)
    errors = [entry for entry in log if entry["level"] == "SEVERE"]
    assert errors == []
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
