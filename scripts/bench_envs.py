"""Throughput of the JAX-native environments against Gymnasium's, and wall time to solve
each task from a fresh process.

Throughput: environment steps per second of our CartPole-v1 and Pendulum-v1, batched with
``jax.vmap`` over ``num_envs`` copies and stepped in a jitted ``lax.scan`` (steps counted
as ``num_envs * num_steps``), side by side with Gymnasium's own environments: one env in a
Python loop, ``gymnasium.vector.SyncVectorEnv`` and, for CartPole, Gymnasium's
numpy-vectorized ``CartPoleVectorEnv`` (``gym.make_vec(..., vectorization_mode=
"vector_entry_point")``). Every implementation steps with random actions and resets each
env when its episode ends. Ours comes in three flavours:

* ``random``: actions from a per-env xorshift32 stream carried in the scan, and a finished
  env is put back to the initial state it was reset to at the start (``jnp.where`` on
  done): no JAX PRNG call inside the loop;
* ``fixed``: actions alternate 0, 1 (CartPole) or +2, -2 (Pendulum), same reset rule;
* ``jax.random``: the common JAX style (as gymnax's auto-reset wrapper), a fresh key per
  step split into one key per env for the action, the step and a reset drawn every step.

Time to solve: ``python scripts/train.py --env X --out DIR --overwrite --quiet`` in a
fresh process, i.e. with the tuned ``TASK_DEFAULTS`` and compilation included, timed from
outside; the final return is the 100-episode evaluation in ``result.json``.

Usage::

    .venv/bin/python scripts/bench_envs.py            # full run, writes docs/benchmarks.md
    .venv/bin/python scripts/bench_envs.py --quick    # smoke test, prints the tables
"""

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _bench
import jax
import jax.numpy as jnp
import numpy as np
from es_toolkit.envs import make as make_env

SECTION_TITLE = "## JAX environments"
COMMAND = ".venv/bin/python scripts/bench_envs.py"
THROUGHPUT_ENVS = ("CartPole-v1", "Pendulum-v1")
SOLVE_ENVS = {
    # env id: the final 100-episode return it must reach
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "MountainCar-v0": -120.0,
    "MountainCarContinuous-v0": 90.0,
    "Pendulum-v1": -200.0,
}
# Targets: ours (best of the random-action rows at any number of envs) against Gymnasium's
# single env, and ours against the numpy-vectorized CartPole at the same number of envs.
TARGET_VS_SINGLE = 100.0
TARGET_VS_VECTOR = 2.0
VECTOR_TARGET_SIZES = (64, 1024)


# --------------------------------------------------------------------------------------
# Ours: vmap over envs, lax.scan over steps.
# --------------------------------------------------------------------------------------


def _where_done(done, fresh, current):
    def pick(a, b):
        return jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree.map(pick, fresh, current)


def _xorshift32(x):
    x = x ^ (x << 13)
    x = x ^ (x >> 17)
    return x ^ (x << 5)


