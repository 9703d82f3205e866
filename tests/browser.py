"""A real browser for the explorer's tests: the system Chromium, driven by Playwright.

Playwright's own browser download is not reachable everywhere (nor needed):
the tests use Debian's ``chromium`` package at its usual path, and install
it with apt-get when it is missing and the tests run as root (a fresh CI
machine), under a lock so that parallel test processes install it once.
``KFV_CHROMIUM`` names another Chromium binary.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

_LOCK = Path("/tmp/keras-fer-viz-chromium.lock")


def _found() -> str | None:
    if os.environ.get("KFV_CHROMIUM"):
        return os.environ["KFV_CHROMIUM"]
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def chromium_path() -> str:
    """The Chromium binary, installed with apt-get first when missing (as root)."""
    found = _found()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(
            "The explorer's tests need Chromium and found none. Install Debian's package "
            "(`apt-get install -y chromium`) or set KFV_CHROMIUM to a Chromium binary."
        )
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be installing it
        if _found() is None:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
                proc = subprocess.run(command, capture_output=True, text=True, env=env)
                assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}"
    found = _found()
    assert found, "apt-get installed chromium, but no chromium binary is on PATH"
    return found


@contextlib.contextmanager
def open_page(path, width=1280, height=900):
    """``(page, requests)``: `path` opened from file:// in headless Chromium; `requests`
    lists the URL of every request the page made (filled as it goes)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            requests = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(Path(path).resolve().as_uri(), wait_until="load")
            yield page, requests
        finally:
            browser.close()


def loaded(page, selector) -> list[bool]:
    """For each image matching `selector`: loaded with a size (not a broken image)."""
    return page.eval_on_selector_all(
        selector, "els => els.map(e => e.complete && e.naturalWidth > 0 && e.naturalHeight > 0)"
    )


def visible_box(page, element) -> bool:
    """Whether `element` (a Playwright locator) is shown with a non-zero size."""
    box = element.bounding_box()
    return bool(box) and box["width"] > 0 and box["height"] > 0 and element.is_visible()
