"""Peak memory and speed of ``minimize``'s automatic chunk against whole-population evaluation.

With no ``chunk_size``, ``minimize`` and the strategies hold at most
``sampling.DEFAULT_MEMORY_BUDGET`` bytes of member noise at once ("auto"); "whole" is the
old default, every member at once (``chunk_size=population_size`` for the strategy and for
``minimize``). Each case runs ``minimize`` of the sphere from zeros in a fresh process,
which reports its peak resident memory (``VmHWM``) and its wall times: the first call
(compilation included) and the median of the repeats after it.

    python scripts/bench_memory.py --json results.json   # about 5 minutes
    python scripts/bench_memory.py --from-json results.json  # after editing the prose
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import _bench

SECTION_TITLE = "## Memory defaults: automatic chunks"
GIB = 2**30
# The whole population holds about this many copies of its noise at once (noise, members
# and the objective's batch), measured: 11.2 GB for 10,000 x 100,000 float32 (4 GB).
WHOLE_COPIES = 2.8


def run_case(case: dict) -> dict:
    """Runs one case in this process and returns its measurements."""
    import jax.numpy as jnp

    from es_toolkit import minimize
    from es_toolkit.strategies import base, open_es

    n, d = case["population"], case["d"]
    whole = case["mode"] == "whole"
    strategy = open_es(n, chunk_size=n if whole else None)
    options = {
        "strategy": strategy,
        "num_generations": case["generations"],
        "progress": False,
        "chunk_size": n if whole else None,
    }
    x0 = jnp.zeros(d)

    def sphere(x):
        return jnp.sum(x**2)

    times = []
    for _ in range(1 + case["repeats"]):
        start = time.perf_counter()
        result = minimize(sphere, x0, **options)
        float(result.best_value)
        times.append(time.perf_counter() - start)
    chunk = base.evaluation_chunk_size(strategy, x0, options["chunk_size"])
    return {
        **case,
        "chunk": chunk or n,
        "first_s": times[0],
        "median_s": statistics.median(times[1:]) if case["repeats"] else None,
        "peak_rss_bytes": peak_rss_bytes(),
        "best_value": float(result.best_value),
    }


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``VmHWM`` of /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def available_bytes() -> int:
    """``MemAvailable`` of /proc/meminfo."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def whole_estimate_bytes(case: dict) -> float:
    return WHOLE_COPIES * case["population"] * case["d"] * 4


def memory_cases(args) -> list[dict]:
    """The large case in both modes and the populations below it that show the scaling."""
    return [
        {"d": args.d, "population": n, "mode": mode, "generations": 2, "repeats": 0}
        for n in (*args.scaling_populations, args.population)
        for mode in ("auto", "whole")
    ]


def speed_cases(args) -> list[dict]:
    """A small problem (below the budget: both modes are one program) and one just over it."""
    small = {"d": 100, "population": 64, "generations": 2000, "repeats": args.repeats}
    over = {"d": 10_000, "population": 10_000, "generations": 2, "repeats": args.repeats}
    return [{**case, "mode": mode} for case in (small, over) for mode in ("auto", "whole")]


def fastest_round(rounds: list[list[dict]]) -> list[dict]:
    """Per case, the round with the lowest median: other jobs on the machine only add time."""
    return [
        min(results, key=lambda r: r.get("median_s", float("inf")))
        for results in zip(*rounds, strict=True)
    ]


def measure(case: dict, timeout_s: float) -> dict:
    """``case`` in a fresh process, or a note saying why it did not run."""
    if case["mode"] == "whole" and whole_estimate_bytes(case) > 0.8 * available_bytes():
        need = whole_estimate_bytes(case) / GIB
        return {**case, "skipped": f"needs about {need:.1f} GiB, more than this machine has free"}
    command = [sys.executable, __file__, "--case", json.dumps(case)]
    return {**case, **_bench.run_for_result(command, timeout_s)}


def gib(result: dict) -> str:
    if "peak_rss_bytes" in result:
        return f"{result['peak_rss_bytes'] / GIB:.2f}"
    return result.get("skipped") or result.get("error", "-")


def seconds(result: dict) -> str:
    return f"{result['first_s']:.1f}" if "first_s" in result else "-"


