"""Sharding the population over devices and processes: same numbers on any device count.

Oracle: the unsharded computation. Sharded runs differ from it only by the order in which
partial sums are added (psum over devices), i.e. float rounding: the tolerances below are
relative 1e-5 on float32.
"""

import dataclasses
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from trees import assert_trees_close

from es_toolkit import (
    Normal,
    _hlo,
    make_perturbed_fun,
    make_perturbed_value_and_grad,
    minimize,
    parallel,
)
from es_toolkit.objectives import get as get_objective
from es_toolkit.strategies import ars, open_es, pgpe, snes
from es_toolkit.strategies.cma_es import cma_es
from es_toolkit.strategies.lm_ma_es import lm_ma_es
from es_toolkit.strategies.sep_cma_es import sep_cma_es
from es_toolkit.training import TrainConfig, load_run, train

ROOT = Path(__file__).resolve().parent.parent
DEVICE_COUNTS = (1, 2, 4, 8)


def assert_close(actual, expected):
    assert_trees_close(actual, expected, 1e-5, scaled=True)


def test_make_mesh_forms_and_errors():
    assert parallel.make_mesh(2).devices.shape == (2,)
    assert parallel.make_mesh().size == jax.device_count()
    mesh = parallel.make_mesh(jax.devices()[:3])
    assert parallel.make_mesh(mesh) is mesh
    assert mesh.axis_names == ("pop",)
    with pytest.raises(ValueError, match="devices=99 but only 8 are available"):
        parallel.make_mesh(99)
    with pytest.raises(ValueError, match="axis name 'pop'"):
        parallel.make_mesh(Mesh(np.array(jax.devices()[:2]), ("batch",)))
    with pytest.raises(ValueError, match="devices must be an int >= 1, got 0"):
        parallel.make_mesh(0)


@pytest.mark.parametrize("chunk_size", [None, 10])
def test_perturbed_fun_and_its_derivatives_do_not_depend_on_devices(chunk_size):
    def f(x):
        return jnp.sum(jnp.abs(x) ** 1.5)

    def g(x):
        return jnp.stack([jnp.sum(jnp.abs(x)), jnp.max(x)])

    x, key = jnp.linspace(-1.0, 1.0, 6), jax.random.key(0)
    options = {"antithetic": True, "chunk_size": chunk_size}
    fn = make_perturbed_fun(f, 160, 0.1, Normal(), **options)
    vector = make_perturbed_fun(g, 160, 0.1, Normal(), **options)
    value_and_grad = make_perturbed_value_and_grad(f, 160, 0.1, Normal(), **options)
    expected = (fn(key, x), jax.hessian(fn, argnums=1)(key, x), value_and_grad(key, x))
    expected_jacobian = jax.jacrev(vector, argnums=1)(key, x)
    for n in DEVICE_COUNTS:
        sharded = parallel.shard(fn, n)
        got = (
            jax.jit(sharded)(key, x),
            jax.jit(jax.hessian(sharded, argnums=1))(key, x),
            jax.jit(parallel.shard(value_and_grad, n))(key, x),
        )
        assert_close(got, expected)
        jacobian = jax.jit(jax.jacrev(parallel.shard(vector, n), argnums=1))(key, x)
        assert_close(jacobian, expected_jacobian)


def test_perturbed_fun_with_the_mesh_option_matches():
    def f(x):
        return jnp.sum(jnp.floor(x * 3))

    x, key = jnp.linspace(-1.0, 1.0, 5), jax.random.key(1)
    plain = make_perturbed_fun(f, 64, 0.3, Normal(), antithetic=True)
    sharded = make_perturbed_fun(f, 64, 0.3, Normal(), antithetic=True, mesh=4)
    assert_close(jax.jit(jax.grad(sharded, argnums=1))(key, x), jax.grad(plain, argnums=1)(key, x))
    fast = make_perturbed_value_and_grad(f, 64, 0.3, Normal(), antithetic=True)
    fast_sharded = make_perturbed_value_and_grad(f, 64, 0.3, Normal(), antithetic=True, mesh=2)
    assert_close(jax.jit(fast_sharded)(key, x), fast(key, x))


STRATEGIES = {
    "open_es": lambda: open_es(32, sigma=0.3),
    "pgpe": lambda: pgpe(32, sigma=0.3),
    "snes": lambda: snes(32, sigma=0.3),
    "ars": lambda: ars(32, sigma=0.3, top_directions=8),
}


