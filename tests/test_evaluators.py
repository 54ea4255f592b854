"""Evaluators of plain Python objectives: serial, our own worker processes, a
ProcessPoolExecutor and a Dask cluster give the values of a direct loop, in member order,
and turn errors, non-numbers, timeouts and dying workers into ``Failure`` values or
``WorkerLostError``."""

import concurrent.futures as cf
import functools
import gc
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import types

import _evaluator_objectives as objectives
import numpy as np
import pytest

from es_toolkit.evaluators import (
    EvaluationError,
    Failure,
    WorkerLostError,
    make_evaluator,
)
from es_toolkit.evaluators.evaluator import batch_bounds
from es_toolkit.evaluators.futures import TIMEOUT_GRACE_S

KINDS = ("serial", "workers", "process_pool", "dask_executor")


@pytest.fixture(scope="module")
def pool():
    """Two worker processes of our own, shared by the module's tests."""
    with make_evaluator(workers=2, max_retries=1) as evaluator:
        yield evaluator


@pytest.fixture(scope="module")
def process_pool():
    with cf.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as executor:
        yield executor


@pytest.fixture(scope="module")
def dask_executor():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    try:
        yield client.get_executor()
    finally:
        client.close()
        cluster.close()


@pytest.fixture(params=KINDS)
def evaluator(request):
    """Each kind of evaluator in turn."""
    if request.param == "serial":
        return make_evaluator()
    if request.param == "workers":
        return request.getfixturevalue("pool")
    return make_evaluator(executor=request.getfixturevalue(request.param), max_retries=1)


def population(size=7, dim=3, seed=0):
    return list(np.random.default_rng(seed).normal(size=(size, dim)))


def assert_pid_gone(pid):
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_values_are_a_direct_loop_s_in_member_order(evaluator):
    members = population()
    expected = [objectives.wavy(member) for member in members]
    assert evaluator.evaluate(objectives.wavy, members) == expected
    assert evaluator.evaluate(objectives.wavy, []) == []


def test_pytree_members(evaluator):
    rng = np.random.default_rng(1)
    members = [{"w": rng.normal(size=(2, 3)), "b": rng.normal(size=2)} for _ in range(5)]
    expected = [objectives.wavy(member) for member in members]
    assert evaluator.evaluate(objectives.wavy, members) == expected


def test_vectorized_batches_give_the_per_member_values(evaluator):
    rng = np.random.default_rng(2)
    members = [{"w": rng.normal(size=(2, 3)), "b": rng.normal(size=2)} for _ in range(5)]
    values = evaluator.evaluate(objectives.wavy_batch, members, vectorized=True)
    np.testing.assert_allclose(values, [objectives.wavy(member) for member in members])
    assert all(type(value) is float for value in values)


def test_parallelism_of_each_kind(evaluator, request):
    expected = 1 if request.node.callspec.params["evaluator"] == "serial" else 2
    assert evaluator.parallelism == expected


def test_vectorized_batches_are_parallelism_contiguous_parts(pool):
    members = population(size=5)
    assert pool.evaluate(objectives.batch_size, members, vectorized=True) == [3, 3, 3, 2, 2]
    assert make_evaluator().evaluate(objectives.batch_size, members, vectorized=True) == [5] * 5
    assert batch_bounds(7, 3) == [0, 3, 5, 7]
    assert batch_bounds(2, 2) == [0, 1, 2]


def test_an_objective_s_error_is_a_failure_with_its_traceback(evaluator):
    members = population()
    members[2][0] = -1.5
    members[5][0] = -0.25
    results = evaluator.evaluate(objectives.fails_below_zero, members)
    for index, (member, result) in enumerate(zip(members, results, strict=True)):
        if member[0] >= 0:
            assert result == objectives.fails_below_zero(member)
            continue
        assert isinstance(result, Failure)
        assert (result.index, result.kind) == (index, "error")
        assert result.message.startswith("Traceback (most recent call last):")
        assert f"ValueError: negative first coordinate {member[0]:.3f}" in result.message
        # Both the objective's frame and the helper's that raised.
        assert "in fails_below_zero" in result.message
        assert "in _check_sign" in result.message


