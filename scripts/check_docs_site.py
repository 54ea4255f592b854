"""Checks the built documentation site as a reader sees it, in a real browser.

Usage (after building the site with README's command)::

    .venv/bin/python scripts/check_docs_site.py [--site docs/_build/html]
        [--screenshots docs/_build/screenshots]

It serves the site on 127.0.0.1 (``http.server`` in a thread, on a free port), then:

1. crawls every internal link from the home page with urllib: every page, picture, style
   sheet and script must load, and every ``#anchor`` must exist on its page;
2. opens the home page, the getting-started page, guides and an API page in headless
   Chromium, driven through chromedriver by the W3C WebDriver protocol (plain HTTP, so no
   Python package is needed), and fails on an error in the browser's console, a picture
   that did not load, math not drawn as MathML, or any request to another host (the site
   must work offline);
3. saves a screenshot of each page's first screen and of the whole page.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``). Exits 0 when everything passes, 1 with the problems listed otherwise.
"""

import argparse
import base64
import functools
import html.parser
import http.server
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# (page, screenshot name): the home page, the start, guides with math and pictures, an
# API page with math, the benchmark tables.
PAGES = (
    ("index.html", "home"),
    ("getting_started.html", "getting-started"),
    ("guides/strategies.html", "guide-strategies"),
    ("guides/training.html", "guide-training"),
    ("api/generated/es_toolkit.strategies.cma_es.html", "api-cma-es"),
    ("api/strategy_rules.html", "api-strategy-rules"),
    ("benchmarks.html", "benchmarks"),
)
PAGES_WITH_MATH = (
    "guides/strategies.html",
    "api/generated/es_toolkit.strategies.cma_es.html",
    "api/strategy_rules.html",
)
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
VIEWPORT = (1280, 900)
FULL_PAGE_MAX_HEIGHT = 8000  # pixels; longer pages are cut there


# --------------------------------------------------------------------------------------
# Serving and crawling.
# --------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # one line per request would drown the report
        pass


@contextmanager
def serve(site: Path) -> Iterator[str]:
    """The site served on 127.0.0.1 at a free port; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Page(html.parser.HTMLParser):
    """A page's element ids and the URLs it links to or loads."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attributes.get(key):
                self.ids.add(attributes[key])
        for key in ("href", "src"):
            if attributes.get(key):
                self.urls.append(attributes[key])


def fetch(url: str) -> tuple[int, bytes, str]:
    """(HTTP status, body, content type) of ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), response.headers.get_content_type()
    except urllib.error.HTTPError as error:
        return error.code, b"", ""


def crawl(base: str) -> tuple[int, list[str]]:
    """Follows every internal link from the home page: (pages visited, problems)."""
    pages: dict[str, _Page] = {}
    fragments: list[tuple[str, str, str]] = []  # (from page, target page, fragment)
    checked: set[str] = set()
    queue = [base + "index.html"]
    problems: list[str] = []
    while queue:
        url = queue.pop()
        if url in checked:
            continue
        checked.add(url)
        status, body, content_type = fetch(url)
        if status != 200:
            problems.append(f"{url}: HTTP {status}")
            continue
        if content_type != "text/html":
            continue
        page = pages[url] = _Page()
        page.feed(body.decode("utf-8", errors="replace"))
        for link in page.urls:
            target = urllib.parse.urljoin(url, link)
            if not target.startswith(base):
                continue  # other hosts are for the reader to follow, not to check here
            target, _, fragment = target.partition("#")
            if target.endswith("/"):
                target += "index.html"
            if fragment:
                fragments.append((url, target, urllib.parse.unquote(fragment)))
            if target not in checked:
                queue.append(target)
    for page_url, target, fragment in fragments:
        if target in pages and fragment not in pages[target].ids:
            problems.append(f"{page_url}: {target}#{fragment}: no such anchor")
    return len(pages), problems


# --------------------------------------------------------------------------------------
# The browser, through chromedriver.
# --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WebDriver:
    """The few W3C WebDriver commands this check needs, over plain HTTP."""

    def __init__(self, url: str):
        self.url = url
        self.session = ""

    def call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            detail = json.loads(error.read() or b"{}").get("value", {})
            message = f"WebDriver {method} {path}: {detail.get('message', error)}"
            raise RuntimeError(message) from None

    def start(self, profile: Path) -> None:
        options = {"binary": str(CHROMIUM), "args": [*CHROMIUM_ARGS, f"--user-data-dir={profile}"]}
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"pageLoad": 60_000, "script": 30_000},
        }
        answer = self.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})
        self.session = f"/session/{answer['sessionId']}"

    def stop(self) -> None:
        if self.session:
            self.call("DELETE", self.session)
            self.session = ""

    def open(self, url: str) -> None:
        self.call("POST", f"{self.session}/url", {"url": url})

    def run(self, script: str):
        return self.call("POST", f"{self.session}/execute/sync", {"script": script, "args": []})

    def console(self) -> list[dict]:
        """The browser console's entries since the last call."""
        return self.call("POST", f"{self.session}/se/log", {"type": "browser"})

    def resize(self, width: int, height: int) -> None:
        self.call("POST", f"{self.session}/window/rect", {"width": width, "height": height})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("GET", f"{self.session}/screenshot")))