@pytest.mark.parametrize("name", list(STRATEGIES))
@pytest.mark.parametrize("chunk_size", [None, 8])
def test_minimize_does_not_depend_on_devices(name, chunk_size):
    strategy = STRATEGIES[name]()
    f = get_objective("rastrigin").fn
    x0 = jnp.linspace(-2.0, 2.0, 12)
    options = {"strategy": strategy, "num_generations": 12, "progress": False}
    expected = minimize(f, x0, chunk_size=chunk_size, **options)
    for n in (2, 8):
        got = minimize(f, x0, chunk_size=chunk_size, mesh=n, **options)
        assert_close(got.state.mean, expected.state.mean)
        assert got.best_value == pytest.approx(expected.best_value, rel=1e-5)


def test_only_fitness_and_d_sized_sums_cross_devices():
    """The compiled sharded program has no collective on a population-by-parameters array:
    its all-gathers carry the fitness (population,) and its all-reduces d-sized sums."""
    population, d = 64, 300
    strategy = pgpe(population, sigma=0.1)
    state = strategy.init(jnp.zeros(d))
    from es_toolkit.strategies import base

    def generation(key, state):
        return base.evaluate_and_tell(strategy, key, state, lambda x: -jnp.sum(x**2))[:2]

    compiled = jax.jit(parallel.shard(generation, 4)).lower(jax.random.key(0), state).compile()
    found = _hlo.collectives(compiled)
    ops = {c.op for c in found}
    assert {"all-gather", "all-reduce"} <= ops, found
    for collective in found:
        for shape in collective.shapes:
            assert int(np.prod(shape)) <= max(population, d), collective
    gathered = [s for c in found if c.op == "all-gather" for s in c.shapes]
    assert [int(np.prod(shape)) for shape in gathered] == [population]


@pytest.mark.parametrize(
    ("factory", "largest"),
    [(cma_es, lambda d: d * d), (sep_cma_es, lambda d: d), (lm_ma_es, lambda d: d)],
)
def test_cma_family_sends_only_fitness_and_sums(factory, largest):
    """CMA-ES sends its rank-mu sum (d x d) and z-sums across devices, sep-CMA-ES and
    LM-MA-ES only d-sized sums; the population itself (population x d) never crosses."""
    population, d = 32, 40
    strategy = factory(population, sigma=0.5, chunk_size=8)
    state = strategy.init(jnp.zeros(d))
    from es_toolkit.strategies import base

    def generation(key, state):
        return base.evaluate_and_tell(strategy, key, state, lambda x: -jnp.sum(x**2), 8)[:2]

    compiled = jax.jit(parallel.shard(generation, 4)).lower(jax.random.key(0), state).compile()
    found = _hlo.collectives(compiled)
    for collective in found:
        for shape in collective.shapes:
            assert int(np.prod(shape)) <= max(population, largest(d)), collective
    gathered = [s for c in found if c.op == "all-gather" for s in c.shapes]
    assert [int(np.prod(shape)) for shape in gathered] == [population]


def test_populations_that_do_not_split_get_clear_errors():
    f = get_objective("sphere").fn
    with pytest.raises(ValueError, match=r"6 antithetic pairs do not split evenly over 4 devices"):
        minimize(f, jnp.ones(3), strategy=open_es(12), num_generations=2, progress=False, mesh=4)
    sharded = jax.jit(parallel.shard(make_perturbed_fun(f, 10, 0.1, Normal()), 4))
    with pytest.raises(ValueError, match=r"10 samples do not split evenly over 4 devices"):
        sharded(jax.random.key(0), jnp.ones(3))


def test_training_does_not_depend_on_devices(tmp_path):
    config = TrainConfig(
        population_size=16,
        num_generations=4,
        eval_every=2,
        eval_episodes=2,
        final_eval_episodes=3,
        sigma=0.1,
        learning_rate=0.05,
    )
    expected = train(config, tmp_path / "one", progress=False)
    for n in (2, 8):
        got = train(dataclasses.replace(config, devices=n), tmp_path / str(n), progress=False)
        assert_close(got.state.strategy_state.mean, expected.state.strategy_state.mean)
        assert_close(got.state.obs_stats, expected.state.obs_stats)
        assert got.final_return_mean == expected.final_return_mean


