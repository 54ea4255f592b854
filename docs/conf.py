"""Sphinx configuration of the es_toolkit documentation site.

Build it with ``sphinx-build -W --keep-going -b html docs docs/_build/html``. The pages
are Markdown (MyST); the API reference is generated from the docstrings (autodoc,
autosummary, Google style through napoleon). Nothing is fetched from the network, at build
time or when a page is viewed: math is rendered to MathML at build time (``_ext/mathml.py``).

Code on the pages: a ```python block is run by tests/test_docs_site.py; Python that cannot
run there (a cluster, MPI, several devices, a GPU) goes in a ```{code-block} python block,
which the test only compiles.
"""

import sys
from pathlib import Path

from sphinx.ext.autosummary.generate import find_autosummary_in_files

import es_toolkit

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "es_toolkit"
author = "es_toolkit authors"
copyright = "the es_toolkit authors"
release = version = es_toolkit.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "mathml",
]

# Benchmark prose templates, raw results and the build itself are not pages.
exclude_patterns = ["_build", "benchmarks", "results", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}

# Markdown: $...$ and $$...$$ math, anchors for links to sections.
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# The API reference: one generated page per public name, from every API page (listed, so
# that a page new since the last build gets its stubs too).
autosummary_generate = sorted(str(path.relative_to(DOCS)) for path in (DOCS / "api").glob("*.rst"))
autodoc_default_options = {"members": True, "exclude-members": "count, index"}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes as a field list: no second description of a NamedTuple's fields.
napoleon_use_ivar = True
# One entry for "a, b: ..." (not the description once per name).
napoleon_use_param = False

html_theme = "furo"
html_title = "es_toolkit"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_show_sourcelink = False
html_favicon = "_static/favicon.svg"  # without one, browsers ask for /favicon.ico (a 404)
# Source links only from where a name is defined: a name documented both where it is
# defined and where it is re-exported (es_toolkit.Normal, es_toolkit.noise.Normal) would
# otherwise get a link back to an anchor that does not exist.
viewcode_follow_imported_members = False
html_math_renderer = "mathml"


def _describe_constant(app, what, name, obj, options, lines):
    """A module constant has no docstring of its own: autodoc would show its type's (a
    dict's constructor help). Say instead what it holds, read from the value."""
    if what != "data" or getattr(obj, "__doc__", None) != type(obj).__doc__:
        return
    if isinstance(obj, dict):
        keys = ", ".join(f"``{key!r}``" for key in obj)
        lines[:] = [f"A ``dict`` of {len(obj)} entries, keyed by {keys}."]
    else:
        lines[:] = [f"``{obj!r}``"]


def _drop_stale_stubs(app):
    """Removes generated pages of names no API page lists any more (autosummary writes
    stubs but never deletes them), so that an incremental build matches a fresh one."""
    listed = find_autosummary_in_files([str(DOCS / page) for page in autosummary_generate])
    wanted = {f"{entry.name}.rst" for entry in listed}
    for stub in (DOCS / "api" / "generated").glob("*.rst"):
        if stub.name not in wanted:
            stub.unlink()


def setup(app):
    app.connect("autodoc-process-docstring", _describe_constant)
    app.connect("builder-inited", _drop_stale_stubs, priority=600)  # after autosummary
