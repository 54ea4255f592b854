"""``es-toolkit optimize`` on a user's Python function: the config's checks and defaults,
and whole runs through the command (serial, on worker processes, on a Dask cluster), with
failures, resume, and a run killed with SIGKILL and resumed."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from es_toolkit._run_config import ConfigError
from es_toolkit.cli import main
from es_toolkit.optimize_config import OptimizeConfig
from es_toolkit.optimize_start import initial_point, python_start
from es_toolkit.report import read_jsonl

ROOT = Path(__file__).resolve().parent.parent

# Plain NumPy and math, with Python branches on values: JAX cannot trace any of these, so
# a run that finishes went through the Python path.
OBJECTIVES = """
import math
import time
from pathlib import Path

import numpy as np


def sphere(x):
    if x[0] > 0:
        return float(np.sum(np.asarray(x, dtype=np.float64) ** 2))
    return math.fsum(float(v) ** 2 for v in x)


def fragile(x):
    # Fails right of 0.5, and leaves a line per failure: the count the log must report.
    if x[0] > 0.5:
        with open(Path(__file__).with_name("failures.txt"), "a") as failures:
            failures.write(f"{x[0]}\\n")
        raise ValueError(f"too far right: x[0] = {x[0]:.3f}")
    return sphere(x)


def slow_sphere(x):
    time.sleep(0.02)
    return sphere(x)


def talks(x):
    return "a string"


def batch_sphere(population):
    # --vectorized: (population, d) in, (population,) out.
    assert population.ndim == 2
    return np.sum(np.asarray(population, dtype=np.float64) ** 2, axis=1)
