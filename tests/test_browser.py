"""A real browser: JupyterLab runs a lesson, a slider moves, the figure changes; the site opens offline.

Drives Debian's headless Chromium (/usr/bin/chromium) through the ``playwright`` package, launched
with ``executable_path`` (never ``playwright install``). A fixture starts JupyterLab on 127.0.0.1
with a random port and token, on a copy of the lesson (so nothing can autosave over the committed
notebook), and always stops it. Screenshots go to build/screenshots/ (ignored by git).

Without Chromium or playwright the tests are skipped locally and FAIL in CI (CI=true).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from course_lib.authoring.build_exercises import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOTS = ROOT / "build" / "screenshots"
LESSON = "02_softmax.ipynb"  # uses softmax_explorer: a temperature slider
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _unavailable(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser test cannot run in CI: {reason} (.ci/run installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install -e '.[dev]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - 127.0.0.1 only
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """JupyterLab on 127.0.0.1:<random port> with a random token, on a copy of the lesson."""
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    shutil.copy2(ROOT / "notebooks" / LESSON, root / "notebooks" / LESSON)
    settings = root / ".settings"
    for plugin, values in {
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},  # render every cell
    }.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(root / ".jupyter"), JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
               f"--ServerApp.root_dir={root}", "--allow-root", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={root / '.workspaces'}"]
    log = open(root / "server.log", "wb")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while _get_or_none(f"{base}/api/status?token={token}") != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("JupyterLab did not start:\n" + (root / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield {"base": base, "token": token, "root": root}
    finally:
        _stop(server, base, token)
        log.close()


def _get_or_none(url):
    try:
        return _get(url)
    except (urllib.error.URLError, ConnectionError, OSError):
        return None


def _stop(server: subprocess.Popen, base: str, token: str) -> None:
    """Shut the server down (kernels first, through its API), then make sure the process is gone."""
    if server.poll() is None:
        try:
            request = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(request, timeout=10).close()  # noqa: S310 - 127.0.0.1 only
            server.wait(timeout=20)
        except Exception:  # noqa: BLE001 - whatever happened, the process must end
            pass
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


class Watch:
    """Console errors, page errors, requests to hosts other than this machine, failed requests."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.remote: list[str] = []
        self.failed: list[str] = []
        page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.on("request", self._request)
        page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))

    def _request(self, request):
        url = urlparse(request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in LOCAL_HOSTS:
            self.remote.append(request.url)


# MathJax 2 typesets *after* the page's load event: only then does it fetch its font data (.js) and
# its web fonts (.woff), one after the other as it meets new glyphs, and it waits for a web font at
# most 8 s before it gives up and finishes without it (the browser still fetching the file).
# Leaving a page (a click on a link) while one of those requests is in flight aborts it
# (net::ERR_ABORTED: a failed request). On a busy machine the click landed in that window: on the
# index nothing waited for MathJax at all, and on a lesson an empty MathJax queue does not mean that
# no font is loading. So a page is left, and judged, only once it has settled: MathJax's queue is
# empty (typesetting finished, with every font-data script it asked for) and no font face is loading.
SETTLED = """() => window.MathJax !== undefined && MathJax.Hub !== undefined && MathJax.Hub.queue !== undefined
              && MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0
              && MathJax.Hub.queue.queue.length === 0 && document.fonts.status === 'loaded'"""


def _settle(page) -> None:
    """Wait until MathJax has typeset the page and no web font is loading (see SETTLED)."""
    page.wait_for_function(SETTLED, timeout=60_000)


def _image_digest(page, locator) -> str:
    """sha256 of the bytes the <img> shows (the widget's PNG, behind a blob: URL)."""
    data = page.evaluate(
        """async (img) => { const r = await fetch(img.src); const b = new Uint8Array(await r.arrayBuffer());
                            return Array.from(b); }""", locator.element_handle())
    return hashlib.sha256(bytes(data)).hexdigest()


def test_lesson_runs_in_jupyterlab_and_the_slider_changes_the_figure(chromium, jupyterlab):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    watch = Watch(page)
    try:
        page.goto(f"{jupyterlab['base']}/lab/tree/notebooks/{LESSON}?reset&token={jupyterlab['token']}")
        page.wait_for_selector(".jp-NotebookPanel .jp-MarkdownCell", timeout=60_000)
        page.locator(".jp-StatusBar-Widget", has_text="Idle").first.wait_for(timeout=60_000)  # kernel ready
        cell = page.locator(".jp-CodeCell", has_text="softmax_explorer(s_it").first
        # Opened, not yet run: the saved output is untrusted, so JupyterLab shows its static PNG.
        cell.locator(".jp-OutputArea-output[data-mime-type='image/png'] img").wait_for(timeout=30_000)
        cell.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "lab_02_opened.png"))

        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()

        explorer = cell.locator(".jp-OutputArea-output .widget-vbox").first
        explorer.wait_for(state="visible", timeout=90_000)
        slider = explorer.locator(".widget-hslider").filter(has_text="T").first
        handle = slider.locator(".noUi-handle").first
        readout = slider.locator(".widget-readout").first
        image = explorer.locator("img").first
        status = explorer.locator(".widget-html").first
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        explorer.scroll_into_view_if_needed()
        before_text, before_readout = status.inner_text(), readout.inner_text()
        before_digest = _image_digest(page, image)
        explorer.screenshot(path=str(SCREENSHOTS / "lab_02_explorer_before.png"))
        assert "entropy H = 1.591 nats" in before_text  # the starting state the lesson describes

        box = handle.bounding_box()  # drag the temperature handle to the right, as a person would
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()

        page.wait_for_function("([el, old]) => el.innerText !== old", arg=[status.element_handle(), before_text],
                               timeout=30_000)
        page.wait_for_timeout(300)  # the image message follows the status
        after_digest = _image_digest(page, image)
        explorer.screenshot(path=str(SCREENSHOTS / "lab_02_explorer_after.png"))
        page.screenshot(path=str(SCREENSHOTS / "lab_02_page_after.png"))

        assert readout.inner_text() != before_readout  # the slider moved ...
        assert after_digest != before_digest  # ... and the figure changed
        after_text = status.inner_text()
        assert "entropy H = 1.591 nats" not in after_text and f"T = {readout.inner_text()}" in after_text
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        assert not watch.errors, watch.errors
        assert not watch.remote, watch.remote
    finally:
        page.close()


