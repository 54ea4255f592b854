"""docs/benchmarks.md is shared by the benchmark scripts: each rewrites only its section."""

import re
from pathlib import Path

DOC_INTRO = """# Benchmarks

Speed, memory and accuracy measurements of `es_toolkit`, each produced by a script in
`scripts/` that rewrites its own section of this file.
"""


def write_section(path: Path, title: str, section: str) -> None:
    """Writes ``section`` (starting with the ``title`` line) into ``path``, replacing an
    earlier version of it; the file is re-read right before writing, since other scripts
    write other sections."""
    text = path.read_text() if path.exists() else DOC_INTRO
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