def make_jax_runner(env_id: str, num_envs: int, num_steps: int, actions: str):
    """A jitted ``run(key) -> checksum`` doing ``num_envs * num_steps`` env steps.

    The checksum depends on every step (the final states and the summed rewards), so XLA
    cannot drop any of the work.
    """
    env = make_env(env_id)
    params = env.default_params
    discrete = not hasattr(env.action_space(params), "low")
    step = jax.vmap(env.step, in_axes=(None, 0, 0, None))
    step_keyed = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    reset = jax.vmap(env.reset, in_axes=(0, None))

    def from_bits(bits):
        if discrete:
            return (bits >> 31).astype(jnp.int32)
        uniform = (bits >> 8).astype(jnp.float32) * (1.0 / (1 << 24))
        return (4.0 * uniform - 2.0)[:, None]

    def fixed_action(t):
        if discrete:
            return jnp.full((num_envs,), t % 2, jnp.int32)
        return jnp.full((num_envs, 1), jnp.where(t % 2 == 0, 2.0, -2.0), jnp.float32)

    def run(key):
        reset_key, action_key, loop_key = jax.random.split(key, 3)
        _, initial = reset(jax.random.split(reset_key, num_envs), params)
        seeds = jax.random.bits(action_key, (num_envs,), jnp.uint32) | jnp.uint32(1)

        def body(carry, t):
            state, bits, total = carry
            if actions == "jax.random":
                k_action, k_step, k_reset = jax.random.split(jax.random.fold_in(loop_key, t), 3)
                if discrete:
                    action = jax.random.randint(k_action, (num_envs,), 0, 2)
                else:
                    action = jax.random.uniform(k_action, (num_envs, 1), minval=-2, maxval=2)
                keys = jax.random.split(k_step, num_envs)
                _, state, reward, terminated, truncated, _ = step_keyed(keys, state, action, params)
                _, fresh = reset(jax.random.split(k_reset, num_envs), params)
            else:
                if actions == "random":
                    bits = _xorshift32(bits)
                    action = from_bits(bits)
                else:
                    action = fixed_action(t)
                _, state, reward, terminated, truncated, _ = step(loop_key, state, action, params)
                fresh = initial
            state = _where_done(terminated | truncated, fresh, state)
            return (state, bits, total + jnp.sum(reward)), None

        init = (initial, seeds, jnp.zeros((), jnp.float32))
        (state, _, total), _ = jax.lax.scan(body, init, jnp.arange(num_steps))
        leaves = jax.tree.leaves(state)
        return total + sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in leaves)

    return jax.jit(run)


class JaxCase:
    def __init__(self, env_id, num_envs, num_steps, actions):
        self.env_id = env_id
        self.num_envs = num_envs
        self.num_steps = num_steps
        self.actions = actions
        self.impl = f"ours, {actions}"
        self.fn = None
        self.compile_s = None
        self.calls = 0

    def setup(self):
        self.fn = make_jax_runner(self.env_id, self.num_envs, self.num_steps, self.actions)
        start = time.perf_counter()
        self.fn(jax.random.key(0)).block_until_ready()
        self.compile_s = time.perf_counter() - start

    def time_once(self):
        self.calls += 1
        start = time.perf_counter()
        self.fn(jax.random.key(self.calls)).block_until_ready()
        return time.perf_counter() - start

    @property
    def steps(self):
        return self.num_envs * self.num_steps


# --------------------------------------------------------------------------------------
# Gymnasium: one env in a Python loop, SyncVectorEnv, numpy-vectorized CartPole.
# --------------------------------------------------------------------------------------


def _random_actions(env_id, shape, seed=0):
    rng = np.random.default_rng(seed)
    if env_id == "CartPole-v1":
        return rng.integers(0, 2, shape)
    return rng.uniform(-2.0, 2.0, (*shape, 1)).astype(np.float32)


GYM_NAMES = {
    "single": "Gymnasium, one env in a Python loop",
    "sync": "Gymnasium SyncVectorEnv",
    "vector": "Gymnasium numpy-vectorized (vector_entry_point)",
}


class GymCase:
    """``kind``: ``single`` (gym.make in a Python loop), ``sync`` (SyncVectorEnv) or
    ``vector`` (make_vec with vectorization_mode="vector_entry_point")."""

    def __init__(self, env_id, kind, num_envs, num_steps):
        self.env_id = env_id
        self.kind = kind
        self.num_envs = num_envs
        self.num_steps = num_steps
        self.impl = GYM_NAMES[kind]
        self.compile_s = None
        self.env = None

    def setup(self):
        import gymnasium as gym

        if self.kind == "single":
            self.env = gym.make(self.env_id)
            actions = _random_actions(self.env_id, (self.num_steps,))
            # Python scalars / small arrays, as an agent would pass them.
            self.actions = [a.item() for a in actions] if actions.ndim == 1 else list(actions)
        else:
            if self.kind == "sync":
                self.env = gym.vector.SyncVectorEnv([lambda: gym.make(self.env_id)] * self.num_envs)
            else:
                self.env = gym.make_vec(
                    self.env_id, num_envs=self.num_envs, vectorization_mode="vector_entry_point"
                )
            self.actions = _random_actions(self.env_id, (self.num_steps, self.num_envs))
        self.env.reset(seed=0)

    def time_once(self):
        env, actions = self.env, self.actions
        start = time.perf_counter()
        if self.kind == "single":
            for action in actions:
                _, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    env.reset()
        else:  # vector envs reset finished envs themselves (autoreset on the next step)
            for action in actions:
                env.step(action)
        return time.perf_counter() - start

    @property
    def steps(self):
        return self.num_envs * self.num_steps