@pytest.mark.parametrize(
    "value",
    ["1.0", None, np.ones(3), np.ones((1,)), True, 1 + 2j, [1.0]],
    ids=["str", "None", "vector", "1-vector", "bool", "complex", "list"],
)
def test_a_non_number_is_a_value_failure(pool, value):
    results = pool.evaluate(functools.partial(objectives.returns, value), population(size=3))
    for index, result in enumerate(results):
        assert (result.index, result.kind) == (index, "value")
        assert type(value).__name__ in result.message
        assert result.message.startswith("it returned")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (math.nan, math.nan),
        (-math.inf, -math.inf),
        (np.float32(0.5), 0.5),
        (np.array(2.0), 2.0),
        (3, 3.0),
        (np.int64(-4), -4.0),
    ],
)
def test_numbers_of_any_kind_become_floats(value, expected):
    result = make_evaluator().evaluate(functools.partial(objectives.returns, value), [1.0])
    assert type(result[0]) is float
    np.testing.assert_equal(result[0], expected)


def test_a_vectorized_batch_of_the_wrong_length_fails_each_member(pool):
    results = pool.evaluate(objectives.batch_of_wrong_length, population(size=5), vectorized=True)
    assert [(result.index, result.kind) for result in results] == [(i, "value") for i in range(5)]
    assert "must return 3 numbers" in results[0].message
    assert "must return 2 numbers" in results[4].message


def test_serial_timeout_interrupts_the_objective_and_restores_sigalrm():
    handler = signal.getsignal(signal.SIGALRM)
    members = population(size=2)
    start = time.monotonic()
    results = make_evaluator(timeout=0.2).evaluate(
        functools.partial(objectives.sleeps, 30.0), members
    )
    assert time.monotonic() - start < 5.0
    assert [(result.index, result.kind) for result in results] == [(0, "timeout"), (1, "timeout")]
    assert "0.2 s" in results[0].message
    assert signal.getsignal(signal.SIGALRM) is handler
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    # A quick objective is left alone.
    assert make_evaluator(timeout=5.0).evaluate(objectives.wavy, members) == [
        objectives.wavy(member) for member in members
    ]


def test_serial_timeout_outside_the_main_thread_says_it_needs_it():
    errors = []

    def evaluate():
        try:
            make_evaluator(timeout=1.0).evaluate(objectives.wavy, population(size=1))
        except RuntimeError as error:
            errors.append(error)

    thread = threading.Thread(target=evaluate)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert "main thread" in str(errors[0])


def test_own_pool_kills_a_worker_past_the_timeout_and_keeps_working(pool, monkeypatch, tmp_path):
    monkeypatch.setattr(pool, "timeout", 0.5)
    pid_file = tmp_path / "pid"
    slow = functools.partial(objectives.writes_pid_then_sleeps, str(pid_file), 60.0)
    start = time.monotonic()
    results = pool.evaluate(slow, population(size=1))
    assert time.monotonic() - start < 10.0
    assert [(result.index, result.kind) for result in results] == [(0, "timeout")]
    assert_pid_gone(int(pid_file.read_text()))
    members = population()
    assert pool.evaluate(objectives.wavy, members) == [objectives.wavy(m) for m in members]


def test_a_process_pool_executor_s_worker_interrupts_itself_at_the_timeout(process_pool):
    evaluator = make_evaluator(executor=process_pool, timeout=0.5)
    members = population()
    # Started workers: the clock below measures the timer, not their start-up.
    assert evaluator.evaluate(objectives.wavy, members) == [objectives.wavy(m) for m in members]
    start = time.monotonic()
    results = evaluator.evaluate(functools.partial(objectives.sleeps, 60.0), population(size=2))
    # The worker's own timer fired, long before the main side's grace period ran out.
    assert time.monotonic() - start < 0.5 + min(5.0, TIMEOUT_GRACE_S / 2)
    assert [(result.index, result.kind) for result in results] == [(0, "timeout"), (1, "timeout")]
    assert evaluator.evaluate(objectives.wavy, members) == [objectives.wavy(m) for m in members]


