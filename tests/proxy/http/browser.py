"""Headless Debian Chromium driven by selenium, for the dashboard tests.

Every selenium call blocks: the tests run them in a thread (:meth:`Browser.call`) so that the
proxy, served on the test's event loop, keeps answering the page.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# No network, no profile state, no background traffic: the machine has no outside network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1800",
)
T = TypeVar("T")


def require_browser() -> None:
    """Skip without Debian's chromium and chromium-driver (fail where CI requires them)."""
    if shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER):
        return
    message = f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
    if os.environ.get("ADAPTIVE_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


class Browser:
    """One Chromium with a fresh profile under ``profile_dir``."""

    def __init__(self, profile_dir: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile_dir}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking selenium call off the event loop."""
        return await asyncio.to_thread(fn, *args)

    def wait_for(self, script: str, timeout_s: float = 20.0) -> Any:
        """Block until the JavaScript expression ``script`` is truthy; return its value."""
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout_s, poll_frequency=0.1).until(
            lambda d: d.execute_script(f"return {script};")
        )

    def field(self, policy: str, name: str) -> str:
        """The text of one figure of a policy's card."""
        from selenium.webdriver.common.by import By

        selector = f'[data-policy="{policy}"] [data-field="{name}"]'
        return str(self.driver.find_element(By.CSS_SELECTOR, selector).text)

    def console_errors(self) -> list[dict[str, Any]]:
        """Browser log entries at level SEVERE since the last call."""
        entries = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [e for e in entries if e.get("level") == "SEVERE"]

    def close(self) -> None:
        """Quit the browser and its driver."""
        self.driver.quit()
