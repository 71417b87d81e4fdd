"""bsopt's figures in optuna-dashboard, in a real browser (Debian's chromium via Playwright).

A real search writes a study, ``bsopt dashboard`` serves it from its own process, and headless
chromium opens the study's page: every bsopt figure must be drawn by Plotly with its data.

Run as a script, this module writes the README's screenshot of a finished study::

    python tests/test_dashboard_browser.py sqlite:///bsopt.db digits-grid docs/dashboard.png
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from bsopt.config import build_config
from bsopt.search import search
from bsopt.visualization.figures import FIGURE_KEYS, study_figures

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-quic", "--no-first-run", "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}
START_SECONDS = 180  # import, figure refresh and bind on a busy machine
DRAW_MS = 120_000  # the page fetches the study, then Plotly draws every figure
SURFACE_TITLE = "Final validation loss over batch size and learning rate"
README_FIGURES = ("loss_surface", "learning_curves")

# What optuna-dashboard 0.21 renders for a stored figure: a div with id
# "user-defined-plot:<graph object id>" on which Plotly.react draws (adding .js-plotly-plot and
# keeping the figure in the div's .data and .layout).
FIGURE_DIVS = '[id^="user-defined-plot:bsopt-"]'
DRAWN = """keys => keys.every(key => {
    const el = document.getElementById("user-defined-plot:bsopt-" + key);
    return el && el.classList.contains("js-plotly-plot") && el.querySelector(".main-svg")
        && Array.isArray(el.data);
})"""
DESCRIBE = f"""() => Array.from(document.querySelectorAll('{FIGURE_DIVS}')).map(el => ({{
    key: el.id.slice("user-defined-plot:bsopt-".length),
    title: el.layout.title.text,
    traces: el.data.map(t => ({{type: t.type, n: (t.x || []).length, z: (t.z || []).length}})),
    markers: el.querySelectorAll(".scatterlayer .point").length,
    lines: el.querySelectorAll(".scatterlayer path.js-line").length,
    contourFills: new Set(Array.from(el.querySelectorAll(".contourlayer path"))
        .map(p => getComputedStyle(p).fill).filter(f => f && f !== "none")).size,
}}))"""


def free_port() -> int:
    """A port no one listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard_process(storage_url: str, log: Path) -> Iterator[str]:
    """Run ``bsopt dashboard`` in a process of its own; yields its base URL once it answers."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bsopt", "dashboard", "--storage", storage_url,
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,  # a file: a full pipe would stall the server
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + START_SECONDS
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"bsopt dashboard exited:\n{log.read_text()}")
                try:
                    with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bsopt dashboard did not answer:\n{log.read_text()}")
                time.sleep(0.5)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def study_page(base: str, study_name: str) -> str:
    """The dashboard's page of ``study_name``."""
    with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as answer:
        summaries = json.load(answer)["study_summaries"]
    (study_id,) = [s["study_id"] for s in summaries if s["study_name"] == study_name]
    return f"{base}/dashboard/studies/{study_id}"