@pytest.fixture(scope="module")
def site(built_site):
    return built_site  # built once per run, shared with test_site.py (conftest.py)


def test_the_offline_site_opens_from_disk_with_nothing_remote(chromium, site):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = chromium.new_page(viewport={"width": 1200, "height": 900})
    watch = Watch(page)
    try:
        page.goto((site / "index.html").as_uri())
        _settle(page)  # the index typesets chapter 03's title ($\sqrt{d_k}$): its fonts load after "load"
        assert page.locator(".MathJax").count() >= 1
        chapters = page.locator("ol.chapters > li > a:first-child")
        assert chapters.count() == len(list((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
        page.screenshot(path=str(SCREENSHOTS / "site_index.png"), full_page=True)

        page.locator("ol.chapters a", has_text=re.compile(r"^02 ")).first.click()
        page.wait_for_load_state("load")
        assert page.url.endswith("/02_softmax.html")
        _settle(page)
        assert page.locator(".MathJax").count() > 10  # the formulas were typeset, by the local MathJax
        assert page.locator(".MathJax_Error, .merror").count() == 0
        assert page.locator("nav.course-nav a", has_text="Contents").count() == 2
        explorer_png = page.locator("img[src^='data:image/png']")
        assert explorer_png.count() >= 3  # the lesson's figures, the explorer's starting state among them
        page.screenshot(path=str(SCREENSHOTS / "site_02_softmax.png"))
        page.locator("text=Try it yourself").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "site_02_explorer.png"))

        page.locator("nav.course-nav a", has_text=re.compile(r"→")).first.click()  # next chapter
        page.wait_for_load_state("load")
        assert page.url.endswith("/03_scaling.html")
        _settle(page)  # so that what this page's MathJax fetches is judged too
        assert page.locator(".MathJax").count() > 0 and page.locator(".MathJax_Error, .merror").count() == 0

        assert not watch.remote, watch.remote
        # MathJax 2 probes font loading with a @font-face whose src is about:blank: a local, harmless miss.
        assert [f for f in watch.failed if not f.startswith("about:blank")] == []
        assert [e for e in watch.errors if "about:blank" not in e and "net::ERR_FAILED" not in e] == []
    finally:
        page.close()
