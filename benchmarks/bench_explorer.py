"""The report's explorer: what it costs to build, weighs on disk, and takes to open.

The demo (``keras-fer-viz demo --epochs 2 --quiet``: 7,000 synthetic faces,
the reference CNN, the full spec, 700 held-out faces) runs twice in fresh
subprocesses, with the explorer (the default, ``--explorer-faces 4``) and
without it (``--explorer-faces 0``); the training is seeded and the same.

1. Build time: the demo's wall time with the explorer over the time
   without it (the explorer's own cost: every registered method on up to 4
   faces per confusion cell, the class means, the sprites).
2. Size on disk: the explorer's images (``explorer/*.png``), index.html, and
   the whole report folder.
3. Load time in Chromium (Debian's ``chromium``, headless, through
   Playwright): navigation start to the load event of ``index.html`` from
   file://, median of 5 fresh pages; then the time to click all 49 cells
   one after another, each checked to open its panel; and the requests
   the page made (all must be file://).

Targets (a page to open from disk on a laptop): explorer images under
5 MB, load under 2 s, every cell opens, no network request.

Run ``python -m benchmarks.run explorer``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._timing import row

ROOT = Path(__file__).resolve().parent.parent
EPOCHS = 2
LOADS = 5
SIZE_TARGET_MB = 5
LOAD_TARGET_S = 2.0


def _demo(out, faces) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    argv = [sys.executable, "-m", "keras_fer_viz.cli", "demo", "--out", str(out)]
    argv += ["--epochs", str(EPOCHS), "--quiet", "--explorer-faces", str(faces)]
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - start


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return os.environ.get("KFV_CHROMIUM")


def _open(index):
    """(median load time, click-through time, cells opened, requests) in Chromium."""
    from playwright.sync_api import sync_playwright

    loads, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        try:
            for _ in range(LOADS):
                page = browser.new_page()
                page.on("request", lambda r: requests.append(r.url))
                page.goto(index.resolve().as_uri(), wait_until="load")
                loads.append(
                    page.evaluate(
                        "() => { const n = performance.getEntriesByType('navigation')[0];"
                        " return (n.loadEventEnd - n.startTime) / 1000; }"
                    )
                )
                page.close()
            page = browser.new_page()
            page.goto(index.resolve().as_uri(), wait_until="load")
            cells = page.locator("td[data-count]")
            opened, start = 0, time.perf_counter()
            for k in range(cells.count()):
                cell = cells.nth(k)
                cell.click()
                key = f"{cell.get_attribute('data-true')}|{cell.get_attribute('data-pred')}"
                shown = page.locator("[data-cell]:visible")
                opened += shown.count() == 1 and shown.get_attribute("data-cell") == key
            clicks = time.perf_counter() - start
            total = cells.count()
        finally:
            browser.close()
    return statistics.median(loads), clicks, opened, total, requests


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        with_it, without = Path(tmp) / "with", Path(tmp) / "without"
        seconds = _demo(with_it, 4)
        bare = _demo(without, 0)
        images = list((with_it / "explorer").glob("*.png"))
        image_bytes = sum(p.stat().st_size for p in images)
        index_bytes = (with_it / "index.html").stat().st_size
        folder = sum(p.stat().st_size for p in with_it.rglob("*") if p.is_file())
        faces = (with_it / "index.html").read_text().count("data-face=")
        rows = [
            row(
                f"demo (--epochs {EPOCHS}) with the explorer / without",
                f"{seconds:.0f} s / {bare:.0f} s = {seconds / bare:.2f}x",
                "information",
                None,
                f"the explorer's cost: {seconds - bare:.0f} s for {faces} faces x every "
                "registered method, class means, sprites",
            ),
            row(
                "explorer images on disk",
                f"{image_bytes / 1e6:.2f} MB in {len(images)} PNGs",
                f"< {SIZE_TARGET_MB} MB",
                image_bytes < SIZE_TARGET_MB * 1e6,
                f"index.html {index_bytes / 1e3:.0f} kB; the whole report folder "
                f"{folder / 1e6:.1f} MB (figures, model, per-epoch PNGs)",
            ),
        ]
        if _chromium() is None:
            rows.append(row("load in Chromium", "no chromium installed", "", None))
            return rows
        load, clicks, opened, total, requests = _open(with_it / "index.html")
        outside = [u for u in requests if not u.startswith("file://")]
        rows += [
            row(
                f"load of index.html from file://, median of {LOADS}",
                f"{load:.2f} s",
                f"< {LOAD_TARGET_S} s",
                load < LOAD_TARGET_S,
                f"{len(set(requests))} distinct files requested, {len(outside)} outside the folder",
            ),
            row(
                "every cell clicked in turn",
                f"{opened}/{total} opened their panel in {clicks:.1f} s",
                "all",
                opened == total and total > 0 and not outside,
                "Playwright's click and check included",
            ),
        ]
        return rows