def test_dask_stops_waiting_at_the_timeout(dask_executor):
    evaluator = make_evaluator(executor=dask_executor, timeout=0.3)
    results = evaluator.evaluate(functools.partial(objectives.sleeps, 1.0), population(size=1))
    assert [(result.index, result.kind) for result in results] == [(0, "timeout")]


def test_own_pool_restarts_a_killed_worker_and_reruns_its_member(pool, tmp_path):
    before = set(pool.pids)
    members = population()
    killed = functools.partial(objectives.killed_once, str(tmp_path / "killed"))
    assert pool.evaluate(killed, members) == [objectives.wavy(member) for member in members]
    assert (tmp_path / "killed").exists()
    after = set(pool.pids)
    assert len(before - after) == 1
    assert_pid_gone((before - after).pop())


def test_dask_reruns_the_member_of_a_killed_worker(dask_executor, tmp_path):
    members = population(size=4)
    killed = functools.partial(objectives.killed_once, str(tmp_path / "killed"))
    values = make_evaluator(executor=dask_executor).evaluate(killed, members)
    assert values == [objectives.wavy(member) for member in members]
    assert (tmp_path / "killed").exists()


def test_a_broken_process_pool_executor_says_to_use_workers(tmp_path):
    killed = functools.partial(objectives.killed_once, str(tmp_path / "killed"))
    context = multiprocessing.get_context("spawn")
    broke = pytest.raises(WorkerLostError, match=r"member 0: the executor broke")
    with cf.ProcessPoolExecutor(1, mp_context=context) as executor, broke as caught:
        make_evaluator(executor=executor).evaluate(killed, population(size=1))
    assert "workers=N" in str(caught.value)
    assert caught.value.index == 0


def test_an_objective_that_always_kills_its_worker_is_lost_after_max_retries(pool):
    members = population(size=3)
    members[0][0] = -1.0
    members[1][0] = 1.0
    members[2][0] = -1.0
    with pytest.raises(
        WorkerLostError, match=r"member 1: its worker process died 2 times"
    ) as caught:
        pool.evaluate(objectives.always_killed, members)
    assert "max_retries=1" in str(caught.value)
    assert "SIGKILL" in str(caught.value)
    assert caught.value.index == 1
    # The pool is whole again.
    assert pool.evaluate(objectives.wavy, members) == [objectives.wavy(m) for m in members]


def test_own_pool_unpickles_the_objective_once_per_worker(pool):
    objective = objectives.CountsLoads(np.zeros(1000))
    members = population(size=6)
    assert pool.evaluate(objective, members) == [1.0] * 6
    assert pool.evaluate(objective, members) == [1.0] * 6
    # A different objective (other bytes) is loaded again.
    assert pool.evaluate(objectives.CountsLoads(np.ones(1000)), members) == [2.0] * 6


def test_an_unpicklable_objective_says_to_define_it_at_module_level(pool, process_pool):
    def local(x):
        return 0.0

    for evaluator in (pool, make_evaluator(executor=process_pool)):
        for objective in (lambda x: 0.0, local):
            with pytest.raises(TypeError, match="module level"):
                evaluator.evaluate(objective, population(size=1))
    members = population(size=3)
    assert make_evaluator(executor=process_pool).evaluate(objectives.wavy, members) == [
        objectives.wavy(member) for member in members
    ]


