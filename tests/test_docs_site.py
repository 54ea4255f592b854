"""The documentation site (docs/, built by Sphinx): its examples run, its set-up commands
are CI's, its API reference names every public object, its links and pictures resolve
offline, and it renders in a real browser.

Code on the site's Markdown pages follows one rule: a ```python block runs here, in order
with the page's other blocks and in a fresh working folder; a ```{code-block} python block
is Python that cannot run here (it needs a cluster, MPI, several devices or a GPU) and is
only compiled. Other fences (bash, text) are not Python.
"""

import html.parser
import importlib
import pkgutil
import posixpath
import re
import runpy
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import es_toolkit.envs
import pytest
from markdown_it import MarkdownIt
from sphinx.project import Project
from sphinx.util.inventory import InventoryFile

import es_toolkit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SITE = DOCS / "_build" / "html"
BUILD_COMMAND = "sphinx-build -W --keep-going -b html docs docs/_build/html"
CHROMIUM = Path("/usr/bin/chromium")


def site_pages() -> list[Path]:
    """The Markdown pages Sphinx reads, found as Sphinx finds them (conf.py's exclusions)."""
    conf = runpy.run_path(str(DOCS / "conf.py"))
    project = Project(DOCS, conf["source_suffix"])
    names = project.discover(exclude_paths=conf["exclude_patterns"])
    paths = (Path(project.doc2path(name, absolute=True)) for name in names)
    return sorted(path for path in paths if path.suffix == ".md")


def fences(page: Path, info: str) -> list[str]:
    tokens = MarkdownIt("commonmark").parse(page.read_text())
    return [token.content for token in tokens if token.type == "fence" and token.info == info]


PAGES = site_pages()
PAGE_IDS = [str(page.relative_to(DOCS)) for page in PAGES]


def test_site_pages_are_found():
    names = set(PAGE_IDS)
    # The pages every reader starts from; the benchmark templates are no pages.
    assert {"index.md", "getting_started.md", "benchmarks.md", "changelog.md"} <= names
    assert not any(name.startswith(("benchmarks/", "_build/", "results/")) for name in names)


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for index, block in enumerate(fences(page, "python")):
        exec(
            compile(block, f"{page.relative_to(DOCS)}, python block {index + 1}", "exec"), namespace
        )


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_page_python_that_cannot_run_here_compiles(page):
    for index, block in enumerate(fences(page, "{code-block} python")):
        compile(block, f"{page.relative_to(DOCS)}, code-block {index + 1}", "exec")


def test_the_site_shows_runnable_examples():
    runnable = [page.name for page in PAGES if fences(page, "python")]
    assert {"index.md", "getting_started.md", "black_box.md", "training.md"} <= set(runnable)


# --------------------------------------------------------------------------------------
# Commands: README's test command is what CI runs, and the site repeats README's set-up.
# --------------------------------------------------------------------------------------


def bash_blocks(markdown: Path) -> list[str]:
    return [block.strip() for block in fences(markdown, "bash")]


def test_readme_test_command_is_what_ci_runs():
    ci_commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    readme_tests = [block for block in bash_blocks(ROOT / "README.md") if "pytest" in block]
    assert ci_commands == readme_tests
    # The site is built (warnings as errors) before the tests run.
    command = readme_tests[0]
    assert f".venv/bin/{BUILD_COMMAND} && .venv/bin/python -m pytest" in command


def test_readme_has_one_command_that_builds_the_site():
    builds = [block for block in bash_blocks(ROOT / "README.md") if "pytest" not in block]
    assert [block for block in builds if BUILD_COMMAND in block] == [
        f'.venv/bin/pip install -e ".[docs]" && .venv/bin/{BUILD_COMMAND}'
    ]


def test_getting_started_repeats_readmes_set_up_commands():
    readme = bash_blocks(ROOT / "README.md")
    set_up = [block for block in readme if block.startswith("python3 -m venv .venv")]
    assert len(set_up) == 2
    page = bash_blocks(DOCS / "getting_started.md")
    assert all(command in page for command in set_up)