# --------------------------------------------------------------------------------------
# Measurement.
# --------------------------------------------------------------------------------------


def throughput_cases(args):
    """The rows, each sized to take roughly 0.1 to 1 s per call on this machine."""
    scale = 0.2 if args.quick else 1.0

    def n_steps(env_steps, num_envs, cap):
        return max(10, int(min(cap, env_steps / num_envs) * scale))

    cases = []
    for env_id in THROUGHPUT_ENVS:
        cases.append(GymCase(env_id, "single", 1, n_steps(20_000, 1, 20_000)))
        for n in args.sync_sizes:
            cases.append(GymCase(env_id, "sync", n, n_steps(20_000, n, 20_000)))
        if env_id == "CartPole-v1":
            for n in args.vector_sizes:
                cases.append(GymCase(env_id, "vector", n, n_steps(500_000, n, 20_000)))
        for actions in args.actions:
            budget = 200_000 if actions == "jax.random" else 8_000_000
            for n in args.sizes:
                cases.append(JaxCase(env_id, n, n_steps(budget, n, 1_000_000), actions))
    return cases


def measure(cases, rounds):
    """Rounds through all cases in turn (so load from other jobs falls on each alike);
    returns each case's median steps per second."""
    for case in cases:
        case.setup()
    rates = {id(case): [] for case in cases}
    for r in range(rounds):
        for case in cases:
            rates[id(case)].append(case.steps / case.time_once())
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return [
        {
            "env": case.env_id,
            "impl": case.impl,
            "num_envs": case.num_envs,
            "num_steps": case.num_steps,
            "steps_per_s": statistics.median(rates[id(case)]),
            "min": min(rates[id(case)]),
            "max": max(rates[id(case)]),
            "compile_s": case.compile_s,
        }
        for case in cases
    ]


def run_train_script(env_id, timeout_s, cache_dir=None):
    """Runs scripts/train.py for ``env_id`` in a fresh process; returns its result.json
    with the outside wall time added. ``cache_dir``: JAX's persistent compilation cache."""
    cache = {} if cache_dir is None else {"JAX_COMPILATION_CACHE_DIR": str(cache_dir)}
    with tempfile.TemporaryDirectory() as out:
        result = _bench.train_in_fresh_process(env_id, Path(out), timeout_s, cache)
    return {"env": env_id, **result}


def solve(env_id, timeout_s, warm_cache=True):
    """The cold run (no compilation cache), then, with ``warm_cache``, one run that fills a
    fresh persistent compilation cache and a timed run that reads it."""
    result = run_train_script(env_id, timeout_s)
    if warm_cache and "error" not in result:
        with tempfile.TemporaryDirectory() as cache:
            run_train_script(env_id, timeout_s, cache)
            warm = run_train_script(env_id, timeout_s, cache)
        result["warm_process_s"] = warm["process_s"]
        result["warm_final_return_mean"] = warm.get("final_return_mean")
    return result


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def fmt_rate(value):
    if value >= 1e6:
        return f"{value / 1e6:.3g}M"
    return f"{value / 1e3:.3g}k"


def throughput_table(rows, env_id):
    lines = [
        "| implementation | envs | steps / s (median) | range | vs Gymnasium one env |",
        "|---|---:|---:|---:|---:|",
    ]
    env_rows = [r for r in rows if r["env"] == env_id]
    single = next((r for r in env_rows if r["impl"] == GYM_NAMES["single"]), None)
    for r in env_rows:
        vs = f"{r['steps_per_s'] / single['steps_per_s']:.3g}x" if single else "-"
        lines.append(
            f"| {r['impl']} | {r['num_envs']:,} | {fmt_rate(r['steps_per_s'])} | "
            f"{fmt_rate(r['min'])}-{fmt_rate(r['max'])} | {vs} |"
        )
    return "\n".join(lines)