def test_an_objective_the_workers_cannot_import_says_so(pool, monkeypatch):
    module = types.ModuleType("module_only_in_the_parent")
    exec("def objective(x):\n    return 0.0\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with pytest.raises(TypeError, match="could not load the objective") as caught:
        pool.evaluate(module.objective, population(size=1))
    assert "module_only_in_the_parent" in str(caught.value)
    members = population(size=3)
    assert pool.evaluate(objectives.wavy, members) == [objectives.wavy(m) for m in members]


def test_ctrl_c_while_waiting_stops_every_worker():
    evaluator = make_evaluator(workers=1)
    pids = evaluator.pids
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluator.evaluate(functools.partial(objectives.sleeps, 60.0), population(size=1))
    finally:
        timer.cancel()
    for pid in pids:
        assert_pid_gone(pid)
    with pytest.raises(RuntimeError, match="closed"):
        evaluator.evaluate(objectives.wavy, population(size=1))


def test_a_forgotten_pool_stops_its_workers_when_collected():
    evaluator = make_evaluator(workers=1)
    pids = evaluator.pids
    del evaluator
    gc.collect()
    for pid in pids:
        assert_pid_gone(pid)


def test_a_forgotten_pool_stops_its_workers_when_python_exits():
    # A finalizer made before multiprocessing starts registers weakref's exit hook first,
    # so it runs after multiprocessing's, which waits for every child: the pool must
    # stop its workers before that.
    script = (
        "import weakref\n"
        "weakref.finalize(weakref.finalize, print)\n"
        "from es_toolkit.evaluators import make_evaluator\n"
        "import _evaluator_objectives as objectives\n"
        "if __name__ == '__main__':\n"
        "    evaluator = make_evaluator(workers=1)\n"
        "    print(evaluator.evaluate(objectives.own_pid, [0.0])[0], flush=True)\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    finished = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env=environment,
        check=True,
    )
    assert_pid_gone(int(float(finished.stdout)))


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path):
    # Spawned workers import the script again, which starts workers again: they fail.
    script = tmp_path / "script.py"
    script.write_text(
        "from es_toolkit.evaluators import make_evaluator\n"
        "import _evaluator_objectives as objectives\n"
        "make_evaluator(workers=1).evaluate(objectives.own_pid, [0.0])\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    finished = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=environment
    )
    assert finished.returncode != 0
    assert "while starting" in finished.stderr
    assert "if __name__ == '__main__':" in finished.stderr


def test_evaluation_error_names_the_member_its_x_and_the_traceback():
    members = [np.array([-2.0, 1.0])]
    (failure,) = make_evaluator().evaluate(objectives.fails_below_zero, members)
    error = EvaluationError.from_failure(failure, members[0])
    assert error.failure == failure
    assert error.x is members[0]
    text = str(error)
    assert "member 0 (x: array([-2., 1.]))" in text
    assert "ValueError: negative first coordinate -2.000" in text
    assert "in _check_sign" in text
    timeout = EvaluationError.from_failure(Failure(3, "timeout", "took long"), np.arange(100.0))
    assert "member 3 (x: array([ 0., 1., 2., ..., 97., 98., 99.], shape=(100,)))" in str(timeout)


@pytest.mark.parametrize(
    ("arguments", "error", "named"),
    [
        ({"workers": 0}, ValueError, "workers"),
        ({"workers": 1.5}, TypeError, "workers"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": "1"}, TypeError, "timeout"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"executor": object()}, TypeError, "executor"),
        ({"executor": object(), "workers": 2}, ValueError, "executor or workers"),
    ],
)
def test_bad_arguments_are_named(arguments, error, named):
    with pytest.raises(error, match=named):
        make_evaluator(**arguments)


def test_a_dask_client_in_place_of_its_executor_gets_a_hint(dask_executor):
    with pytest.raises(TypeError, match=r"client\.get_executor\(\)"):
        make_evaluator(executor=dask_executor._client)


def test_bad_members_and_functions_are_named():
    evaluator = make_evaluator()
    with pytest.raises(TypeError, match="members"):
        evaluator.evaluate(objectives.wavy, np.zeros((2, 3)))
    with pytest.raises(TypeError, match="fn"):
        evaluator.evaluate("wavy", [np.zeros(3)])
    with pytest.raises(TypeError, match="vectorized"):
        evaluator.evaluate(objectives.wavy, [np.zeros(3)], vectorized=1)