"""

# snes from (1, 1, 1) on the 3-d sphere: about 1e-5 within 60 generations of 8 members.
RUN = ["--dim", "3", "--x0", "1", "--strategy", "snes", "--population", "8", "--quiet"]


@pytest.fixture
def objective_file(tmp_path):
    path = tmp_path / "objective.py"
    path.write_text(textwrap.dedent(OBJECTIVES))
    return path


def optimize(objective_file, function, out, *extra):
    argv = ["optimize", "--objective", f"{objective_file}:{function}", *RUN]
    return main([*argv, "--out", str(out), *extra])


def rows_without_time(out):
    return [
        {k: v for k, v in row.items() if k != "wall_time"}
        for row in read_jsonl(Path(out) / "metrics.jsonl")
    ]


def result_without_time(out):
    result = json.loads((Path(out) / "result.json").read_text())
    del result["wall_time_s"]
    return result


# ---- the config: checks and defaults, no run ----


def test_a_spec_is_kept_with_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = OptimizeConfig(objective="sub/objective.py:f")
    assert config.objective == f"{tmp_path / 'sub' / 'objective.py'}:f"
    assert config.is_python
    assert config.objective_label == "objective.f"
    assert config.default_out() == Path("runs/optimize-objective.f-d10-open_es-seed0")
    assert OptimizeConfig(objective="pkg.mod:g").objective == "pkg.mod:g"
    assert not OptimizeConfig(objective="sphere").is_python


def test_x0_sets_the_dimension(tmp_path):
    assert OptimizeConfig(objective="m:f").dim == 10
    assert OptimizeConfig(objective="m:f", x0=0.5, dim=4).x0 == 0.5
    listed = OptimizeConfig(objective="m:f", x0=[1, 2.5, -3])
    assert (listed.x0, listed.dim) == ((1.0, 2.5, -3.0), 3)
    assert OptimizeConfig(objective="m:f", x0=(1.0, 2.0), dim=2).dim == 2
    np.save(tmp_path / "start.npy", np.array([0.5, -0.25], np.float32))
    saved = OptimizeConfig(objective="m:f", x0=str(tmp_path / "start.npy"))
    assert saved.dim == 2
    np.testing.assert_array_equal(initial_point(saved, None), [0.5, -0.25])
    # A built-in starts at x0 too.
    np.testing.assert_array_equal(
        initial_point(OptimizeConfig(objective="sphere", x0=[3.0, 4.0]), None), [3.0, 4.0]
    )


@pytest.mark.parametrize(
    ("bounds", "start", "sigma"),
    [
        (None, 0.0, 1.0),
        ((-1.0, 3.0), 1.0, 1.0),  # the middle; a quarter of the width
        ((2.0, 10.0), 6.0, 2.0),
        ((2.0, None), 2.0, 1.0),  # one side finite: the point nearest to 0, sigma 1
        ((None, -4.0), -4.0, 1.0),
        ((-5.0, None), 0.0, 1.0),
    ],
)
def test_a_python_objective_starts_in_its_box(bounds, start, sigma):
    config = OptimizeConfig(objective="m:f", dim=3, bounds=bounds)
    np.testing.assert_array_equal(python_start(config.bounds, 3), np.full(3, start))
    np.testing.assert_array_equal(initial_point(config, None), np.full(3, start, np.float32))
    assert config.initial_sigma() == sigma
    assert OptimizeConfig(objective="m:f", bounds=bounds, sigma=0.3).initial_sigma() == 0.3


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"objective": "nope"}, "objective", "objective must be a built-in (abs_sum, ackley"),
        ({"objective": "file.py:"}, "objective", "must end in a function name after the ':'"),
        ({"objective": "m:f", "x0": [1.0, 2.0], "dim": 3}, "dim", "dim is 3 but x0 has 2"),
        ({"objective": "m:f", "x0": []}, "x0", "x0 must be a float, a non-empty 1-D list"),
        ({"objective": "m:f", "x0": [[1.0]]}, "x0", "got an array of shape (1, 1)"),
        ({"objective": "m:f", "x0": [1.0, math.nan]}, "x0", "it holds NaN or infinity"),
        ({"objective": "m:f", "x0": math.inf}, "x0", "x0 must be a finite float, got inf."),
        ({"objective": "m:f", "x0": "start.txt"}, "x0", "x0 as a path must name a .npy file"),
        ({"objective": "m:f", "x0": "/nowhere/start.npy"}, "x0", "cannot read x0 from"),
        ({"objective": "m:f", "workers": 0}, "workers", "workers must be an int >= 1, got 0."),
        ({"objective": "m:f", "timeout": 0.0}, "timeout", "timeout must be a positive"),
        ({"objective": "m:f", "on_error": "skip"}, "on_error", "on_error must be one of"),
        ({"objective": "m:f", "max_retries": -1}, "max_retries", "max_retries must be an int"),
        ({"objective": "m:f", "vectorized": 1}, "vectorized", "vectorized must be True or"),
        (
            {"objective": "m:f", "dask_scheduler": "localhost"},
            "dask_scheduler",
            "dask_scheduler must be HOST:PORT or tcp://HOST:PORT",
        ),
        ({"objective": "m:f", "dask_scheduler": "h:70000"}, "dask_scheduler", "got 'h:70000'"),
        (
            {"objective": "m:f", "dask_scheduler": "h:8786", "workers": 2},
            "workers",
            "workers starts local worker processes and dask_scheduler sends",
        ),
        ({"objective": "m:f", "devices": 2}, "devices", "leave devices out"),
        ({"objective": "sphere", "workers": 2}, "workers", "the built-in 'sphere' runs jitted"),
        ({"objective": "sphere", "vectorized": True}, "vectorized", "leave vectorized out"),
        ({"objective": "sphere", "dask_scheduler": "h:1"}, "dask_scheduler", "is for a Python"),
        ({"objective": "sphere", "timeout": 1.0}, "timeout", "is for a Python function"),
        ({"objective": "sphere", "on_error": "worst"}, "on_error", "is for a Python function"),
        ({"objective": "sphere", "max_retries": 0}, "max_retries", "is for a Python function"),
    ],
)
def test_bad_settings_name_their_field(tmp_path, monkeypatch, options, field, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "start.txt").write_text("1.0")
    with pytest.raises(ConfigError) as error:
        OptimizeConfig(**options)
    assert message in str(error.value)
    assert error.value.field == field


def test_dask_scheduler_takes_both_forms():
    for address in ("127.0.0.1:8786", "tcp://scheduler.example:8786"):
        assert OptimizeConfig(objective="m:f", dask_scheduler=address).dask_scheduler == address


# ---- the command ----


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """60 generations of the sphere in this process: the run the others must equal."""
    folder = tmp_path_factory.mktemp("serial")
    objective_file = folder / "objective.py"
    objective_file.write_text(textwrap.dedent(OBJECTIVES))
    assert optimize(objective_file, "sphere", folder / "run", "--generations", "60") == 0
    return objective_file, folder / "run"


def test_a_serial_run_minimizes_the_python_function(serial_run):
    objective_file, out = serial_run
    result = result_without_time(out)
    assert result["optimal_value"] is None
    assert result["config"]["objective"] == f"{objective_file}:sphere"
    assert result["generations"] == 60
    assert result["num_evaluations"] == 60 * 9  # 8 members and the mean
    assert result["best_value"] < 1e-3
    assert result["failures"] == 0
    rows = rows_without_time(out)
    assert [row["generation"] for row in rows] == list(range(60))
    assert [row["num_evaluations"] for row in rows] == [9 * (g + 1) for g in range(60)]
    assert min(row["best_value"] for row in rows) == result["best_value"]
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_the_command_reports_the_best_value(objective_file, tmp_path, capsys):
    assert optimize(objective_file, "sphere", tmp_path / "run", "--generations", "2") == 0
    out = capsys.readouterr().out
    assert "objective.sphere d=3 snes: best value " in out
    assert "(optimum" not in out  # unknown for a Python function
    assert " after 2 generations (18 evaluations, restarts: 0, stop: num_generations)" in out


def test_workers_give_the_serial_run(serial_run, tmp_path):
    """The members are a function of the key and the state alone, and every worker runs
    the same NumPy code: the same log, value for value."""
    objective_file, serial = serial_run
    workers = ["--generations", "60", "--workers", "2"]
    assert optimize(objective_file, "sphere", tmp_path / "workers", *workers) == 0
    assert rows_without_time(tmp_path / "workers") == rows_without_time(serial)
    result = result_without_time(tmp_path / "workers")
    assert result.pop("config")["workers"] == 2
    expected = result_without_time(serial)
    expected.pop("config")
    assert result == expected


def test_a_dask_cluster_gives_the_serial_run(serial_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    objective_file, serial = serial_run
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        dask = ["--generations", "60", "--dask-scheduler", cluster.scheduler_address]
        assert optimize(objective_file, "sphere", tmp_path / "dask", *dask) == 0
    assert rows_without_time(tmp_path / "dask") == rows_without_time(serial)
    result = result_without_time(tmp_path / "dask")
    assert result.pop("config")["dask_scheduler"] == cluster.scheduler_address
    expected = result_without_time(serial)
    expected.pop("config")
    assert result == expected


def test_a_vectorized_function_gets_the_whole_population(serial_run, tmp_path):
    objective_file, serial = serial_run
    argv = ["--generations", "60", "--vectorized"]
    assert optimize(objective_file, "batch_sphere", tmp_path / "batch", *argv) == 0
    rows, expected = rows_without_time(tmp_path / "batch"), rows_without_time(serial)
    assert [row["generation"] for row in rows] == list(range(60))
    for row, other in zip(rows, expected, strict=True):  # one sum, or math.fsum: rounding
        assert row["best_value"] == pytest.approx(other["best_value"], rel=1e-6, abs=1e-12)
    assert result_without_time(tmp_path / "batch")["config"]["vectorized"] is True


def test_a_module_function_runs_on_workers(serial_run, tmp_path, monkeypatch):
    """MODULE:FUNCTION, importable from sys.path, which spawned workers inherit: its first
    5 generations are those of the serial run of the same function from its file."""
    objective_file, serial = serial_run
    (tmp_path / "user_sphere_module.py").write_text(objective_file.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    argv = ["optimize", "--objective", "user_sphere_module:sphere", *RUN, "--generations", "5"]
    argv += ["--workers", "2", "--timeout", "30", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    assert rows_without_time(tmp_path / "run") == rows_without_time(serial)[:5]
    config = result_without_time(tmp_path / "run")["config"]
    assert (config["objective"], config["timeout"]) == ("user_sphere_module:sphere", 30.0)


def test_without_dask_the_error_names_the_extra(objective_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now fails
    with pytest.raises(SystemExit) as exit_info:
        optimize(objective_file, "sphere", tmp_path / "run", "--dask-scheduler", "127.0.0.1:1")
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith("es-toolkit optimize: error: dask_scheduler needs Dask's")
    assert 'pip install "es_toolkit[dask]"' in last_line
    assert not (tmp_path / "run").exists()


def test_worst_scores_failures_and_the_log_counts_them(objective_file, tmp_path):
    """fragile raises right of x[0] = 0.5 and starts at 1: with --on-error worst the run
    goes on, the log's failures sum to the raises the function recorded itself, and the
    best point lies where it does not fail."""
    out = tmp_path / "worst"
    worst = ["--generations", "30", "--on-error", "worst"]
    assert optimize(objective_file, "fragile", out, *worst) == 0
    raised = len((tmp_path / "failures.txt").read_text().splitlines())
    rows = read_jsonl(out / "metrics.jsonl")
    assert raised > 0
    assert sum(row["failures"] for row in rows) == raised
    result = json.loads((out / "result.json").read_text())
    assert result["failures"] == raised
    assert result["generations"] == 30
    assert math.isfinite(result["best_value"])
    assert result["best_value"] < 3.0  # better than the start, from members that did not fail


def test_raise_stops_with_the_member_and_the_error(objective_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        optimize(objective_file, "fragile", tmp_path / "raise", "--generations", "30")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("es-toolkit optimize: error: the objective raised on member ")
    assert "(x: array([" in first
    assert "ValueError: too far right: x[0] = " in err
    assert 'objective.py", line ' in err  # the objective's own traceback
    saved = np.load(tmp_path / "raise" / "failed_member.npy")
    assert saved.shape == (3,)
    assert saved[0] > 0.5  # where fragile raises
    assert f"Its x is saved to {tmp_path / 'raise' / 'failed_member.npy'}" in err
    assert "--resume --out" in err


def test_a_non_number_is_a_clear_error(objective_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        optimize(objective_file, "talks", tmp_path / "talks", "--generations", "3")
    assert exit_info.value.code == 2
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("es-toolkit optimize: error: the objective returned a non-number")
    assert "str: 'a string'" in first


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--objective", "missing.py:f"], "missing.py:f': there is no file "),
        (
            ["--objective", "objective.py:nope"],
            "has no 'nope'; the callables it defines are: batch_sphere, fragile",
        ),
        (["--objective", "no_such_module_xyz:f"], "no module named 'no_such_module_xyz'"),
        (["--objective", "nope"], "invalid choice: 'nope' (a built-in: abs_sum"),
        (["--objective", "sphere", "--workers", "2"], "--workers is for a Python function"),
        (["--objective", "m:f", "--workers", "2", "--dask-scheduler", "h:1"], "give one"),
        (["--objective", "m:f", "--x0", "1,2", "--dim", "3"], "--dim is 3 but --x0 has 2"),
        (["--objective", "m:f", "--x0", "a,b"], "argument --x0: expected a number, a comma"),
        (["--objective", "m:f", "--on-error", "skip"], "invalid choice: 'skip'"),
    ],
)
def test_bad_objectives_and_flags_are_named(objective_file, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(objective_file.parent)
    out = objective_file.parent / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", *argv, "--out", str(out), "--quiet"])
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith("es-toolkit optimize: error:")
    assert message in last_line
    assert not out.exists()


def test_resume_continues_the_run(objective_file, tmp_path):
    """5 generations, then --resume --generations 10: the log and result of 10 in one go."""
    assert optimize(objective_file, "sphere", tmp_path / "straight", "--generations", "10") == 0
    assert optimize(objective_file, "sphere", tmp_path / "split", "--generations", "5") == 0
    assert len(read_jsonl(tmp_path / "split" / "metrics.jsonl")) == 5
    resume = ["optimize", "--resume", "--out", str(tmp_path / "split"), "--generations", "10"]
    assert main([*resume, "--quiet", "--workers", "2"]) == 0  # where it runs may change
    assert rows_without_time(tmp_path / "split") == rows_without_time(tmp_path / "straight")
    resumed = result_without_time(tmp_path / "split")
    straight = result_without_time(tmp_path / "straight")
    assert resumed.pop("config")["workers"] == 2
    straight.pop("config")
    assert resumed == straight


def test_a_killed_run_resumes_where_its_checkpoint_is(objective_file, tmp_path):
    """A run of a slow objective (20 ms an evaluation) killed with SIGKILL mid-generation,
    then resumed: every generation is logged once, the evaluations grow by 9 a generation,
    and the log and result are those of a run never killed (of the same function without
    the sleep, so quicker)."""
    generations = ["--generations", "16"]
    assert optimize(objective_file, "sphere", tmp_path / "straight", *generations) == 0
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "es_toolkit.cli", "optimize"]
    command += ["--objective", f"{objective_file}:slow_sphere", *RUN, *generations]
    child = subprocess.Popen(
        [*command, "--out", str(out)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        log = out / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not (log.exists() and len(log.read_text().splitlines()) >= 4):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the run logged no generations in 120 s"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    done = len(read_jsonl(log))
    assert 4 <= done < 16  # killed mid-run
    assert main(["optimize", "--resume", "--out", str(out), "--quiet"]) == 0
    rows = read_jsonl(log)
    assert [row["generation"] for row in rows] == list(range(16))
    assert [row["num_evaluations"] for row in rows] == [9 * (g + 1) for g in range(16)]
    assert rows_without_time(out) == rows_without_time(tmp_path / "straight")
    resumed, straight = result_without_time(out), result_without_time(tmp_path / "straight")
    assert resumed.pop("config")["objective"] == f"{objective_file}:slow_sphere"
    straight.pop("config")
    assert resumed == straight