def test_initialize_distributed_needs_all_three_settings(monkeypatch):
    for name in (parallel.ENV_COORDINATOR, parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert parallel.initialize_distributed() is False
    with pytest.raises(ValueError, match="needs coordinator_address, num_processes and process_id"):
        parallel.initialize_distributed("127.0.0.1:1234")
    with pytest.raises(ValueError, match="process_id must be < num_processes=2"):
        parallel.initialize_distributed("127.0.0.1:1234", 2, 2)
    with pytest.raises(ValueError, match="host:port"):
        parallel.initialize_distributed("localhost", 2, 0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MULTIPROCESS_RUN = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    jax.config.update("jax_platforms", "cpu")
    from es_toolkit import parallel
    parallel.initialize_distributed(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    import jax.numpy as jnp
    from es_toolkit import minimize
    from es_toolkit.strategies import pgpe
    result = minimize(lambda x: jnp.sum(jnp.abs(x - 1.0)), jnp.zeros(10),
                      strategy=pgpe(16, sigma=0.5), num_generations=15,
                      progress=False, mesh=jax.device_count())
    print("best", repr(result.best_value))
    """
)


def run_processes(
    script: str, count: int, timeout: float = 120
) -> list[subprocess.CompletedProcess]:
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, address, str(count), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for i in range(count)
    ]
    done = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def test_two_processes_give_the_single_process_result():
    runs = run_processes(MULTIPROCESS_RUN, 2)
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    values = [line for run in runs for line in run.stdout.splitlines() if line.startswith("best")]
    expected = minimize(
        lambda x: jnp.sum(jnp.abs(x - 1.0)),
        jnp.zeros(10),
        strategy=pgpe(16, sigma=0.5),
        num_generations=15,
        progress=False,
    )
    assert len(values) == 2
    for line in values:
        assert float(line.split()[1]) == pytest.approx(expected.best_value, rel=1e-5)


TRAIN_ARGS = [
    "--population", "16", "--eval-every", "2", "--eval-episodes", "2",
    "--final-eval-episodes", "3", "--target-return", "1e9", "--quiet",
]  # fmt: skip


def launch_training(out: Path, generations: int, extra=()) -> list[subprocess.Popen]:
    """Two `es-toolkit train` processes with two forced CPU devices each."""
    address = f"127.0.0.1:{free_port()}"
    # This session's compiler flags too: other LLVM settings round differently, and a
    # rounding difference can flip a discrete action and change an episode.
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2"
    env = {**os.environ, "XLA_FLAGS": flags}
    command = [sys.executable, "-m", "es_toolkit.cli", "train", *TRAIN_ARGS]
    return [
        subprocess.Popen(
            [*command, "--generations", str(generations), "--out", str(out), "--coordinator",
             address, "--num-processes", "2", "--process-id", str(i), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        for i in range(2)
    ]  # fmt: skip


def single_process_config(generations: int) -> TrainConfig:
    """What ``es-toolkit train`` with ``TRAIN_ARGS`` runs: CartPole's defaults, overridden."""
    return TrainConfig.for_env(
        "CartPole-v1",
        population_size=16,
        num_generations=generations,
        eval_every=2,
        eval_episodes=2,
        final_eval_episodes=3,
        target_return=1e9,
    )


def test_two_training_processes_match_one_and_resume_on_one(tmp_path):
    processes = launch_training(tmp_path / "two", 4)
    for proc in processes:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    _, two = load_run(tmp_path / "two" / "checkpoint.npz")
    one = train(single_process_config(4), tmp_path / "one", progress=False)
    assert int(two.generation) == 4
    assert_close(two.strategy_state.mean, one.state.strategy_state.mean)
    assert_close(two.obs_stats, one.state.obs_stats)
    # Written by two processes, resumed by one: the same numbers as one process throughout.
    resumed = train(single_process_config(6), tmp_path / "two", resume=True, progress=False)
    straight = train(single_process_config(6), tmp_path / "straight", progress=False)
    assert_close(resumed.state.strategy_state.mean, straight.state.strategy_state.mean)
    assert (tmp_path / "two" / "result.json").exists()


def test_a_killed_process_stops_the_other_within_the_heartbeat_timeout(tmp_path):
    out = tmp_path / "run"
    processes = launch_training(out, 100_000)
    deadline = time.monotonic() + 180
    while not (out / "checkpoint.npz").exists():
        assert time.monotonic() < deadline, processes[0].stderr.read()
        time.sleep(0.2)
    processes[1].kill()
    killed_at = time.monotonic()
    _, err = processes[0].communicate(timeout=120)
    waited = time.monotonic() - killed_at
    processes[1].communicate()  # reap it and close its pipes
    assert processes[0].returncode != 0
    assert "another task died" in err
    assert waited < parallel.DEFAULT_HEARTBEAT_TIMEOUT_S + 30
    _, state = load_run(out / "checkpoint.npz")  # the last checkpoint is intact
    assert int(state.generation) >= 2


def test_two_processes_split_a_gymnasium_population_over_their_workers(tmp_path):
    """Each process runs its half of the members in its own rollout worker; the gathered
    returns give every process the single-process update."""
    extra = ["--backend", "gymnasium", "--num-workers", "1"]
    processes = launch_training(tmp_path / "two", 2, extra)
    for proc in processes:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-3000:]
    _, two = load_run(tmp_path / "two" / "checkpoint.npz")
    config = dataclasses.replace(single_process_config(2), backend="gymnasium", num_workers=2)
    one = train(config, tmp_path / "one", progress=False)
    assert int(two.env_steps) == int(one.state.env_steps)
    assert_close(two.strategy_state.mean, one.state.strategy_state.mean)
