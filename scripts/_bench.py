"""What the benchmark scripts share: the machine and software a run describes, workers run
in fresh processes that print one JSON result, the command that reproduces a run, and
docs/benchmarks.md, whose prose lives in docs/benchmarks/*.md while the scripts compute
the numbers and tables that fill it."""

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS_DOC = ROOT / "docs" / "benchmarks.md"
PROSE_DIR = ROOT / "docs" / "benchmarks"
RESULT_PREFIX = "BENCH_RESULT "
OUTPUT_OPTIONS = ("--json", "--output", "--from-json")  # where results go, not what they are
_FRAGMENT = re.compile(r"^<!-- fragment: ([a-z_]+) -->$", re.M)
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


# --------------------------------------------------------------------------------------
# docs/benchmarks.md: prose from Markdown files, one section per script.
# --------------------------------------------------------------------------------------


def prose(name: str) -> dict[str, str]:
    """The fragments of ``docs/benchmarks/<name>.md``: the text after each
    ``<!-- fragment: NAME -->`` line up to the next one, blank lines around it stripped."""
    path = PROSE_DIR / f"{name}.md"
    parts = _FRAGMENT.split(path.read_text())
    if len(parts) < 3:
        raise ValueError(f"{path} has no '<!-- fragment: NAME -->' line")
    return {key: text.strip("\n") for key, text in zip(parts[1::2], parts[2::2], strict=True)}


def fill(template: str, **fields) -> str:
    """``template`` with each ``{name}`` replaced by ``str(fields[name])``.

    Only lowercase identifiers in braces are placeholders, so other braces in Markdown
    need no escaping; a placeholder without a field is an error naming it.
    """

    def field(match):
        name = match.group(1)
        if name not in fields:
            raise KeyError(f"prose placeholder {{{name}}} has no value")
        return str(fields[name])

    return _PLACEHOLDER.sub(field, template)


def write_section(path: Path, title: str, section: str) -> None:
    """Writes ``section`` (starting with the ``title`` line) into ``path``, replacing an
    earlier version of it; the file is re-read right before writing, since other scripts
    write other sections."""
    text = path.read_text() if path.exists() else prose("intro")["intro"] + "\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def previous_subsection(path: Path, title: str, heading: str) -> str:
    """The ``heading`` subsection of section ``title`` in ``path`` as it stands ("" if
    absent): kept by a run that does not measure it again."""
    text = path.read_text() if path.exists() else ""
    section = text.find(f"{title}\n")
    start = text.find(heading, section) if section >= 0 else -1
    if start < 0:
        return ""
    end = text.find("\n## ", start)
    return text[start : len(text) if end < 0 else end].rstrip()


# --------------------------------------------------------------------------------------
# Where and with what a run happened.
# --------------------------------------------------------------------------------------


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        if match:
            return match.group(1).strip()
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """For example ``2-core CPU (AMD EPYC), Linux``."""
    return f"{os.cpu_count()}-core CPU ({cpu_model()}), {platform.system()}"


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, for example ``2.6, 2.0, 1.0``."""
    return ", ".join(f"{load:.1f}" for load in os.getloadavg())


def package_versions(names) -> str:
    """For example ``jax 0.10.2, optax 0.2.8``; packages not installed are left out."""
    found = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


def library_version(paths=("es_toolkit", "envs")) -> str:
    """The commit of the checkout, and whether ``paths`` differ from it."""

    def git(*command):
        proc = subprocess.run(["git", *command], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "es_toolkit (no git checkout)"
    dirty = " with local changes" if git("status", "--porcelain", *paths) else ""
    return f"es_toolkit at commit {commit}{dirty}"


def today() -> str:
    return datetime.date.today().isoformat()


def add_output_options(parser) -> None:
    """``OUTPUT_OPTIONS``: where the section goes, raw results saved and read back."""
    parser.add_argument("--output", type=Path, help="markdown file to update")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--from-json", type=Path, help="rebuild the section from a --json file, measuring nothing"
    )


def reproduce_command(command: str, argv, output_options=OUTPUT_OPTIONS, output_flags=()) -> str:
    """``command`` followed by ``argv`` less the options that only say where results go
    (``output_options`` take a value, ``output_flags`` do not)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in output_options:
            skip = True
        elif arg not in output_flags and not arg.startswith(
            tuple(f"{option}=" for option in output_options)
        ):
            kept.append(arg)
    return " ".join([command, *kept])


# --------------------------------------------------------------------------------------
# Fresh processes.
# --------------------------------------------------------------------------------------


def print_result(result: dict) -> None:
    """What a worker process prints last: its result, for ``run_for_result``."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def result_in(output: str) -> dict | None:
    """The last result a worker printed with ``print_result`` in ``output``, if any."""
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    return None


def run_for_result(command: list[str], timeout_s: float, extra_env=None) -> dict:
    """Runs ``command`` (a worker that calls ``print_result``) in a fresh process; returns
    its result, or ``{"error": ...}`` saying how it failed."""
    env = {**os.environ, **(extra_env or {})}
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    result = result_in(proc.stdout)
    if result is not None:
        return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit code {proc.returncode}: {' | '.join(tail)[-300:]}"}


def train_in_fresh_process(env_id: str, out: Path, timeout_s=None, extra_env=None) -> dict:
    """``scripts/train.py --env ENV_ID --out OUT --overwrite --quiet`` in a fresh process
    with the user's compiler settings, timed from outside: its ``result.json`` plus
    ``process_s``, or ``{"error": ..., "process_s": ...}``."""
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env.update(extra_env or {})
    script = str(ROOT / "scripts" / "train.py")
    command = [sys.executable, script, "--env", env_id, "--out", str(out), "--overwrite", "--quiet"]
    start = time.perf_counter()
    proc = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], "process_s": seconds}
    return {**json.loads((Path(out) / "result.json").read_text()), "process_s": seconds}
