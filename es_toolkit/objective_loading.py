"""A user's objective named by a spec: ``"path/to/file.py:function"`` or
``"package.module:function"``.

:func:`load_objective` returns a :class:`UserObjective`, a small picklable callable that
holds only where the function lives (an absolute file path or a module name) and its
name. Whichever process calls it imports the function there, once, and keeps it: worker
processes started with ``spawn`` and Dask workers unpickle the reference and import the
function themselves, so the function need not be picklable. A file is imported under a
module name made from its absolute path, the same in every process; it is not added to
``sys.path``, so a file that imports modules next to it needs them importable.

Example:

>>> from es_toolkit.objective_loading import load_objective
>>> f = load_objective("math:fsum")
>>> f([0.5, 0.25])
0.75
"""

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

FORMS = "'path/to/file.py:function' or 'package.module:function'"


@dataclasses.dataclass(frozen=True)
class UserObjective:
    """A function found by where it lives; calling this calls it.

    Attributes:
        module: an absolute path of a ``.py`` file, or an importable module's name.
        name: the function's name in that module.
    """

    module: str
    name: str

    @property
    def is_file(self) -> bool:
        return self.module.endswith(".py")

    @property
    def spec(self) -> str:
        return f"{self.module}:{self.name}"

    def load(self, shown: str | None = None) -> Callable[..., Any]:
        """The function itself, imported in this process on the first call; an error
        names the objective as ``shown`` (by default, by :attr:`spec`)."""
        return _load_function(self.module, self.name, shown or self.spec)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)


def is_spec(objective: str) -> bool:
    """Whether ``objective`` names a user's function (it has a ``:``), not a built-in."""
    return ":" in objective


def parse_spec(spec: str) -> UserObjective:
    """The :class:`UserObjective` that ``spec`` names, without importing anything; a
    relative file path is made absolute (from the current directory).

    Raises:
        ValueError: ``spec`` is not of either form.
    """
    if not isinstance(spec, str):
        raise TypeError(f"objective must be a str ({FORMS}), got {type(spec).__name__}.")
    module, colon, name = spec.rpartition(":")  # rpartition: a Windows drive has a colon
    if not colon:
        raise ValueError(f"objective must be {FORMS}: no ':' before the function in {spec!r}.")
    if not module:
        raise ValueError(f"objective {spec!r} names no file or module before the ':'.")
    if not name.isidentifier():
        raise ValueError(
            f"objective {spec!r} must end in a function name after the ':' (a Python "
            f"identifier), got {name!r}."
        )
    if module.endswith(".py"):
        return UserObjective(os.path.abspath(module), name)
    if not all(part.isidentifier() for part in module.split(".")):
        raise ValueError(
            f"objective {spec!r}: {module!r} is neither a .py file nor a dotted module name "
            f"({FORMS})."
        )
    return UserObjective(module, name)


def load_objective(spec: str) -> UserObjective:
    """The user's function that ``spec`` names, imported once here to check it.

    Args:
        spec: ``"path/to/file.py:function"`` (relative to the current directory, or
            absolute) or ``"package.module:function"`` (importable from ``sys.path``).

    Returns:
        A picklable :class:`UserObjective` (the file path made absolute).

    Raises:
        ValueError: ``spec`` has no ``:``, or nothing usable on either side of it.
        ImportError: the file does not exist, the module is not found or fails to
            import (the message holds the import's traceback), or it has no ``name``.
        TypeError: ``name`` is not callable.
    """
    objective = parse_spec(spec)
    objective.load(shown=spec)
    return objective


@functools.cache
def _load_function(module: str, name: str, spec: str) -> Callable[..., Any]:
    """The function ``name`` of ``module`` (a file path or module name), cached per
    process; a failure raises (naming ``spec``) and is not cached, so a fixed file loads
    on the next call."""
    loaded = _import_file(module, spec) if module.endswith(".py") else _import_module(module, spec)
    if not hasattr(loaded, name):
        # The module's own callables (not what it imported) are what the user meant.
        defined = sorted(
            attribute
            for attribute, value in vars(loaded).items()
            if callable(value)
            and not attribute.startswith("_")
            and getattr(value, "__module__", None) == loaded.__name__
        )
        raise ImportError(
            f"objective {spec!r}: {module} has no {name!r}; the callables it defines are: "
            f"{', '.join(defined) or 'none'}."
        )
    function = getattr(loaded, name)
    if not callable(function):
        raise TypeError(
            f"objective {spec!r}: {name!r} is a {type(function).__name__}, not a function; "
            "name a function of the parameters that returns a float."
        )
    return function


def _import_file(path: str, spec: str) -> ModuleType:
    if not Path(path).is_file():
        raise ImportError(f"objective {spec!r}: there is no file {path}.")
    module_name = file_module_name(path)
    if module_name in sys.modules:
        return sys.modules[module_name]
    import_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(import_spec)
    # Registered before it runs, as an import does, so the file's own dataclasses and
    # pickling find their module.
    sys.modules[module_name] = module
    try:
        import_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise _import_failure(spec, path, error) from error
    return module


def _import_module(module: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is not None and (module + ".").startswith(error.name + "."):
            raise ImportError(
                f"objective {spec!r}: no module named {error.name!r}; install it or put its "
                "folder on PYTHONPATH, or give the file as path/to/file.py:function."
            ) from error
        raise _import_failure(spec, module, error) from error
    except Exception as error:
        raise _import_failure(spec, module, error) from error


def _import_failure(spec: str, where: str, error: Exception) -> ImportError:
    trace = "".join(traceback.format_exception(error)).rstrip()
    return ImportError(f"objective {spec!r}: importing {where} failed:\n{trace}")


def file_module_name(path: str) -> str:
    """The module name a file is imported under: its stem and a hash of its absolute
    path, so two files with one name never meet and every process picks the same."""
    digest = hashlib.sha256(path.encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in Path(path).stem)
    return f"_es_toolkit_objective_{stem}_{digest}"
