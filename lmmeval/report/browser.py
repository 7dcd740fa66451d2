"""A headless Chromium for checking and measuring report pages (the tests, the benchmark, the
screenshot): the system's Chromium and its chromedriver, driven by Selenium, nothing downloaded.

On Debian: ``apt-get install chromium chromium-driver``; Selenium is in the ``dev`` extra.
``missing()`` says what is lacking (None: all there), so that callers can skip with the reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Iterator

BINARIES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str | None:
    found = os.environ.get("LMMEVAL_CHROMIUM") or next(filter(None, map(shutil.which, BINARIES)), None)
    return found if found and os.path.exists(found) else None


def chromedriver() -> str | None:
    found = os.environ.get("LMMEVAL_CHROMEDRIVER") or shutil.which("chromedriver")
    return found if found and os.path.exists(found) else None


def missing() -> str | None:
    """Why no headless Chromium can be driven here, or None."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install selenium; it is in lmmeval's dev extra)"
    if chromium_binary() is None:
        return "no Chromium binary (apt-get install chromium; or set LMMEVAL_CHROMIUM)"
    if chromedriver() is None:
        return "no chromedriver (apt-get install chromium-driver; or set LMMEVAL_CHROMEDRIVER)"
    return None


@contextlib.contextmanager
def headless_chromium(width: int = 1280, height: int = 900) -> Iterator:
    """A Selenium driver of a headless Chromium whose console messages ``driver.get_log("browser")``
    returns; quit on exit."""
    why = missing()
    if why is not None:
        raise RuntimeError(why)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary()
    # --no-sandbox: containers (and root) have no user namespaces for Chromium's sandbox;
    # --disable-dev-shm-usage: a container's small /dev/shm would crash the renderer.
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", "--no-first-run", f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver()), options=options)
    try:
        yield driver
    finally:
        driver.quit()
