"""Throughput on an accelerator: strategies against evosax, JAX environments, Brax.

One command, meant for one GPU and under 5 minutes end to end: ``--time-limit`` (280 s by
default) is shared between the groups of rows below (10%, 35%, 30%, 25%; a group's unused
time goes to the next), and the rows left when a group's share is spent are skipped and
marked. A row, once started, runs to its end. ``--groups`` runs some groups only, with the
whole limit.

* **Strategies**: generations per second of OpenAI-ES, SNES and CMA-ES
  (``es_toolkit.strategies.open_es``, ``snes``, ``cma_es``; CMA-ES only where d <= 10^4,
  its covariance being d x d) on the sphere at d = 10^3 to 10^6 and populations 256 to
  16,384, against evosax's ``Open_ES``, ``SNES`` and ``CMA_ES`` on the same device. Both
  sides are a jitted ``lax.scan`` of a block of generations (ours: ``evaluate_and_tell``;
  evosax: ``ask``, vmapped f, ``tell``; the code of ``bench_strategies.py`` and
  ``bench_cma.py``), timed after compilation with ``block_until_ready``, median of the
  repeats. evosax holds the whole population at once: it runs only where four copies of
  the population matrix fit in the device's memory. Rows run from the cheapest.
* **Environments**: env steps per second of CartPole-v1 and Pendulum-v1
  (``es_toolkit.envs``) at 10^4 to 10^6 parallel envs: a ``lax.scan`` of a vmapped step of
  a linear policy and ``step`` with auto-reset.
* **Brax**: env steps per second of a whole generation (policy forward pass included) on
  Brax ant and halfcheetah at populations 256, 1,024 and 4,096, episode length 1,000 and
  Brax ES's default network (4 hidden layers of 32, ReLU, tanh of the mean action): ours
  (OpenAI-ES on ``es_toolkit.envs.make("brax/NAME")``) against Brax's own ES trainer
  (``brax.training.agents.es.train``, whose ``population_size`` counts antithetic pairs,
  so it gets half of ours), its ``training/sps`` after its first two epochs (it traces
  twice). Both sides build the env on Brax's ``mjx`` pipeline (``--brax-pipeline``). Then
  the time to reach a return of 3,000 on halfcheetah from the start of the process's
  work on it (compilation included), within the time left, for both.

evosax and Brax are benchmark-only tools, not es_toolkit dependencies: a missing one makes
its rows say "not installed".

Usage::

    # on a GPU machine: docs/results/accelerator_throughput.json and docs/benchmarks.md
    .venv/bin/python scripts/bench_accelerator.py
    # then, for the 5-minute halfcheetah target (300 s for each side), keeping the rest:
    .venv/bin/python scripts/bench_accelerator.py --groups solve --time-limit 600
    # a CPU smoke run, printing the section, writing only where told
    .venv/bin/python scripts/bench_accelerator.py --quick --json /tmp/a.json
    # rewrite the section from saved results, measuring nothing
    .venv/bin/python scripts/bench_accelerator.py \\
        --from-json docs/results/accelerator_throughput.json
"""

import argparse
import contextlib
import importlib.util
import itertools
import json
import statistics
import sys
import time

import _bench

SECTION_TITLE = "## Throughput on an accelerator"
DEFAULT_TIME_LIMIT_S = 280.0
DEFAULT_JSON = _bench.ROOT / "docs" / "results" / "accelerator_throughput.json"
GROUPS = ("envs", "strategies", "brax", "solve")
# Each group may run until this cumulative fraction of the time limit has passed, so time
# a group leaves unused goes to the next and a slow group cannot starve the others.
GROUP_SHARES = {"envs": 0.1, "strategies": 0.35, "brax": 0.3, "solve": 0.25}
STRATEGIES = ("open_es", "snes", "cma_es")
LABELS = {"open_es": "OpenAI-ES", "snes": "SNES", "cma_es": "CMA-ES"}
DIMS = (1_000, 10_000, 100_000, 1_000_000)
POPULATIONS = (256, 1024, 4096, 16384)
CMA_MAX_D = 10_000
ENV_IDS = ("CartPole-v1", "Pendulum-v1")
ENV_COUNTS = (10_000, 100_000, 1_000_000)
ENV_STEPS = 100  # steps per timed scan
BRAX_ENVS = ("ant", "halfcheetah")
BRAX_POPULATIONS = (256, 1024, 4096)
BRAX_EPISODE_LENGTH = 1000
BRAX_HIDDEN = (32, 32, 32, 32)  # brax.training.agents.es.networks.make_es_networks
BRAX_PIPELINE = "mjx"  # the adapter's default physics backend, on both sides
# Brax ES traces its epoch twice (its initial state holds Python ints, later ones arrays):
# the first two epochs compile and are left out of its rate.
BRAX_COMPILING_EPOCHS = 2
SOLVE_ENV, SOLVE_RETURN, SOLVE_POPULATION = "halfcheetah", 3000.0, 4096
SOLVE_TARGET_S = 300.0
SIGMA, LEARNING_RATE = 0.1, 0.01  # both sides of the Brax rows: perturbation std, Adam rate
REPEATS = 3
NOT_INSTALLED = "not installed"


