"""The page in headless Chromium, for the browser test and the README screenshot.

Uses the system's Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)
through selenium; with both paths given, selenium never downloads a browser or a driver.
"""

from __future__ import annotations

import shutil
from typing import Any


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def headless_chromium(width: int = 900, height: int = 900) -> Any:
    """A selenium Chrome driver on the system Chromium; FileNotFoundError if there is none."""
    # selenium is a dev extra (pip install -e '.[dev]'): find_chromium works without it
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise FileNotFoundError("no chromium and chromedriver on PATH; install them with "
                                "apt-get install chromium chromium-driver")
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(driver))
