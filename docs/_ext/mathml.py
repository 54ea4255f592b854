"""Math as MathML, rendered at build time: no script and no network when a page is viewed.

Sphinx's default renderer loads MathJax from a CDN in the reader's browser; this one turns
the LaTeX of ``:math:``, ``.. math::``, ``$...$`` and ``$$...$$`` into MathML with
latex2mathml, which browsers draw natively. A block whose lines are aligned with ``&`` or
broken with ``\\`` becomes a ``split`` environment, as Sphinx's MathJax renderer does. A
command latex2mathml does not know is a build warning naming it (and so, under ``-W``, an
error), instead of raw LaTeX on the page.
"""

import re

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.util import logging

logger = logging.getLogger(__name__)

# An element whose text is still a LaTeX command, or a bare alignment mark.
_UNCONVERTED = re.compile(r">\s*(\\[A-Za-z]+|&)\s*<")


def latex_to_mathml(latex: str, display: str) -> str:
    """The MathML of ``latex``, ``display`` "inline" or "block".

    Raises:
        ValueError: latex2mathml left a command (or an ``&``) unconverted.
    """
    # latex2mathml knows split, not aligned (the same layout for one display).
    source = latex.strip().replace("{aligned}", "{split}")
    if display == "block" and ("\\\\" in source or "&" in source) and "\\begin" not in source:
        source = f"\\begin{{split}}{source}\\end{{split}}"
    mathml = convert(source, display=display)
    left = _UNCONVERTED.search(mathml)
    if left:
        raise ValueError(f"cannot render {left.group(1)!r} as MathML in: {latex.strip()}")
    return mathml


def _render(translator, node, display: str) -> str:
    try:
        return latex_to_mathml(node.astext(), display)
    except Exception as error:  # latex2mathml's own errors, and ours above
        logger.warning("math: %s", error, location=node, type="math", subtype="mathml")
        return f"<code>{translator.encode(node.astext())}</code>"


def visit_inline(translator, node):
    translator.body.append(translator.starttag(node, "span", "", CLASS="math"))
    translator.body.append(_render(translator, node, "inline"))
    translator.body.append("</span>")
    raise nodes.SkipNode


def visit_block(translator, node):
    translator.body.append(translator.starttag(node, "div", CLASS="math"))
    # Sphinx's convention: equations separated by a blank line are separate displays.
    for part in (part for part in node.astext().split("\n\n") if part.strip()):
        block = nodes.math_block(part, part)
        block.source, block.line = node.source, node.line
        translator.body.append(_render(translator, block, "block"))
    translator.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer(
        "mathml", inline_renderers=(visit_inline, None), block_renderers=(visit_block, None)
    )
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