@contextmanager
def browser() -> Iterator[WebDriver]:
    """Headless Chromium under chromedriver on a free loopback port, with a new empty
    profile; both stopped (and the profile removed) however the check ends."""
    port = free_port()
    driver_log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in the finally below)
    driver = subprocess.Popen(
        [str(CHROMEDRIVER), f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=driver_log,
        stderr=subprocess.STDOUT,
    )
    profile = Path(tempfile.mkdtemp(prefix="es-toolkit-docs-chromium-"))
    web = WebDriver(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if web.call("GET", "/status").get("ready"):
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if driver.poll() is not None or time.monotonic() > deadline:
                driver_log.seek(0)
                raise RuntimeError(f"chromedriver did not start: {driver_log.read()[-2000:]!r}")
            time.sleep(0.2)
        web.start(profile)
        yield web
    finally:
        try:
            web.stop()
        finally:
            driver.terminate()
            try:
                driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()
            driver_log.close()
            shutil.rmtree(profile, ignore_errors=True)


WAIT_FOR_IMAGES = """
return Array.from(document.images).every(image => image.complete);
"""
PAGE_FACTS = """
const broken = Array.from(document.images)
    .filter(image => !(image.complete && image.naturalWidth > 0))
    .map(image => image.src);
const requests = performance.getEntriesByType("resource").map(entry => entry.name);
const math = Array.from(document.querySelectorAll("math"));
return {
    title: document.title,
    height: document.documentElement.scrollHeight,
    broken_images: broken,
    images: document.images.length,
    requests: requests,
    math: math.length,
    math_drawn: math.filter(node => node.getBoundingClientRect().width > 0).length,
};
"""


def check_page(web: WebDriver, base: str, page: str, name: str, out: Path) -> list[str]:
    """Opens one page; its problems, and its screenshots saved under ``out``."""
    web.resize(*VIEWPORT)
    web.open(base + page)
    web.screenshot(out / f"{name}.png")
    facts = web.run(PAGE_FACTS)
    web.resize(VIEWPORT[0], min(max(facts["height"], VIEWPORT[1]), FULL_PAGE_MAX_HEIGHT))
    deadline = time.monotonic() + 15
    while not web.run(WAIT_FOR_IMAGES) and time.monotonic() < deadline:
        time.sleep(0.2)
    facts = web.run(PAGE_FACTS)
    web.screenshot(out / f"{name}-full.png")
    problems = [
        f"{page}: console {entry.get('level')}: {entry.get('message')}"
        for entry in web.console()
        if entry.get("level") in ("SEVERE", "ERROR")
    ]
    problems += [f"{page}: picture did not load: {src}" for src in facts["broken_images"]]
    problems += [
        f"{page}: requested {url} from another host"
        for url in facts["requests"]
        if not url.startswith(base)
    ]
    if page in PAGES_WITH_MATH and not (facts["math"] and facts["math_drawn"] == facts["math"]):
        problems.append(f"{page}: {facts['math_drawn']} of {facts['math']} formulas drawn")
    print(
        f"  {page}: '{facts['title']}', {facts['images']} pictures, {facts['math']} formulas, "
        f"{len(facts['requests'])} requests, {facts['height']} px tall"
    )
    return problems


def check_site(site: Path, screenshots: Path) -> list[str]:
    """Every problem found on the served ``site``; screenshots go to ``screenshots``."""
    screenshots.mkdir(parents=True, exist_ok=True)
    with serve(site) as base:
        visited, problems = crawl(base)
        print(f"crawled {visited} pages from {base}: {len(problems)} broken links")
        with browser() as web:
            for page, name in PAGES:
                problems += check_page(web, base, page, name, screenshots)
    print(f"screenshots in {screenshots}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "docs" / "_build" / "html")
    parser.add_argument(
        "--screenshots", type=Path, default=ROOT / "docs" / "_build" / "screenshots"
    )
    args = parser.parse_args(argv)
    if not (args.site / "index.html").is_file():
        parser.error(f"--site {args.site} holds no built site (no index.html): build it first")
    for program in (CHROMIUM, CHROMEDRIVER):
        if not program.exists():
            parser.error(f"{program} is missing: apt-get install -y chromium chromium-driver")
    problems = check_site(args.site, args.screenshots)
    for problem in problems:
        print(f"FAIL {problem}")
    print("ok: no problems" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