def open_figures(browser: Any, url: str, keys: list[str]) -> Any:
    """A page showing ``url`` once Plotly has drawn the figures ``keys``."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.wait_for_function(DRAWN, arg=keys, timeout=DRAW_MS)
    return page


def figures_clip(page: Any, keys: Sequence[str] = ()) -> dict[str, float]:
    """The page region of the bsopt figures, with a margin; scrolls to the top of the page.

    Args:
        page: A page from :func:`open_figures`.
        keys: Only the rows holding these figures, at least two rows (a neighbour is added).
            optuna-dashboard orders the figures differently on every start, so the README
            picks its rows by figure.
    """
    page.evaluate("window.scrollTo(0, 0)")  # the fixed app bar stays out of the figures
    boxes = page.eval_on_selector_all(
        FIGURE_DIVS,
        "els => els.map(el => { const r = el.getBoundingClientRect();"
        " return [el.id.split('bsopt-')[1], r.left + scrollX, r.top + scrollY,"
        " r.right + scrollX, r.bottom + scrollY]; })",
    )
    if keys:
        tops = sorted({round(b[2]) for b in boxes})
        rows = sorted({tops.index(round(b[2])) for b in boxes if b[0] in keys})
        if len(rows) == 1:
            rows.append(rows[0] + 1 if rows[0] + 1 < len(tops) else rows[0] - 1)
        boxes = [b for b in boxes if tops.index(round(b[2])) in rows]
    x0, y0 = max(min(b[1] for b in boxes) - 10, 0), max(min(b[2] for b in boxes) - 10, 0)
    x1, y1 = max(b[3] for b in boxes) + 10, max(b[4] for b in boxes) + 10
    return {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's headless chromium through Playwright (never a downloaded browser)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def searched_study(tmp_path_factory) -> tuple[str, str]:
    """A study made by a real search (tiny: 6 random trials of 2 epochs on 200 digits)."""
    path = tmp_path_factory.mktemp("browser") / "bsopt.db"
    config, explicit = build_config(None, {
        "storage": f"sqlite:///{path}", "study_name": "browser-digits", "dataset": "digits",
        "max_train_samples": 200, "epochs": 2, "n_trials": 6, "sampler": "random",
        "pruner": "none", "batch_size": "16:128", "lr": "1e-4:1e-2", "device": "cpu",
    })
    result = search(config, explicit)  # attaches the figures at the end
    assert result.counts.get("COMPLETE") == 6  # no pruner, and no lr high enough to diverge
    return f"sqlite:///{path}", result.study_name


@pytest.mark.slow
@pytest.mark.browser
def test_the_dashboard_draws_the_bsopt_figures(searched_study, tmp_path):
    storage_url, name = searched_study
    expected = study_figures(optuna.load_study(study_name=name, storage=storage_url))
    log = tmp_path / "dashboard.log"
    with dashboard_process(storage_url, log) as base, chromium() as browser:
        page = open_figures(browser, study_page(base, name), list(FIGURE_KEYS))
        assert name in page.inner_text("body")
        drawn = {f["key"]: f for f in page.evaluate(DESCRIBE)}
        surface = page.locator('[id="user-defined-plot:bsopt-loss_surface"]')
        surface.scroll_into_view_if_needed()
        surface.screenshot(path=tmp_path / "loss_surface.png")
        page.screenshot(path=tmp_path / "dashboard.png", full_page=True,
                        clip=figures_clip(page))

    assert sorted(drawn) == sorted(FIGURE_KEYS)
    # Figures whose quantity this study did not measure (no --noise-scale, no target reached)
    # are drawn empty with their title; the others carry data.
    assert all(drawn[key]["traces"] for key in FIGURE_KEYS if expected[key].data)
    for key, figure in drawn.items():
        assert figure["title"] == expected[key].layout.title.text
        assert [t["type"] for t in figure["traces"]] == [t.type for t in expected[key].data]

    loss_surface = drawn["loss_surface"]
    assert loss_surface["title"] == SURFACE_TITLE
    contour, complete = loss_surface["traces"][:2]
    assert contour["type"] == "contour" and contour["z"] > 0
    assert complete["n"] == 6
    assert loss_surface["markers"] == 6  # one marker per trial, drawn in the SVG
    assert loss_surface["contourFills"] >= 3  # filled contour bands of several colours
    assert drawn["learning_curves"]["lines"] == 2 * 6  # validation and training per trial
    assert drawn["best_lr_by_batch"]["markers"] > 0

    # The screenshot shows a coloured surface, not an empty box.
    colours = Image.open(tmp_path / "loss_surface.png").convert("RGB").getcolors(1 << 20)
    assert colours is not None and len(colours) > 100
    assert "Traceback" not in log.read_text()


def write_readme_screenshot(storage_url: str, study_name: str, out: Path) -> None:
    """The README's screenshot: the rows of a study's figures holding README_FIGURES."""
    with dashboard_process(storage_url, out.with_suffix(".log")) as base, chromium() as browser:
        page = open_figures(browser, study_page(base, study_name), list(FIGURE_KEYS))
        page.wait_for_timeout(1000)  # let the 3-D scene finish its first WebGL frame
        page.screenshot(path=out, full_page=True, clip=figures_clip(page, README_FIGURES))
    out.with_suffix(".log").unlink()


if __name__ == "__main__":
    write_readme_screenshot(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