class TimeLimit(Exception):
    """A group's share of ``--time-limit`` is spent."""


class Clock:
    """The time left to each group: group i may run until the cumulative share of the
    groups up to it of ``limit_s`` has passed since the start."""

    def __init__(self, limit_s: float, groups):
        self.start = time.perf_counter()
        shares = [GROUP_SHARES[group] for group in groups]
        total, cumulative = sum(shares), 0.0
        self.deadline = {}
        for group, share in zip(groups, shares, strict=True):
            cumulative += share
            self.deadline[group] = self.start + limit_s * cumulative / total

    def left(self, group: str) -> float:
        return self.deadline[group] - time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def log(message: str) -> None:
    print(message, flush=True)


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def median_rate(call, work: float, repeats: int) -> tuple[float, float]:
    """``(work per second, last value)``: the median rate over ``repeats`` timed calls of
    ``call()``, whose result is waited for with ``block_until_ready``, and the last call's
    result as a float."""
    import jax

    rates, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = jax.block_until_ready(call())
        rates.append(work / (time.perf_counter() - start))
    return statistics.median(rates), float(value)


# --------------------------------------------------------------------------------------
# Strategies on the sphere, ours against evosax.
# --------------------------------------------------------------------------------------


def sphere(x):
    import jax.numpy as jnp

    return jnp.sum(x * x)


def strategy_grid(quick: bool) -> list[tuple[str, int, int]]:
    """``(strategy, d, population)`` rows, cheapest first (CMA-ES counted d / 100 times
    dearer per member: its d x d covariance)."""
    if quick:
        return [(name, 100, 16) for name in STRATEGIES]
    rows = [
        (name, d, population)
        for d in DIMS
        for population in POPULATIONS
        for name in STRATEGIES
        if name != "cma_es" or d <= CMA_MAX_D
    ]
    return sorted(rows, key=lambda row: generation_cost(*row))


def generation_cost(name: str, d: int, population: int) -> float:
    """A rough cost of one generation: d x population, CMA-ES's d / 100 times more (its
    d x d covariance and eigendecomposition)."""
    return d * population * (d / 100 if name == "cma_es" else 1)


