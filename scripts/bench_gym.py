"""Throughput of our Gymnasium rollout workers against the raw env loop, and learning runs.

Throughput: environment steps per second on CartPole-v1, HalfCheetah-v5 and
LunarLanderContinuous-v3 of

* the **raw loop**: ``env.step(env.action_space.sample())`` in a plain Python loop, reset
  when an episode ends, in one process, and in one process per core at once;
* **ours**: ``es_toolkit.gym.run_population`` in a ``RolloutPool`` with 1 worker and
  with one worker per core, a population of linear policies with random weights (whole
  episodes, NumPy forward pass, observation normalization on, results sent back, each
  generation's statistics merge and the next one's ``ask`` and seeds in the loop, one
  jitted call as in training), counting every step of every episode over whole
  generations.

The two take turns in rounds (processes and pools started once), so that a shared machine
that slows down or speeds up affects both alike; a cell reports medians over the rounds.
The ratio "per core" is ours with ``w`` workers over the raw loop with ``w`` processes.

Parameters: the parent writes each call's member parameters once into a file in memory
that every worker maps (``es_toolkit.gym.shared``). The alternative, each worker
regenerating its members from the run key and member index, needs JAX in the worker and
one jitted ``ask`` call per generation; both costs per member are measured here in one process
(write and read back through the shared file vs the jitted slice of ``ask``).

Learning: ``python scripts/train.py --env X --out DIR --overwrite --quiet`` in a fresh
process with the tuned ``TASK_DEFAULTS``, timed from outside; the final return is the
evaluation of the best policy in ``result.json``.

Usage::

    .venv/bin/python scripts/bench_gym.py                 # throughput + learning, writes docs
    .venv/bin/python scripts/bench_gym.py --no-learning   # throughput only
    .venv/bin/python scripts/bench_gym.py --quick         # smoke test, prints the tables
"""

import argparse
import multiprocessing
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import _bench
import jax
import numpy as np

from es_toolkit import gym as gym_lib
from es_toolkit.gym import _shared
from es_toolkit.gym.episodes import ENVS_PER_WORKER
from es_toolkit.policies import batch_obs_stats, make_policy
from es_toolkit.strategies import open_es

SECTION_TITLE = "## Gymnasium rollout workers"
# (env id, members per generation): 64 is what the tuned defaults of all three envs train
# with (train.TASK_DEFAULTS), one episode each; CartPole's short episodes also at 256.
THROUGHPUT = (
    ("CartPole-v1", 64),
    ("CartPole-v1", 256),
    ("HalfCheetah-v5", 64),
    ("LunarLanderContinuous-v3", 64),
)
LEARNING = {
    # env id: (return to reach, wall-clock budget in seconds)
    "HalfCheetah-v5": (3000.0, 600.0),
    "Hopper-v5": (2000.0, 1200.0),
    "LunarLanderContinuous-v3": (200.0, 1200.0),
}
TARGET_PER_CORE = 0.8
POLICIES = (
    # name, (observation size, action size, hidden sizes)
    ("HalfCheetah linear 17 -> 6", (17, 6, ())),
    ("MLP 17 -> 64 -> 64 -> 6", (17, 6, (64, 64))),
    ("MLP 376 -> 256 -> 256 -> 17", (376, 17, (256, 256))),
)