def find_rate(rows, env_id, impl, num_envs=None):
    for r in rows:
        if r["env"] == env_id and r["impl"] == impl and num_envs in (None, r["num_envs"]):
            return r["steps_per_s"]
    return None


def verdict(value, need):
    if value is None:
        return "not measured"
    mark = "met" if value >= need else "**missed**"
    return f"{value:.3g}x ({mark})"


def target_rows(rows):
    env_id = "CartPole-v1"
    ours = [r for r in rows if r["env"] == env_id and r["impl"] == "ours, random"]
    single = find_rate(rows, env_id, GYM_NAMES["single"])
    lines = ["| target | need | ours | Gymnasium | ratio |", "|---|---:|---:|---:|---:|"]
    if ours and single:
        best = max(ours, key=lambda r: r["steps_per_s"])
        lines.append(
            f"| CartPole, ours (best, {best['num_envs']:,} envs) vs Gymnasium one env | "
            f"{TARGET_VS_SINGLE:g}x | {fmt_rate(best['steps_per_s'])} | {fmt_rate(single)} | "
            f"{verdict(best['steps_per_s'] / single, TARGET_VS_SINGLE)} |"
        )
    for n in VECTOR_TARGET_SIZES:
        mine = find_rate(rows, env_id, "ours, random", n)
        theirs = find_rate(rows, env_id, GYM_NAMES["vector"], n)
        if mine and theirs:
            lines.append(
                f"| CartPole, {n:,} envs: ours vs Gymnasium numpy-vectorized | "
                f"{TARGET_VS_VECTOR:g}x | {fmt_rate(mine)} | {fmt_rate(theirs)} | "
                f"{verdict(mine / theirs, TARGET_VS_VECTOR)} |"
            )
    return "\n".join(lines)


