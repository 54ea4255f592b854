"""Packaging contracts: envs/ installs as es_toolkit.envs only (never as a bare top-level
``envs``, a name another PyPI package owns), and importing the library starts no JAX
backend."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_envs_is_installed_under_es_toolkit(tmp_path):
    """From outside the checkout, es_toolkit.envs imports and no top-level envs is ours."""
    code = (
        "import importlib.util, pathlib, es_toolkit.envs\n"
        "print(pathlib.Path(es_toolkit.envs.__file__).resolve().parent)\n"
        "spec = importlib.util.find_spec('envs')\n"
        "print(spec.origin if spec else None)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    assert Path(out[0]) == ROOT / "envs"
    assert out[1] == "None" or not out[1].startswith(str(ROOT))


def test_unknown_env_id_lists_available():
    from es_toolkit.envs import make

    with pytest.raises(ValueError, match="env_id 'NoSuchEnv-v0' is not a JAX-native environment"):
        make("NoSuchEnv-v0")


def test_import_starts_no_backend():
    """After importing es_toolkit, the CPU device count can still be chosen."""
    code = (
        "import es_toolkit, es_toolkit.envs, jax\n"
        "jax.config.update('jax_num_cpu_devices', 3)\n"
        "assert jax.device_count() == 3, jax.devices()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_every_subpackage_is_listed_for_installation():
    """pyproject lists packages explicitly (for the envs mapping): a new subpackage must be
    added there, or a regular (non-editable) install would leave it out."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "es_toolkit").rglob("__init__.py")
    }
    assert found | {"es_toolkit.envs"} == listed