def raw_loop(env_id: str, seconds: float, seed: int = 0) -> float:
    """Steps per second of the env in a plain loop with random actions."""
    env = gym_lib.make_env(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        steps += 100
    return steps / (time.perf_counter() - start)


class RawLoops:
    """``processes`` raw loops running at once (this process alone for one), started once
    and timed in rounds."""

    def __init__(self, env_id: str, processes: int):
        self.env_id, self.processes = env_id, processes
        context = multiprocessing.get_context("spawn")
        self.pool = context.Pool(processes) if processes > 1 else None

    def rate(self, seconds: float) -> float:
        """Total steps per second over ``seconds``."""
        if self.pool is None:
            return raw_loop(self.env_id, seconds)
        jobs = [(self.env_id, seconds, seed) for seed in range(self.processes)]
        return sum(self.pool.starmap(raw_loop, jobs))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


class Ours:
    """``run_population`` of a population of linear policies in a ``RolloutPool`` of
    ``workers`` workers, with each generation's statistics merge and the next one's ``ask``
    and seeds in one jitted call, as training runs them; the pool starts once and is timed
    in rounds."""

    def __init__(self, env_id: str, workers: int, population: int):
        env = gym_lib.make_env(env_id)
        policy = make_policy("linear", env.observation_space, env.action_space, zero_init=False)
        env.close()
        strategy = open_es(population, sigma=0.1)
        self.state = strategy.init(policy.init(jax.random.key(0)))

        def prepare(state, generation):
            key = jax.random.fold_in(jax.random.key(1), generation)
            return strategy.ask(key, state), gym_lib.seed_table(key, population, 1)

        # One dispatch per generation, as in training's Gymnasium block: the statistics
        # merge of a generation with the next one's members and seeds.
        self.prepare = jax.jit(prepare)
        self.merge_and_prepare = jax.jit(
            lambda stats, state, generation: (
                gym_lib.merge_episode_stats(stats),
                prepare(state, generation),
            )
        )
        self.next = None
        size = policy_obs_size(policy)
        self.stats = batch_obs_stats(size, np.random.default_rng(0).normal(size=(100, size)))
        spec = gym_lib.WorkerSpec(env_id, "linear", {"zero_init": False})
        self.pool = gym_lib.RolloutPool(spec, workers)
        self.generation = self.steps = self.episodes = 0
        self.rate(0.0)  # compiles ask and the merge, warms the workers up

    def rate(self, seconds: float) -> float:
        """Env steps per second over whole generations lasting at least ``seconds``."""
        steps, start = 0, time.perf_counter()
        if self.next is None:
            self.next = self.prepare(self.state, self.generation)
        while True:
            members, seeds = self.next
            runs = gym_lib.run_population(self.pool, members, seeds, self.stats, merge_stats=False)
            _, self.next = self.merge_and_prepare(runs.obs_stats, self.state, self.generation + 1)
            steps += int(runs.lengths.sum())
            self.steps += int(runs.lengths.sum())
            self.episodes += len(runs.lengths)
            self.generation += 1
            if time.perf_counter() - start >= seconds:
                return steps / (time.perf_counter() - start)

    def close(self) -> None:
        self.pool.close()


def throughput(
    env_id: str, population: int, processes: int, rounds: int, seconds: float
) -> dict[str, float]:
    """Raw loop and ours with ``processes`` processes (workers), timed in alternating
    rounds so that a machine that speeds up or slows down affects both alike: the median
    rate of each, the median ratio of rounds, and the mean episode length."""
    raw, ours = RawLoops(env_id, processes), Ours(env_id, processes, population)
    try:
        pairs = [(raw.rate(seconds), ours.rate(seconds)) for _ in range(rounds)]
    finally:
        raw.close()
        ours.close()
    return {
        "raw": statistics.median(r for r, _ in pairs),
        "ours": statistics.median(o for _, o in pairs),
        "ratio": statistics.median(o / r for r, o in pairs),
        "episode": ours.steps / ours.episodes,
    }


def policy_obs_size(policy) -> int:
    return int(policy.init(jax.random.key(0))["w"].shape[0])


def parameter_transport(d_in: int, d_out: int, hidden: tuple[int, ...], batch: int = 8):
    """Microseconds per member: through the shared file (written, mapped and copied out,
    as a worker stacks a member's rows) vs regenerating with a jitted ask."""
    obs = np.zeros(d_in)
    space = type("Box", (), {"low": -np.ones(d_out), "high": np.ones(d_out), "shape": (d_out,)})()
    obs_space = type("Box", (), {"low": obs - np.inf, "high": obs + np.inf, "shape": (d_in,)})()
    kind, options = ("mlp", {"hidden_sizes": hidden}) if hidden else ("linear", {})
    policy = make_policy(kind, obs_space, space, **options)
    strategy = open_es(256, sigma=0.1)
    state = strategy.init(policy.init(jax.random.key(0)))
    ask = jax.jit(strategy.ask, static_argnums=3)
    key = jax.random.key(1)
    members = jax.tree.map(np.asarray, ask(key, state, 0, batch))
    size = sum(leaf[0].size for leaf in jax.tree.leaves(members))

    fd = _shared.open_file()

    def received():
        jax.tree.map(np.array, _shared.read(fd, _shared.write(fd, members)))

    def regenerated():
        jax.tree.map(np.asarray, ask(key, state, 8, batch))

    times = {}
    for name, fn in (("receive", received), ("regenerate", regenerated)):
        fn()
        samples = []
        for _ in range(7):
            start = time.perf_counter()
            for _ in range(50):
                fn()
            samples.append((time.perf_counter() - start) / 50 / batch * 1e6)
        times[name] = statistics.median(samples)
    os.close(fd)
    return size, times


def learning_run(env_id: str, out: Path) -> dict:
    run = _bench.train_in_fresh_process(env_id, out)
    if "error" in run:
        raise RuntimeError(f"scripts/train.py --env {env_id} failed: {run['error']}")
    return run


def throughput_table(rounds: int, seconds: float, cores: int) -> tuple[str, list[float]]:
    """The steps-per-second table and its ratios (one and every core, per row)."""
    lines = [
        "| env | population | raw loop, 1 process | ours, 1 worker | ratio | raw loop, "
        f"{cores} processes | ours, {cores} workers | ratio per core | mean episode |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for env_id, population in THROUGHPUT:
        one = throughput(env_id, population, 1, rounds, seconds)
        every = throughput(env_id, population, cores, rounds, seconds)
        ratios += [one["ratio"], every["ratio"]]
        lines.append(
            f"| {env_id} | {population} | {one['raw']:,.0f} | {one['ours']:,.0f} | "
            f"{one['ratio']:.2f} | "
            f"{every['raw']:,.0f} | {every['ours']:,.0f} | {every['ratio']:.2f} | "
            f"{every['episode']:.0f} |"
        )
        print(lines[-1], flush=True)
    return "\n".join(lines), ratios


def parameters_table() -> tuple[str, list[str]]:
    """The receive-or-regenerate table and the policies for which receiving is cheaper."""
    lines = [
        "| policy | parameters | receive (shared file), us/member "
        "| regenerate (jitted ask), us/member |",
        "|---|---:|---:|---:|",
    ]
    cheaper = []
    for name, shape in POLICIES:
        size, times = parameter_transport(*shape)
        lines.append(f"| {name} | {size:,} | {times['receive']:.1f} | {times['regenerate']:.1f} |")
        print(lines[-1], flush=True)
        if times["receive"] <= times["regenerate"]:
            cheaper.append(name)
    return "\n".join(lines), cheaper


def learning_table() -> str:
    lines = [
        "| env | final return | episodes | target | wall s | budget s | generations "
        "| env steps | target met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for env_id, (target, budget) in LEARNING.items():
            run = learning_run(env_id, Path(tmp) / env_id)
            ok = run["final_return_mean"] >= target and run["process_s"] <= budget
            lines.append(
                f"| {env_id} | {run['final_return_mean']:.1f} +- {run['final_return_std']:.1f} "
                f"| {run['final_eval_episodes']} | {target:.0f} | {run['process_s']:.0f} | "
                f"{budget:.0f} | {run['generations']} | {run['env_steps']:,} | "
                + ("met" if ok else "missed")
                + " |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run, no doc update")
    parser.add_argument("--no-learning", dest="learning", action="store_false")
    parser.add_argument("--seconds", type=float, default=2.0, help="per throughput round")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per cell")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else args.seconds
    args.rounds = 2 if args.quick else args.rounds
    cores = gym_lib.available_cores()
    text = _bench.prose("gym")
    header = _bench.fill(
        text["header"],
        arch=platform.machine(),
        cores=cores,
        date=_bench.today(),
        rounds=args.rounds,
        seconds=f"{seconds:g}",
    )
    table, ratios = throughput_table(args.rounds, seconds, cores)
    throughput_text = _bench.fill(
        text["throughput"],
        table=table,
        target=f"{TARGET_PER_CORE:.0%}",
        met=sum(r >= TARGET_PER_CORE for r in ratios),
        cells=len(ratios),
        envs_per_worker=ENVS_PER_WORKER,
    )
    table, cheaper = parameters_table()
    parameters_text = _bench.fill(
        text["parameters"],
        table=table,
        cheaper=len(cheaper),
        policies=len(POLICIES),
        which=f" ({', '.join(cheaper)})" if cheaper else "",
    )
    parts = [SECTION_TITLE, "", header, "", throughput_text, "", parameters_text]
    if args.learning and not args.quick:
        parts += ["", _bench.fill(text["learning"], table=learning_table())]
    elif not args.quick:
        kept = _bench.previous_subsection(_bench.BENCHMARKS_DOC, SECTION_TITLE, "### Learning")
        parts += ["", kept] if kept else []
    section = "\n".join(parts) + "\n"
    if not args.quick:
        _bench.write_section(_bench.BENCHMARKS_DOC, SECTION_TITLE, section)
    print(section)


if __name__ == "__main__":
    main()