def test_changelog_cites_commits_of_this_repository():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    text = (DOCS / "changelog.md").read_text()
    cited = re.findall(r"\(([0-9a-f]{7}(?:, [0-9a-f]{7})*)\)", text)
    hashes = sorted({commit for group in cited for commit in group.split(", ")})
    assert len(hashes) > 20
    for commit in hashes:
        check = subprocess.run(
            ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True
        )
        assert check.returncode == 0, f"changelog.md cites {commit}, which is no commit here"


# --------------------------------------------------------------------------------------
# The built site.
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site() -> Path:
    """docs/_build/html brought up to date (incremental: seconds after README's build)."""
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "docs",
            str(SITE.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-5000:]
    return SITE


def public_names() -> list[tuple[str, str]]:
    """(module, name) for every name in the ``__all__`` of es_toolkit and of each of its
    public packages and modules (no part of the name starting with an underscore).
    es_toolkit.envs is installed from its own folder, so it is walked on its own."""
    modules = ["es_toolkit", "es_toolkit.envs"]
    for package in (es_toolkit, es_toolkit.envs):
        modules += [
            info.name
            for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
            if not any(part.startswith("_") for part in info.name.split("."))
        ]
    names = []
    for module_name in sorted(set(modules)):
        module = importlib.import_module(module_name)
        names += [(module_name, name) for name in getattr(module, "__all__", ())]
    return names


def resolve(dotted: str):
    """The object a documented name stands for, imported; ``None`` if it is none."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                target = getattr(target, attribute)
        except AttributeError:
            return None
        return target
    return None


def test_api_reference_documents_every_public_name(site):
    with (site / "objects.inv").open("rb") as stream:
        inventory = InventoryFile.load(stream, "", posixpath.join)
    documented = {
        name for kind, entries in inventory.items() if kind.startswith("py:") for name in entries
    }
    # A name re-exported elsewhere (es_toolkit.optimize.minimize is es_toolkit.minimize)
    # counts as documented where it is documented.
    documented_ids = {id(resolve(name)) for name in documented}
    names = public_names()
    packages = {module for module, _ in names}
    assert {
        "es_toolkit",
        "es_toolkit.envs",
        "es_toolkit.strategies",
        "es_toolkit.training",
    } <= packages
    missing = [
        f"{module}.{name}"
        for module, name in names
        if f"{module}.{name}" not in documented
        and id(getattr(importlib.import_module(module), name)) not in documented_ids
    ]
    assert not missing, f"no API page documents: {', '.join(missing)}"


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[tuple[str, str]] = []  # (tag, url)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        if tag == "a" and attributes.get("name"):
            self.ids.add(attributes["name"])
        for key in ("href", "src"):
            if attributes.get(key):
                self.links.append((tag, attributes[key]))


def parse_page(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(errors="replace"))
    return parser


def test_built_site_links_resolve_and_load_nothing_from_the_network(site):
    pages = {path: parse_page(path) for path in site.rglob("*.html")}
    assert len(pages) > 50
    problems = []
    for path, page in pages.items():
        where = path.relative_to(site)
        for tag, url in page.links:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme in ("http", "https") or url.startswith("//"):
                # Links out are fine; what a page loads must come from the site itself.
                if tag in ("img", "script", "link", "iframe", "source"):
                    problems.append(f"{where}: loads {url} from the network")
                continue
            if parts.scheme:  # mailto:, data:, javascript:
                continue
            target = (
                (path.parent / urllib.parse.unquote(parts.path)).resolve() if parts.path else path
            )
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{where}: {url} does not exist")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse_page(target).ids
                if parts.fragment not in ids:
                    problems.append(f"{where}: {url} has no anchor #{parts.fragment}")
    assert not problems, "\n".join(problems[:50])


def test_every_picture_in_docs_images_is_on_a_page(site):
    shown = {path.name for path in (site / "_images").glob("*.png")}
    pictures = {path.name for path in (DOCS / "images").glob("*.png")}
    assert pictures, "docs/images has no picture"
    assert not pictures - shown, f"pictures on no page: {sorted(pictures - shown)}"


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no browser: /usr/bin/chromium is missing (apt-get install -y chromium "
    "chromium-driver) for scripts/check_docs_site.py",
)
def test_site_renders_in_chromium_without_console_errors(site, tmp_path):
    check = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "check_docs_site.py"),
            "--site",
            str(site),
            "--screenshots",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-4000:]
    assert len(list(tmp_path.glob("*.png"))) >= 3
