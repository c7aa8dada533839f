"""The dashboard in a real headless Chromium: a mixed workload through the official SDK, the
page's numbers against ``GET /v1/adaptive/stats`` and the requests sent, no console errors,
the login with ``server.auth``, and a screenshot.

``ADAPTIVE_DASHBOARD_SCREENSHOT=docs/dashboard.png`` also writes the README's screenshot (after
a longer workload, so that the charts have a few minutes... of points to show).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from proxy.http.app import create_app
from replay.store import ReplayStore
from tests.proxy.http.browser import Browser, require_browser
from tests.proxy.http.dashboard_workload import (
    ENV,
    MASTER,
    Sent,
    dashboard_config,
    send_workload,
    steering,
)
from tests.servers import running

POLICIES = ("auto", "budgeted", "vote", "seq", "casc")
README_SHOT = os.environ.get("ADAPTIVE_DASHBOARD_SCREENSHOT")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    require_browser()
    chromium = Browser(tmp_path / "profile")
    try:
        yield chromium
    finally:
        chromium.close()


def usd(x: float | None) -> str:
    return "–" if x is None else f"${x:.6f}"


async def stats_of(url: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/v1/adaptive/stats?window_s=3600", headers=headers) as resp:
            assert resp.status == 200
            return await resp.json()


async def workload(url: str, key: str, store: ReplayStore, rounds: int) -> Sent:
    sent = Sent()
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
        for i in range(rounds):
            if i:
                await asyncio.sleep(5)  # the next slot: the charts get several points
            part = await send_workload(client, store)
            for policy, count in part.requests.items():
                sent.requests[policy] += count
    return sent


async def assert_page_matches(browser: Browser, url: str, sent: Sent, key: str | None) -> None:
    """Every card's figures equal the stats endpoint's and the requests sent."""
    # Charts drawn: one card per policy, each with its SVG charts.
    await browser.call(
        browser.wait_for,
        "document.body.dataset.ready >= 1 && "
        f"document.querySelectorAll('[data-policy] svg.chart').length >= {2 * len(POLICIES)}",
    )
    stats = await stats_of(url, key)
    for policy in POLICIES:
        p = stats["policies"][policy]
        assert p["requests"] == sent.requests[policy]
        assert await browser.call(browser.field, policy, "requests") == str(sent.requests[policy])
        assert await browser.call(browser.field, policy, "cost_usd") == usd(p["cost_usd"])
        alt = p["alternatives"]
        assert await browser.call(browser.field, policy, "cheapest_cost_usd") == usd(
            alt["cheapest_cost_usd"]
        )
        assert await browser.call(browser.field, policy, "most_expensive_cost_usd") == usd(
            alt["most_expensive_cost_usd"]
        )
        for arm, count in p["arms"].items():
            assert await browser.call(browser.field, policy, f"arm:{arm}") == str(count)
        if p["cascade"]:
            rate = p["cascade"]["agreement_rate"]
            shown = "–" if rate is None else f"{100 * rate:.1f}%"
            assert await browser.call(browser.field, policy, "agreement_rate") == shown
    bars = await browser.call(
        browser.driver.execute_script,
        'return document.querySelectorAll(\'[data-policy="auto"] [data-chart="arms"] rect\')'
        ".length",
    )
    assert bars >= 1
    rows = await browser.call(
        browser.driver.execute_script,
        "return document.querySelectorAll('#upstreams tbody tr').length",
    )
    assert rows == len(stats["upstreams"])


async def test_dashboard_shows_what_the_stats_endpoint_says(
    browser: Browser, replay_base_url: str, replay_store: ReplayStore, tmp_path: Path
) -> None:
    app = create_app(dashboard_config(replay_base_url), predictor=steering())
    async with running(app) as url:
        sent = await workload(url, "x", replay_store, rounds=6 if README_SHOT else 1)
        page = f"{url}/dashboard" + ("?window_s=300" if README_SHOT else "")
        await browser.call(browser.driver.get, page)
        await assert_page_matches(browser, url, sent, None)
        login_shown = await browser.call(
            browser.driver.execute_script, "return !document.getElementById('login').hidden"
        )
        assert not login_shown  # no server.auth: no login
        assert await browser.call(browser.console_errors) == []
        shot = tmp_path / "dashboard.png"
        assert await browser.call(browser.driver.save_screenshot, str(shot))
        assert shot.stat().st_size > 10_000
        if README_SHOT:
            shutil.copyfile(shot, README_SHOT)


async def test_dashboard_login_refuses_a_wrong_key_and_never_shows_the_key(
    browser: Browser, replay_base_url: str, replay_store: ReplayStore, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    config = dashboard_config(replay_base_url, auth=True)
    async with running(create_app(config, predictor=steering(), env=ENV)) as url:
        sent = await workload(url, MASTER, replay_store, rounds=1)
        driver = browser.driver
        await browser.call(driver.get, f"{url}/dashboard")
        await browser.call(browser.wait_for, "!document.getElementById('login').hidden")

        async def log_in(key: str) -> None:
            field = await browser.call(driver.find_element, By.ID, "key")
            await browser.call(field.send_keys, key)
            button = await browser.call(driver.find_element, By.CSS_SELECTOR, "#login button")
            await browser.call(button.click)

        await log_in("sk-not-the-master-key")
        message = await browser.call(
            browser.wait_for,
            "!document.getElementById('login-error').hidden && "
            "document.getElementById('login-error').textContent",
        )
        assert "refused" in message
        assert await browser.call(
            driver.execute_script, "return document.getElementById('content').hidden"
        )
        # The refused fetch is the only console error: the browser logs every 401 response.
        errors = await browser.call(browser.console_errors)
        assert errors and all("401" in e["message"] for e in errors)

        await log_in(MASTER)
        await assert_page_matches(browser, url, sent, MASTER)
        assert await browser.call(browser.console_errors) == []
        page = await browser.call(lambda: driver.page_source)
        assert MASTER not in page
        stored = await browser.call(
            driver.execute_script, "return sessionStorage.getItem('adaptive-proxy-master-key')"
        )
        assert stored == MASTER  # in this tab's session storage, nowhere else
        assert await browser.call(driver.save_screenshot, str(tmp_path / "dashboard-auth.png"))