def generations_per_block(name: str, d: int, population: int, quick: bool) -> int:
    """Enough generations per timed block to dwarf the call overhead, few on big rows."""
    if quick:
        return 2
    return max(2, min(20, int(2e8 // generation_cost(name, d, population))))


def our_strategy(name: str, population: int, d: int):
    """Ours with the settings ``bench_strategies.build_pair`` gives both sides (its
    hyperparameters for the sphere at the nearest d), CMA-ES with sigma 1."""
    import bench_strategies
    import optax

    from es_toolkit import strategies

    if name == "cma_es":
        return strategies.cma_es(population, sigma=1.0)
    hp = bench_strategies.hyperparameters(name, "sphere", d)
    if name == "open_es":
        return strategies.open_es(population, sigma=hp["sigma"], antithetic=True,
                                  optimizer=optax.adam(hp["lr"]),
                                  fitness_shaping="centered_ranks")  # fmt: skip
    return strategies.snes(population, sigma=hp["sigma"], learning_rate=1.0,
                           fitness_shaping="nes_utilities")  # fmt: skip


def evosax_pair(name: str, population: int, x0):
    """evosax's algorithm and params for ``name``: ``bench_strategies.build_pair``'s for
    OpenAI-ES and SNES, ``CMA_ES`` with evosax's defaults and sigma 1 (as ours)."""
    if name == "cma_es":
        import jax.numpy as jnp
        from evosax.algorithms import CMA_ES

        algorithm = CMA_ES(population, x0)
        return algorithm, algorithm.default_params.replace(std_init=jnp.asarray(1.0))
    import bench_strategies

    hp = bench_strategies.hyperparameters(name, "sphere", x0.shape[0])
    _, algorithm, params = bench_strategies.build_pair(name, population, x0, hp)
    return algorithm, params


def evosax_fits(d: int, population: int) -> tuple[bool, str]:
    """Whether four float32 copies of evosax's population matrix fit the device."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit")
    needed = 4 * 4 * d * population
    if limit is None or needed <= limit:
        return True, ""
    return False, f"population matrix too large ({needed / 2**30:.0f} GiB of {limit / 2**30:.0f})"


def time_run(run, x0, generations: int, repeats: int) -> dict:
    import jax

    start = time.perf_counter()
    compiled = jax.jit(run).lower(jax.random.key(0), x0).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(jax.random.key(1), x0))  # warm-up
    seeds = iter(range(2, 2 + repeats))
    rate, final = median_rate(
        lambda: compiled(jax.random.key(next(seeds)), x0), generations, repeats
    )
    return {"gen_per_s": rate, "compile_s": compile_s, "final_f": final}


def strategy_row(name: str, d: int, population: int, quick: bool) -> dict:
    import bench_strategies
    import jax.numpy as jnp

    generations = generations_per_block(name, d, population, quick)
    repeats = 2 if quick else REPEATS
    x0 = jnp.ones(d, jnp.float32)
    row = {"strategy": name, "d": d, "population": population, "generations": generations}
    run = bench_strategies.ours_run(our_strategy(name, population, d), sphere, generations,
                                    layout="plain")  # fmt: skip
    row["ours"] = time_run(run, x0, generations, repeats)
    if not installed("evosax"):
        row["evosax"] = {"skipped": NOT_INSTALLED}
        return row
    fits, why = evosax_fits(d, population)
    if not fits:
        row["evosax"] = {"skipped": why}
        return row
    algorithm, params = evosax_pair(name, population, x0)
    run = bench_strategies.evosax_run(algorithm, params, sphere, generations)
    row["evosax"] = time_run(run, x0, generations, repeats)
    return row


def strategy_rows(clock: Clock, quick: bool) -> list[dict]:
    rows = []
    for name, d, population in strategy_grid(quick):
        if clock.left("strategies") <= 0:
            rows.append({"strategy": name, "d": d, "population": population,
                         "skipped": "time limit"})  # fmt: skip
            continue
        try:
            rows.append(strategy_row(name, d, population, quick))
        except Exception as error:  # an out-of-memory row must not end the benchmark
            rows.append({"strategy": name, "d": d, "population": population,
                         "error": f"{type(error).__name__}: {str(error)[:200]}"})  # fmt: skip
        log(json.dumps(rows[-1]))
    return rows


# --------------------------------------------------------------------------------------
# JAX environments: many parallel envs under a linear policy, with auto-reset.
# --------------------------------------------------------------------------------------


def linear_action(env, params, weights, obs):
    """The linear policy's action: argmax of ``obs @ weights`` for a discrete space, else
    ``obs @ weights`` clipped to the box."""
    import jax.numpy as jnp
    from es_toolkit.envs import Discrete

    space = env.action_space(params)
    out = obs @ weights
    if isinstance(space, Discrete):
        return jnp.argmax(out).astype(jnp.int32)
    return jnp.clip(out, space.low, space.high).reshape(space.shape)


def auto_reset_step(env, params, weights):
    """``step(key, state, obs) -> (state, obs, reward)`` of one env: the policy's action,
    ``env.step``, and a fresh episode where the step ended one."""
    import jax
    import jax.numpy as jnp

    def step(key, state, obs):
        step_key, reset_key = jax.random.split(key)
        action = linear_action(env, params, weights, obs)
        obs, state, reward, terminated, truncated, _ = env.step(step_key, state, action, params)
        reset_obs, reset_state = env.reset(reset_key, params)
        done = terminated | truncated
        state = jax.tree.map(lambda a, b: jnp.where(done, a, b), reset_state, state)
        return state, jnp.where(done, reset_obs, obs), reward

    return step


def env_rollout(env, num_envs: int, steps: int):
    """``run(key) -> total reward``: ``steps`` steps of ``num_envs`` envs."""
    import jax
    import jax.numpy as jnp

    params = env.default_params
    obs_size = env.observation_space(params).shape[0]
    weights = 0.1 * jax.random.normal(jax.random.key(7), (obs_size, env.num_actions))
    step = jax.vmap(auto_reset_step(env, params, weights))

    def run(key):
        obs, state = jax.vmap(lambda k: env.reset(k, params))(jax.random.split(key, num_envs))

        def body(carry, t):
            state, obs, total = carry
            keys = jax.random.split(jax.random.fold_in(key, t), num_envs)
            state, obs, reward = step(keys, state, obs)
            return (state, obs, total + jnp.sum(reward)), None

        carry = (state, obs, jnp.zeros((), jnp.float32))
        (_, _, total), _ = jax.lax.scan(body, carry, jnp.arange(steps))
        return total

    return run


def env_row(env_id: str, num_envs: int, quick: bool) -> dict:
    import jax
    from es_toolkit.envs import make

    steps = 2 if quick else ENV_STEPS
    run = env_rollout(make(env_id), num_envs, steps)
    start = time.perf_counter()
    compiled = jax.jit(run).lower(jax.random.key(0)).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(jax.random.key(1)))
    work = num_envs * steps
    rate, total = median_rate(lambda: compiled(jax.random.key(2)), work, 2 if quick else REPEATS)
    return {"env": env_id, "num_envs": num_envs, "steps": steps, "steps_per_s": rate,
            "compile_s": compile_s, "reward_per_step": total / work}  # fmt: skip


def env_rows(clock: Clock, quick: bool) -> list[dict]:
    rows = []
    for env_id in ENV_IDS:
        for num_envs in (64,) if quick else ENV_COUNTS:
            if clock.left("envs") <= 0:
                rows.append({"env": env_id, "num_envs": num_envs, "skipped": "time limit"})
                continue
            rows.append(env_row(env_id, num_envs, quick))
            log(json.dumps(rows[-1]))
    return rows


# --------------------------------------------------------------------------------------
# Brax: ours on the es_toolkit.envs adapter against Brax's ES trainer.
# --------------------------------------------------------------------------------------


def our_brax_env(name: str, pipeline: str):
    """The adapter's Brax env ``NAME`` on ``pipeline`` (``es_toolkit.envs.make("brax/NAME")``
    on its default one), or ``None`` where that adapter is missing."""
    try:
        from es_toolkit.envs.brax_envs import BraxEnv
    except ImportError:
        return None
    return BraxEnv(name, pipeline=pipeline)


def mlp_sizes(obs_size: int, action_size: int) -> list[tuple[int, int]]:
    """Brax ES's policy: hidden layers ``BRAX_HIDDEN``, an output of a mean and a scale
    per action coordinate."""
    widths = [obs_size, *BRAX_HIDDEN, 2 * action_size]
    return list(itertools.pairwise(widths))


def mlp_policy(flat, obs, sizes):
    """tanh of the mean action of the MLP with weights ``flat`` (ReLU between layers):
    Brax's ``NormalTanhDistribution`` mode."""
    import jax.numpy as jnp

    x, offset = obs, 0
    for i, (a, b) in enumerate(sizes):
        w = flat[offset : offset + a * b].reshape(a, b)
        bias = flat[offset + a * b : offset + a * b + b]
        offset += a * b + b
        x = x @ w + bias
        x = jnp.maximum(x, 0.0) if i < len(sizes) - 1 else x
    return jnp.tanh(x[: sizes[-1][1] // 2])


def episode_return(env, sizes, episode_length: int):
    """``f(flat, key) -> return`` of one episode of at most ``episode_length`` steps; the
    rewards after the episode ends are masked out."""
    import jax
    import jax.numpy as jnp

    params = env.default_params

    def f(flat, key):
        obs, state = env.reset(key, params)

        def body(carry, t):
            state, obs, total, alive = carry
            action = mlp_policy(flat, obs, sizes)
            obs, state, reward, terminated, truncated, _ = env.step(
                jax.random.fold_in(key, t), state, action, params
            )
            total = total + jnp.where(alive, reward, 0.0)
            return (state, obs, total, alive & ~(terminated | truncated)), None

        carry = (state, obs, jnp.zeros((), jnp.float32), jnp.ones((), bool))
        (_, _, total, _), _ = jax.lax.scan(body, carry, jnp.arange(episode_length))
        return total

    return f


def our_generation(env, population: int, episode_length: int):
    """``(generation(key, state) -> (state, mean's return), initial state)`` of OpenAI-ES
    on ``env`` with Brax ES's network and the shared hyperparameters."""
    import jax
    import jax.numpy as jnp

    from es_toolkit.strategies import open_es
    from es_toolkit.strategies.base import evaluate_and_tell

    obs_size = env.observation_space(env.default_params).shape[0]
    sizes = mlp_sizes(obs_size, env.num_actions)
    d = sum(a * b + b for a, b in sizes)
    strategy = open_es(population, sigma=SIGMA, learning_rate=LEARNING_RATE)
    f = episode_return(env, sizes, episode_length)
    x0 = 0.1 * jax.random.normal(jax.random.key(3), (d,)) / jnp.sqrt(32.0)

    def generation(key, state):
        episode_key = jax.random.fold_in(key, 1)
        state = evaluate_and_tell(strategy, key, state, lambda x: f(x, episode_key))[0]
        return state, f(state.mean, episode_key)

    return generation, strategy.init(x0)


def ours_brax_throughput(env, population: int, episode_length: int, generations: int):
    import jax

    generation, state = our_generation(env, population, episode_length)
    compiled = jax.jit(generation).lower(jax.random.key(0), state).compile()
    rates = []
    for g in range(generations):
        start = time.perf_counter()
        state, value = compiled(jax.random.key(g), state)
        jax.block_until_ready(value)
        rates.append(population * episode_length / (time.perf_counter() - start))
    return {"steps_per_s": statistics.median(rates[1:] or rates)}


class StopTraining(Exception):
    """Raised from Brax's ``progress_fn`` to end its training early."""


def brax_es_train(name: str, pipeline: str, population: int, episode_length: int,
                  epochs: int, on_eval, num_eval_envs: int = 128):  # fmt: skip
    """Brax ES on brax's ``NAME`` with our population (``population // 2`` antithetic
    pairs) and hyperparameters, one evaluation after every epoch: ``on_eval(step,
    metrics)`` gets each; ``StopTraining`` from it ends the run."""
    from brax import envs as brax_envs
    from brax.training.agents.es import train as es_train

    with contextlib.suppress(StopTraining):
        es_train.train(
            environment=brax_envs.get_environment(name, backend=pipeline),
            num_timesteps=epochs * population * episode_length,
            episode_length=episode_length,
            population_size=population // 2,
            learning_rate=LEARNING_RATE,
            perturbation_std=SIGMA,
            fitness_shaping=es_train.FitnessShaping.CENTERED_RANK,
            num_eval_envs=num_eval_envs,
            num_evals=epochs + 1,
            progress_fn=on_eval,
        )


def brax_es_throughput(name: str, pipeline: str, population: int, episode_length: int,
                       epochs: int, num_eval_envs: int) -> dict:  # fmt: skip
    """Brax ES's own ``training/sps`` of each epoch after the compiling ones."""
    rates = []

    def on_eval(step, metrics):
        if "training/sps" in metrics:
            rates.append(float(metrics["training/sps"]))

    brax_es_train(name, pipeline, population, episode_length, epochs, on_eval, num_eval_envs)
    return {"steps_per_s": statistics.median(rates[BRAX_COMPILING_EPOCHS:]), "epochs": rates}


def brax_grid(quick: bool) -> list[tuple[str, int]]:
    """``(env, population)`` rows, smallest population first for every env."""
    if quick:
        return [("halfcheetah", 4)]
    return [(name, population) for population in BRAX_POPULATIONS for name in BRAX_ENVS]


def brax_rows(clock: Clock, quick: bool, pipeline: str) -> list[dict]:
    if not installed("brax"):
        return [{"env": name, "skipped": "brax not installed"} for name in BRAX_ENVS]
    episode_length = 10 if quick else BRAX_EPISODE_LENGTH
    epochs = BRAX_COMPILING_EPOCHS + (1 if quick else 3)
    rows = []
    for name, population in brax_grid(quick):
        row = {"env": name, "population": population, "episode_length": episode_length}
        rows.append(row)
        if clock.left("brax") <= 0:
            row["skipped"] = "time limit"
            continue
        try:
            env = our_brax_env(name, pipeline)
            row["ours"] = (
                ours_brax_throughput(env, population, episode_length, epochs)
                if env is not None
                else {"skipped": "adapter not available"}
            )
            row["brax_es"] = brax_es_throughput(name, pipeline, population, episode_length,
                                                epochs, 4 if quick else 128)  # fmt: skip
        except Exception as error:  # an out-of-memory row must not end the benchmark
            row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
        log(json.dumps(row))
    return rows


def ours_time_to_return(env, budget_s: float, population: int = SOLVE_POPULATION,
                        episode_length: int = BRAX_EPISODE_LENGTH,
                        target: float = SOLVE_RETURN) -> dict:  # fmt: skip
    """Seconds from the start of compilation until the mean's return reaches ``target``,
    within ``budget_s``: ``{"seconds", "generations", "best"}``, ``seconds`` ``None`` (and
    ``budget_s`` added) where it did not."""
    import jax

    start = time.perf_counter()
    generation, state = our_generation(env, population, episode_length)
    generation = jax.jit(generation)
    best, g = float("-inf"), 0
    while time.perf_counter() - start < budget_s:
        state, value = generation(jax.random.key(g), state)
        best, g = max(best, float(value)), g + 1
        if best >= target:
            return {"seconds": time.perf_counter() - start, "generations": g, "best": best}
    return {"seconds": None, "generations": g, "best": best, "budget_s": budget_s}


def brax_es_time_to_return(pipeline: str, budget_s: float) -> dict:
    """The same for Brax ES (its evaluation of the mean policy, 128 episodes)."""
    start = time.perf_counter()
    seen = {"best": float("-inf"), "epochs": 0, "seconds": None}

    def on_eval(step, metrics):
        seen["best"] = max(seen["best"], float(metrics.get("eval/episode_reward", -1e30)))
        seen["epochs"] += 1
        if seen["best"] >= SOLVE_RETURN:
            seen["seconds"] = time.perf_counter() - start
            raise StopTraining
        if time.perf_counter() - start >= budget_s:
            raise StopTraining

    brax_es_train(SOLVE_ENV, pipeline, SOLVE_POPULATION, BRAX_EPISODE_LENGTH, 10**6, on_eval)
    return {**seen, "budget_s": budget_s}


def solve_rows(clock: Clock, quick: bool, pipeline: str) -> list[dict]:
    row = {"env": SOLVE_ENV, "target_return": SOLVE_RETURN, "population": SOLVE_POPULATION}
    if quick:
        return [{**row, "skipped": "skipped in --quick"}]
    if not installed("brax"):
        return [{**row, "skipped": "brax not installed"}]
    if clock.left("solve") <= 0:
        return [{**row, "skipped": "time limit"}]
    try:
        start = time.perf_counter()  # making the env counts: Brax ES's time includes it
        env = our_brax_env(SOLVE_ENV, pipeline)
        made_s = time.perf_counter() - start
        if env is None:
            row["ours"] = {"skipped": "adapter not available"}
        else:
            ours = ours_time_to_return(env, clock.left("solve") / 2)
            if ours["seconds"] is not None:
                ours["seconds"] += made_s
            row["ours"] = {**ours, "env_s": made_s}
        row["brax_es"] = brax_es_time_to_return(pipeline, max(clock.left("solve"), 0.0))
    except Exception as error:  # an out-of-memory run must not lose the other rows
        row["error"] = f"{type(error).__name__}: {str(error)[:200]}"
    log(json.dumps(row))
    return [row]


# --------------------------------------------------------------------------------------
# The section of docs/benchmarks.md.
# --------------------------------------------------------------------------------------


def fmt_rate(side: dict | None, key: str) -> str:
    if side is None:
        return "-"
    if "skipped" in side:
        return side["skipped"]
    return f"{side[key]:,.0f}" if side[key] >= 100 else f"{side[key]:.3g}"


NOT_JUDGED = "not judged (CPU quick run)"


def ratio_and_verdict(ours: dict | None, peer: dict | None, key: str,
                      judged: bool = True) -> tuple[str, str]:  # fmt: skip
    """``ours / peer`` and whether it meets the target (at least 1); a CPU quick run's
    numbers are not judged."""
    if not ours or not peer or key not in ours or key not in peer:
        return "-", "not measured"
    value = ours[key] / peer[key]
    if not judged:
        return f"{value:.2f}x", NOT_JUDGED
    return f"{value:.2f}x", "met" if value >= 1 else "missed"


def strategy_table(rows: list[dict], judged: bool = True) -> str:
    lines = ["| strategy | d | population | generations per block | ours gen/s | "
             "evosax gen/s | ours / evosax | target: at least evosax |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        head = f"| {LABELS[r['strategy']]} | {r['d']:,} | {r['population']:,} |"
        if "skipped" in r or "error" in r:
            lines.append(f"{head} - | {r.get('skipped') or r['error']} | | | |")
            continue
        ratio, verdict = ratio_and_verdict(r["ours"], r["evosax"], "gen_per_s", judged)
        lines.append(f"{head} {r['generations']} | {fmt_rate(r['ours'], 'gen_per_s')} | "
                     f"{fmt_rate(r['evosax'], 'gen_per_s')} | {ratio} | {verdict} |")  # fmt: skip
    return "\n".join(lines)


def env_table(rows: list[dict], judged: bool = True) -> str:
    del judged  # these rows have no target
    lines = ["| environment | parallel envs | steps per scan | env steps per second |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        rate = r["skipped"] if "skipped" in r else f"{r['steps_per_s']:,.0f}"
        lines.append(f"| {r['env']} | {r['num_envs']:,} | {r.get('steps', '-')} | {rate} |")
    return "\n".join(lines)


def brax_table(rows: list[dict], judged: bool = True) -> str:
    lines = ["| environment | population | episode length | ours steps/s | Brax ES steps/s | "
             "ours / Brax ES | target: at least Brax ES |",
             "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in rows:
        head = f"| {r['env']} | {r.get('population', '-')} | {r.get('episode_length', '-')} |"
        if "skipped" in r or "error" in r:
            lines.append(f"{head} {r.get('skipped') or r['error']} | | | |")
            continue
        ratio, verdict = ratio_and_verdict(r["ours"], r["brax_es"], "steps_per_s", judged)
        ours, theirs = fmt_rate(r["ours"], "steps_per_s"), fmt_rate(r["brax_es"], "steps_per_s")
        lines.append(f"{head} {ours} | {theirs} | {ratio} | {verdict} |")
    return "\n".join(lines)


def describe_solve(side: dict | None) -> str:
    if side is None:
        return "-"
    if "skipped" in side:
        return side["skipped"]
    if side["seconds"] is None:
        return f"not reached in {side['budget_s']:.0f} s (best {side['best']:,.0f})"
    return f"{side['seconds']:.0f} s (best {side['best']:,.0f})"


def solve_table(rows: list[dict], judged: bool = True) -> str:
    lines = ["| environment | population | ours | Brax ES | target: within "
             f"{SOLVE_TARGET_S:.0f} s (ours) |", "|---|---:|---|---|---|"]  # fmt: skip
    for r in rows:
        if "skipped" in r or "error" in r:
            why = r.get("skipped") or r["error"]
            lines.append(f"| {r['env']} | {r['population']:,} | {why} | | |")
            continue
        ours = r["ours"]
        seconds = ours.get("seconds")
        verdict = ("not measured" if "skipped" in ours else NOT_JUDGED if not judged
                   else "met" if seconds is not None and seconds <= SOLVE_TARGET_S
                   else "missed")  # fmt: skip
        lines.append(f"| {r['env']} | {r['population']:,} | {describe_solve(ours)} | "
                     f"{describe_solve(r['brax_es'])} | {verdict} |")  # fmt: skip
    return "\n".join(lines)


def with_earlier_groups(results: dict, earlier: dict, groups) -> dict:
    """``results`` with the groups not run this time (not in ``groups``) taken from
    ``earlier`` results of the same device and mode, so that a run of some groups (say
    ``--groups solve`` with a longer limit) keeps the others' rows; ``meta["earlier"]``
    names them and their date."""
    meta, before = results["meta"], earlier.get("meta", {})
    same = all(meta[key] == before.get(key) for key in ("device", "platform", "quick"))
    kept = [group for group in GROUPS if group not in groups and earlier.get(group)]
    if not same or not kept:
        return results
    merged = {**results, **{group: earlier[group] for group in kept}}
    merged["meta"] = {**meta, "earlier": {"groups": kept, "date": before.get("date", "?")}}
    return merged


def skipped_note(results: dict) -> str:
    count = sum("skipped" in row and row["skipped"] == "time limit"
                for group in GROUPS for row in results.get(group, []))  # fmt: skip
    note = "No row was skipped for time."
    if count:
        note = (f"{count} rows were skipped: the time limit of "
                f"{results['meta']['time_limit_s']:.0f} s ran out before them (marked *time "
                "limit*).")  # fmt: skip
    earlier = results["meta"].get("earlier")
    if earlier:
        note += (f" The {', '.join(earlier['groups'])} rows are from an earlier run "
                 f"({earlier['date']}) on the same device.")  # fmt: skip
    return note


def group_text(text: dict, group: str, rows: list[dict], table, judged: bool, **fields) -> str:
    """The group's subsection; its heading and a line saying so where it did not run."""
    if rows:
        return _bench.fill(text[group], table=table(rows, judged), **fields)
    return _bench.fill(text[group].splitlines()[0], **fields) + "\n\nNot run (`--groups`)."


def render(results: dict) -> str:
    text = _bench.prose("accelerator")
    meta = results["meta"]
    parts = [SECTION_TITLE, "", _bench.fill(text["header"], **{
        key: meta[key] for key in ("device", "platform", "jax", "versions", "date", "command")
    }, elapsed=f"{meta['elapsed_s']:.0f}", skipped=skipped_note(results))]  # fmt: skip
    judged = not (meta["quick"] or meta["platform"] == "cpu")
    if not judged:
        parts += ["", text["cpu"]]
    tables = {"strategies": strategy_table, "envs": env_table, "brax": brax_table,
              "solve": solve_table}  # fmt: skip
    for group in ("strategies", "envs", "brax", "solve"):
        fields = {
            "solve": {"target": f"{SOLVE_RETURN:,.0f}"},
            "brax": {"pipeline": meta.get("brax_pipeline", BRAX_PIPELINE)},
        }.get(group, {})
        parts += ["", group_text(text, group, results[group], tables[group], judged, **fields)]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------
# Running it.
# --------------------------------------------------------------------------------------


def measure(args) -> dict:
    import jax

    clock = Clock(args.time_limit, args.groups)
    device = jax.devices()[0]
    log(f"device: {device.device_kind} ({device.platform}), jax {jax.__version__}")
    results = {}
    runners = {
        "envs": env_rows,
        "strategies": strategy_rows,
        "brax": lambda clock, quick: brax_rows(clock, quick, args.brax_pipeline),
        "solve": lambda clock, quick: solve_rows(clock, quick, args.brax_pipeline),
    }
    for group in GROUPS:
        results[group] = runners[group](clock, args.quick) if group in args.groups else []
    results["meta"] = {
        "device": str(device.device_kind),
        "platform": device.platform,
        "jax": jax.__version__,
        "versions": _bench.package_versions(("jax", "jaxlib", "evosax", "brax", "flax")),
        "library": _bench.library_version(),
        "evosax": "installed" if installed("evosax") else NOT_INSTALLED,
        "brax": "installed" if installed("brax") else NOT_INSTALLED,
        "quick": args.quick,
        "brax_pipeline": args.brax_pipeline,
        "time_limit_s": args.time_limit,
        "elapsed_s": clock.elapsed(),
        "date": _bench.today(),
        "command": _bench.reproduce_command("python scripts/bench_accelerator.py", sys.argv[1:]),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes for a CPU smoke run; writes only where told",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=DEFAULT_TIME_LIMIT_S,
        help="seconds for the whole run; the rows left after a group's "
        "share of it are skipped and marked (default %(default)s)",
    )
    parser.add_argument(
        "--groups",
        nargs="+",
        choices=GROUPS,
        default=list(GROUPS),
        help="which groups of rows to run (default: all)",
    )
    parser.add_argument(
        "--brax-pipeline", default=BRAX_PIPELINE, help="Brax physics backend of both sides"
    )
    _bench.add_output_options(parser)
    args = parser.parse_args()
    if args.time_limit <= 0:
        parser.error(f"--time-limit must be positive seconds; got {args.time_limit}")
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = measure(args)
        json_path = args.json or (None if args.quick else DEFAULT_JSON)
        if json_path and json_path.exists():
            results = with_earlier_groups(results, json.loads(json_path.read_text()), args.groups)
        if json_path:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(results, indent=1))
            log(f"wrote {json_path}")
    section = render(results)
    print(section)
    output = args.output or (None if args.quick else _bench.BENCHMARKS_DOC)
    if output:
        _bench.write_section(output, SECTION_TITLE, section)
        log(f"wrote the section {SECTION_TITLE!r} of {output}")


if __name__ == "__main__":
    main()