def memory_table(results: list[dict]) -> str:
    rows = [
        "| population | d | noise of the population (GiB) | auto chunk | peak RSS, auto (GiB) "
        "| peak RSS, whole (GiB) | time, auto (s) | time, whole (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in sorted({r["population"] for r in results}):
        auto = next(r for r in results if r["population"] == n and r["mode"] == "auto")
        whole = next(r for r in results if r["population"] == n and r["mode"] == "whole")
        noise = n * auto["d"] * 4 / GIB
        rows.append(
            f"| {n:,} | {auto['d']:,} | {noise:.2f} | {auto.get('chunk', '-'):,} "
            f"| {gib(auto)} | {gib(whole)} | {seconds(auto)} | {seconds(whole)} |"
        )
    return "\n".join(rows)


def speed_table(results: list[dict]) -> str:
    rows = [
        "| population | d | generations | auto chunk | auto, median (s) | whole, median (s) "
        "| auto / whole |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in sorted({(r["population"], r["d"]) for r in results}):
        auto, whole = (
            next(r for r in results if (r["population"], r["d"]) == key and r["mode"] == mode)
            for mode in ("auto", "whole")
        )
        if "median_s" not in auto or "median_s" not in whole:
            rows.append(f"| {key[0]:,} | {key[1]:,} | - | - | {gib(auto)} | {gib(whole)} | - |")
            continue
        ratio = auto["median_s"] / whole["median_s"]
        rows.append(
            f"| {key[0]:,} | {key[1]:,} | {auto['generations']} | {auto['chunk']:,} "
            f"| {auto['median_s']:.3f} | {whole['median_s']:.3f} | {ratio:.2f} |"
        )
    return "\n".join(rows)


def scaling_note(results: list[dict]) -> str:
    """Peak RSS per member of the whole population, from the two largest measured sizes."""
    whole = sorted(
        (r for r in results if r["mode"] == "whole" and "peak_rss_bytes" in r),
        key=lambda r: r["population"],
    )
    if len(whole) < 2:
        return "too few whole-population sizes measured to fit a slope"
    a, b = whole[-2], whole[-1]
    per_member = (b["peak_rss_bytes"] - a["peak_rss_bytes"]) / (b["population"] - a["population"])
    copies = per_member / (4 * b["d"])
    return (
        f"{per_member / 2**20:.2f} MiB per member ({copies:.1f} copies of a member's "
        f"{4 * b['d'] / 2**20:.2f} MiB of noise)"
    )


def render(memory: list[dict], speed: list[dict], meta: dict) -> str:
    from es_toolkit import sampling

    text = _bench.prose("memory")
    budget = f"{sampling.DEFAULT_MEMORY_BUDGET / 2**20:.0f} MiB"
    parts = [
        SECTION_TITLE,
        "",
        _bench.fill(text["header"], budget=budget, **meta),
        "",
        _bench.fill(
            text["memory"], table=memory_table(memory), scaling=scaling_note(memory), budget=budget
        ),
        "",
        _bench.fill(text["speed"], table=speed_table(speed), **meta),
    ]
    return "\n".join(parts) + "\n"


def measure_all(args, argv) -> dict:
    """Every case, each in a fresh process, with what describes the run."""
    memory = []
    for case in memory_cases(args):
        memory.append(measure(case, args.timeout))
        print(json.dumps(memory[-1]), flush=True)
    rounds = []
    for _ in range(args.rounds):
        rounds.append([measure(case, args.timeout) for case in speed_cases(args)])
        print(json.dumps(rounds[-1]), flush=True)
    versions = _bench.package_versions(("jax", "jaxlib", "numpy"))
    meta = {
        "machine": f"{_bench.machine_description()}, load average {_bench.load_average()}",
        "software": f"{versions}; {_bench.library_version()}",
        "date": _bench.today(),
        "repeats": args.repeats,
        "rounds": args.rounds,
        "command": _bench.reproduce_command("python scripts/bench_memory.py", argv),
    }
    return {"meta": meta, "memory": memory, "speed": fastest_round(rounds)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--d", type=int, default=100_000, help="parameters of the large case")
    parser.add_argument("--population", type=int, default=10_000, help="the large population")
    parser.add_argument(
        "--scaling-populations",
        type=int,
        nargs="*",
        default=[2_500, 5_000],
        help="smaller populations measured in both modes, to show the scaling",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per speed case")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved speed rounds")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    _bench.add_output_options(parser)
    args = parser.parse_args(argv)
    if args.case:
        _bench.print_result(run_case(json.loads(args.case)))
        return 0
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        results = measure_all(args, sys.argv[1:] if argv is None else argv)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    section = render(results["memory"], results["speed"], results["meta"])
    output = args.output or _bench.BENCHMARKS_DOC
    _bench.write_section(output, SECTION_TITLE, section)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