def solve_table(results):
    lines = [
        "| task | needs | final return (100 episodes) | generations | env steps | "
        "training loop (s) | process (s) | process, warm cache (s) | strategy, policy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        need = SOLVE_ENVS[r["env"]]
        if "error" in r:
            lines.append(
                f"| {r['env']} | {need:g} | failed | - | - | - | {r['process_s']:.1f} | - | - |"
            )
            continue
        cfg = r["config"]
        policy = cfg["policy"]
        if policy == "mlp":
            policy += " " + "x".join(str(h) for h in cfg["hidden_sizes"])
        ok = "" if r["final_return_mean"] >= need else " **(missed)**"
        warm = f"{r['warm_process_s']:.1f}" if "warm_process_s" in r else "-"
        lines.append(
            f"| {r['env']} | {need:g} | {r['final_return_mean']:.1f} ± "
            f"{r['final_return_std']:.1f}{ok} | {r['generations']} | {r['env_steps']:,} | "
            f"{r['wall_time_s']:.1f} | {r['process_s']:.1f} | {warm} | {cfg['strategy']}, "
            f"{policy}, population {cfg['population_size']} |"
        )
    return "\n".join(lines)


def settings_table(results):
    keys = (
        "strategy",
        "policy",
        "population_size",
        "sigma",
        "learning_rate",
        "episodes_per_member",
        "common_random_numbers",
        "normalize_obs",
        "eval_every",
        "eval_episodes",
        "target_return",
    )
    lines = ["| task | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for r in results:
        if "config" not in r:
            continue
        cfg = dict(r["config"])
        if cfg["policy"] == "mlp":
            cfg["policy"] = "mlp " + "x".join(str(h) for h in cfg["hidden_sizes"])
        cells = ["default" if cfg[k] is None else str(cfg[k]) for k in keys]
        lines.append(f"| {r['env']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_metadata(args, command):
    machine = f"{_bench.machine_description()}, load average {_bench.load_average()}"
    versions = _bench.package_versions(("jax", "jaxlib", "gymnasium", "numpy"))
    return {
        "machine": f"{machine} (at the end of the run)",
        "software": f"{versions}; Python {platform.python_version()}; {_bench.library_version()}",
        "date": _bench.today(),
        "command": command,
        "rounds": args.rounds,
    }


def build_section(meta, rows, solved):
    text = _bench.prose("envs")
    parts = [SECTION_TITLE, "", _bench.fill(text["header"], **meta)]
    if rows:
        parts += ["", _bench.fill(text["throughput"], rounds=meta["rounds"])]
        for env_id in THROUGHPUT_ENVS:
            table = throughput_table(rows, env_id)
            parts += ["", _bench.fill(text["throughput_env"], env_id=env_id, table=table)]
        parts += ["", _bench.fill(text["targets"], table=target_rows(rows))]
        ratios = prng_ratios(rows)
        if ratios:
            parts += ["", _bench.fill(text["why"], ratios="; ".join(ratios))]
    if solved:
        table, settings = solve_table(solved), settings_table(solved)
        parts += ["", _bench.fill(text["solve"], table=table, settings=settings)]
    return "\n".join(parts) + "\n"


def prng_ratios(rows):
    """``ours, random`` over ``ours, jax.random`` on CartPole, per number of envs."""
    ratios = []
    env_id = "CartPole-v1"
    for n in sorted({r["num_envs"] for r in rows if r["env"] == env_id}):
        fast = find_rate(rows, env_id, "ours, random", n)
        slow = find_rate(rows, env_id, "ours, jax.random", n)
        if fast and slow:
            ratios.append(f"{n:,} env{'s' if n > 1 else ''}: {fast / slow:.3g}x")
    return ratios


# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small budgets (smoke test)")
    parser.add_argument("--sizes", type=int, nargs="+", help="our numbers of envs")
    parser.add_argument("--vector-sizes", type=int, nargs="+", help="numpy-vectorized sizes")
    parser.add_argument("--sync-sizes", type=int, nargs="+", help="SyncVectorEnv sizes")
    parser.add_argument(
        "--actions", nargs="+", choices=["random", "fixed", "jax.random"], help="our variants"
    )
    parser.add_argument("--rounds", type=int, help="passes through all throughput rows")
    parser.add_argument("--solve", nargs="*", help="tasks to solve (default: all; none: skip)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per solve")
    _bench.add_output_options(parser)
    args = parser.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([1, 64, 1024] if quick else [1, 64, 1024, 16384])
    args.vector_sizes = args.vector_sizes or [64, 1024]
    args.sync_sizes = args.sync_sizes or [64]
    args.actions = args.actions or (["random"] if quick else ["random", "fixed", "jax.random"])
    args.rounds = args.rounds or (1 if quick else 5)
    if args.solve is None:
        args.solve = ["CartPole-v1"] if quick else list(SOLVE_ENVS)
    unknown = [env for env in args.solve if env not in SOLVE_ENVS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; choose from {list(SOLVE_ENVS)}")
    if args.output is None and not quick:
        args.output = _bench.BENCHMARKS_DOC
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        meta, rows, solved = saved["meta"], saved["throughput"], saved["solve"]
    else:
        rows = []
        if not args.skip_throughput:
            cases = throughput_cases(args)
            print(f"throughput: {len(cases)} rows x {args.rounds} rounds", file=sys.stderr)
            rows = measure(cases, args.rounds)
        solved = []
        for env_id in args.solve:
            print(f"solving {env_id}", file=sys.stderr, flush=True)
            solved.append(solve(env_id, args.timeout, warm_cache=not args.quick))
        meta = run_metadata(args, _bench.reproduce_command(COMMAND, argv))
    section = build_section(meta, rows, solved)
    print(section)
    if args.json:
        payload = {"meta": meta, "throughput": rows, "solve": solved}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    if args.output:
        _bench.write_section(args.output, SECTION_TITLE, section)
        print(f"wrote the section {SECTION_TITLE!r} of {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
