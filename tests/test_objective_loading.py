"""User objectives named by a spec: a file or a module loads and evaluates, every bad spec
fails with a message saying what to fix, and the loaded reference pickles into a fresh
process that imports the function itself."""

import math
import pickle
import subprocess
import sys
import textwrap

import pytest

from es_toolkit.objective_loading import (
    UserObjective,
    file_module_name,
    load_objective,
    parse_spec,
)

# Not JAX-traceable (a Python branch on a value, math on floats): only a NumPy caller works.
SPHERE_SOURCE = """
import math

import numpy as np

CALLS = []


def sphere(x):
    x = np.asarray(x, dtype=np.float64)
    CALLS.append(1)
    if x[0] > 0:
        return float(np.sum(x**2))
    return math.fsum(float(v) ** 2 for v in x)


NOT_A_FUNCTION = 3
"""


def write(path, source):
    path.write_text(textwrap.dedent(source))
    return path


def test_a_file_objective_loads_and_evaluates(tmp_path, monkeypatch):
    write(tmp_path / "objective.py", SPHERE_SOURCE)
    monkeypatch.chdir(tmp_path)
    f = load_objective("objective.py:sphere")  # relative to the current directory
    assert f == UserObjective(str(tmp_path / "objective.py"), "sphere")
    assert f.is_file
    assert f([3.0, 4.0]) == 25.0
    assert f([-1.0, 2.0]) == 5.0
    module = sys.modules[file_module_name(f.module)]
    assert len(module.CALLS) == 2  # imported once: the calls share the module
    assert load_objective(f.spec).load() is f.load()


def test_a_module_objective_loads_and_evaluates(tmp_path, monkeypatch):
    write(tmp_path / "user_objectives_pkg_test.py", SPHERE_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    f = load_objective("user_objectives_pkg_test:sphere")
    assert f == UserObjective("user_objectives_pkg_test", "sphere")
    assert not f.is_file
    assert f([1.0, 2.0, 2.0]) == 9.0
    assert load_objective("math:hypot")(3.0, 4.0) == 5.0


def test_two_files_with_one_name_stay_apart(tmp_path):
    for folder, value in (("a", 1.0), ("b", 2.0)):
        (tmp_path / folder).mkdir()
        write(tmp_path / folder / "objective.py", f"def f(x):\n    return {value}\n")
    a = load_objective(f"{tmp_path / 'a' / 'objective.py'}:f")
    b = load_objective(f"{tmp_path / 'b' / 'objective.py'}:f")
    assert (a([0.0]), b([0.0])) == (1.0, 2.0)


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("sphere", ValueError, "objective must be 'path/to/file.py:function' or"),
        ("objective.py", ValueError, "no ':' before the function in 'objective.py'"),
        (":sphere", ValueError, "objective ':sphere' names no file or module before the ':'"),
        ("objective.py:", ValueError, "must end in a function name after the ':'"),
        ("objective.py:a-b", ValueError, "got 'a-b'"),
        ("my objective:f", ValueError, "'my objective' is neither a .py file nor a dotted"),
        ("missing.py:f", ImportError, "there is no file "),
        ("no_such_module_for_es_toolkit:f", ImportError, "no module named"),
        ("objective.py:nope", ImportError, "has no 'nope'; the callables it defines are: sphere."),
        ("objective.py:NOT_A_FUNCTION", TypeError, "'NOT_A_FUNCTION' is a int, not a function"),
        ("math:pi", TypeError, "'pi' is a float, not a function"),
    ],
)
def test_bad_specs_say_what_to_fix(tmp_path, monkeypatch, spec, error, message):
    write(tmp_path / "objective.py", SPHERE_SOURCE)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error) as raised:
        load_objective(spec)
    assert message in str(raised.value)
    assert "objective" in str(raised.value)


def test_a_missing_file_is_named_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImportError, match="there is no file ") as raised:
        load_objective("sub/missing.py:f")
    assert str(tmp_path / "sub" / "missing.py") in str(raised.value)


def test_a_module_that_fails_to_import_shows_its_traceback(tmp_path, monkeypatch):
    write(
        tmp_path / "broken.py",
        """
        import numpy as np

        SCALE = 1 / 0


        def f(x):
            return 0.0
        """,
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImportError) as raised:
        load_objective("broken.py:f")
    message = str(raised.value)
    assert message.startswith(f"objective 'broken.py:f': importing {tmp_path / 'broken.py'}")
    assert "SCALE = 1 / 0" in message  # the failing line, from the traceback
    assert "ZeroDivisionError: division by zero" in message
    assert file_module_name(str(tmp_path / "broken.py")) not in sys.modules
    # Fixed, the same spec loads: a failure is not cached.
    write(tmp_path / "broken.py", "def f(x):\n    return 7.0\n")
    assert load_objective("broken.py:f")([0.0]) == 7.0


def test_a_module_whose_own_import_fails_shows_the_traceback(tmp_path, monkeypatch):
    """The module is found, but it imports one that is not: a traceback, not 'no module'."""
    write(tmp_path / "needs_missing_dep_es_toolkit.py", "import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError) as raised:
        load_objective("needs_missing_dep_es_toolkit:f")
    message = str(raised.value)
    assert "importing needs_missing_dep_es_toolkit failed" in message
    assert "import no_such_dependency_xyz" in message
    assert "No module named 'no_such_dependency_xyz'" in message


def test_a_syntax_error_is_reported_with_its_line(tmp_path):
    write(tmp_path / "typo.py", "def f(x)\n    return 0.0\n")
    with pytest.raises(ImportError, match="SyntaxError") as raised:
        load_objective(f"{tmp_path / 'typo.py'}:f")
    assert "def f(x)" in str(raised.value)


def test_parse_spec_imports_nothing(tmp_path):
    assert parse_spec("/nowhere/objective.py:f") == UserObjective("/nowhere/objective.py", "f")
    assert parse_spec("pkg.sub.mod:g") == UserObjective("pkg.sub.mod", "g")
    with pytest.raises(TypeError, match="objective must be a str"):
        parse_spec(3)


def test_the_reference_pickles_into_a_fresh_process(tmp_path):
    """A spawned interpreter unpickles the reference, imports the file itself and gets the
    same value; the pickle holds the path and name, not the function."""
    write(tmp_path / "objective.py", SPHERE_SOURCE)
    f = load_objective(f"{tmp_path / 'objective.py'}:sphere")
    blob = pickle.dumps(f)
    assert pickle.loads(blob) == f
    assert b"CALLS" not in blob
    code = textwrap.dedent(
        """
        import pickle, sys
        f = pickle.loads(sys.stdin.buffer.read())
        print(repr(f([0.5, -1.5, 2.0])), repr(f([-3.0, 4.0])))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        input=blob,
        capture_output=True,
        timeout=60,
        check=True,
        cwd=tmp_path.parent,  # not the file's folder: found by its absolute path
    )
    first, second = (float(value) for value in child.stdout.split())
    assert first == f([0.5, -1.5, 2.0]) == math.fsum([0.25, 2.25, 4.0])
    assert second == 25.0
