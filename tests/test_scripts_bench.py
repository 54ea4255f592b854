"""The benchmark scripts: their shared helper, their Markdown prose and a smoke run of each.

Full benchmark runs take minutes to hours, so the sections are rendered here from made-up
measurements (every placeholder of the prose must be filled), and the processes run only
the quickest thing each script can do.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

import _bench  # noqa: E402
import bench_accelerator  # noqa: E402
import bench_envs  # noqa: E402
import bench_perturb  # noqa: E402
import bench_strategies  # noqa: E402

SCRIPT_NAMES = sorted(path.name for path in SCRIPTS.glob("bench_*.py"))


def run_script(*args, timeout=120):
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


# --------------------------------------------------------------------------------------
# The helper.
# --------------------------------------------------------------------------------------


def test_fill_replaces_placeholders_and_keeps_other_braces():
    text = "Took {seconds} s for {n_envs} envs; a dict {'a': 1} and {Not_a_field} stay."
    filled = _bench.fill(text, seconds=1.5, n_envs=64)
    assert filled == "Took 1.5 s for 64 envs; a dict {'a': 1} and {Not_a_field} stay."


def test_fill_names_a_missing_placeholder():
    with pytest.raises(KeyError, match=r"\{table\}"):
        _bench.fill("see {table}")


def test_prose_splits_fragments(tmp_path, monkeypatch):
    (tmp_path / "demo.md").write_text(
        "<!-- fragment: one -->\nFirst {x}.\n\n<!-- fragment: two -->\n\nSecond.\n"
    )
    monkeypatch.setattr(_bench, "PROSE_DIR", tmp_path)
    assert _bench.prose("demo") == {"one": "First {x}.", "two": "Second."}


def test_write_section_replaces_only_its_own_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    _bench.write_section(doc, "## A", "## A\n\nold a\n")
    _bench.write_section(doc, "## B", "## B\n\nb\n")
    _bench.write_section(doc, "## A", "## A\n\nnew a\n")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n")
    assert text.endswith("## A\n\nnew a\n\n## B\n\nb\n")
    assert "old a" not in text


def test_previous_subsection_stops_at_the_next_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("## X\n\n### Learning\n\nnot this\n\n## A\n\n### Learning\n\nkept\n\n## B\n")
    assert _bench.previous_subsection(doc, "## A", "### Learning") == "### Learning\n\nkept"
    assert _bench.previous_subsection(doc, "## C", "### Learning") == ""


def test_reproduce_command_drops_output_options():
    argv = ["--quick", "--json", "r.json", "--output=doc.md", "--no-docs", "--rounds", "3"]
    command = _bench.reproduce_command("bench", argv, output_flags=("--no-docs",))
    assert command == "bench --quick --rounds 3"


def test_run_for_result_reads_the_result_line_or_reports_the_failure():
    result_line = f"print('noise'); print({_bench.RESULT_PREFIX!r} + '{{\"x\": 1}}')"
    assert _bench.run_for_result([sys.executable, "-c", result_line], 60) == {"x": 1}
    failed = _bench.run_for_result([sys.executable, "-c", "raise SystemExit('boom')"], 60)
    assert failed["error"].startswith("exit code 1")
    assert "boom" in failed["error"]


# --------------------------------------------------------------------------------------
# Sections rendered from made-up measurements.
# --------------------------------------------------------------------------------------


def fake_perturb_results(args):
    timing = bench_perturb.timing_configs(
        args.dims, args.num_samples, args.sigma, args.chunk_size, args.repeats, 1e9
    )
    side = bench_perturb.interleaved_configs(
        args.dims, args.num_samples, args.sigma, args.chunk_size, args.repeats
    )
    sweep = bench_perturb.chunk_sweep_configs(
        args.sweep_d, args.num_samples, args.sigma, [10, 40], args.sweep_repeats
    )
    for index, config in enumerate(timing + side + sweep):
        config["loads"] = [1.5]
        if config["skip"]:
            config["result"] = {"skipped": True}
        elif config["kind"] == "interleaved":
            config["result"] = {"medians_s": {kind: 0.1 + index for kind in config["kinds"]}}
        else:
            config["result"] = {
                "time_s": 0.1 * (index + 1),
                "cpu_s": 0.2,
                "compile_s": 1.0,
                "peak_rss_mb": 300.0 + index,
                "base_rss_mb": 250.0,
                "xla_temp_mb": 2.0,
            }
    accuracy = {
        option[0]: {str(s): 0.5 for s in args.sigmas} for option in bench_perturb.ACCURACY_OPTIONS
    }
    accuracy["max_abs_diff_default_vs_optax"] = 0.0
    return timing, side, sweep, accuracy


def test_perturb_section_renders_and_rebuilds_from_json(tmp_path):
    argv = ["--dims", "1e3", "1e7"]
    args = bench_perturb.parse_args(argv)
    results = fake_perturb_results(args)
    meta = bench_perturb.run_metadata(argv, "es_toolkit at commit abc")
    section = bench_perturb.build_section(args, meta, *results)
    assert section.startswith(bench_perturb.SECTION_TITLE + "\n\nMachine: ")
    assert ".venv/bin/python scripts/bench_perturb.py --dims 1e3 1e7\n" in section
    assert "| 1e+07 | optax `jax.grad` | - | does not fit |" in section
    assert "### Chunk size at d=1e+06" in section
    assert "gradient entries 0." in section
    saved = tmp_path / "perturb.json"
    names = ("timing", "side_by_side", "sweep", "accuracy")
    saved.write_text(json.dumps({"meta": meta, **dict(zip(names, results, strict=True))}))
    doc = tmp_path / "benchmarks.md"
    proc = run_script("scripts/bench_perturb.py", "--from-json", str(saved), "--output", str(doc))
    assert proc.returncode == 0, proc.stderr
    assert doc.read_text().endswith(section)


def test_perturb_floor_sums_f_over_the_mirrored_members():
    """The floor's value is sum_j f(x + sigma z_j) + f(x - sigma z_j), with the fast path's
    z_j = ``optax.tree.random_like(fold_in(key, j), x, normal)``: that sum written out."""
    num_samples, sigma = 12, 0.3
    key, x = jax.random.key(3), jnp.linspace(-1.0, 1.0, 5)
    floor = bench_perturb.make_floor(bench_perturb.objective("abs"), num_samples, sigma, 4)
    expected = 0.0
    for j in range(num_samples // 2):
        z = optax.tree.random_like(jax.random.fold_in(key, j), x, jax.random.normal)
        expected += jnp.sum(jnp.abs(x + sigma * z)) + jnp.sum(jnp.abs(x - sigma * z))
    assert jnp.allclose(jax.jit(floor)(key, x), expected, rtol=1e-5)


def test_envs_section_renders():
    gym_names = bench_envs.GYM_NAMES
    rows = [
        {"env": env, "impl": impl, "num_envs": n, "num_steps": 10, "steps_per_s": rate,
         "min": rate, "max": rate, "compile_s": 1.0}
        for env in bench_envs.THROUGHPUT_ENVS
        for impl, n, rate in (
            (gym_names["single"], 1, 2e4),
            (gym_names["vector"], 64, 1e6),
            ("ours, random", 64, 4e6),
            ("ours, jax.random", 64, 1e6),
        )
    ]  # fmt: skip
    config = {key: 1 for key in ("population_size", "sigma", "learning_rate", "eval_every")}
    config |= {"strategy": "open_es", "policy": "linear", "hidden_sizes": []}
    config |= {key: None for key in ("episodes_per_member", "common_random_numbers")}
    config |= {"normalize_obs": True, "eval_episodes": 10, "target_return": 475.0}
    solved = [
        {"env": "CartPole-v1", "process_s": 9.0, "config": config, "final_return_mean": 500.0,
         "final_return_std": 0.0, "generations": 20, "env_steps": 1000, "wall_time_s": 5.0},
        {"env": "Pendulum-v1", "error": "failed", "process_s": 2.0},
    ]  # fmt: skip
    meta = {"machine": "M", "software": "S", "date": "D", "command": "C", "rounds": 3}
    section = bench_envs.build_section(meta, rows, solved)
    assert (
        "| CartPole, 64 envs: ours vs Gymnasium numpy-vectorized | 2x | 4M | 1M | 4x (met) |"
        in section
    )
    assert "on CartPole at 64 envs: 4x." in section
    assert "| Pendulum-v1 | -200 | failed |" in section


def test_strategies_section_rebuilds_from_json_without_evosax(tmp_path):
    argv = ["--objectives", "sphere", "--dims", "100", "--seeds", "3"]
    args = bench_strategies.parse_args(argv)
    rows = []
    for strategy in args.strategies:
        row = {"strategy": strategy, "objective": "sphere", "d": 100, "population_size": 256,
               "num_generations": 1000, "f_x0": 30.0,
               "hyperparameters": bench_strategies.hyperparameters(strategy, "sphere", 100),
               "speed_ratio": 1.5, "speed_ratio_plain": 1.4}  # fmt: skip
        for side in ("ours", "ours_plain", "evosax"):
            row[side] = {"gen_per_s": 1000.0, "finals": [1e-3, 2e-3, 3e-3]}
        rows.append(row)
    meta = {"argv": argv, "elapsed_s": 60.0, "machine": "M", "python": "3", "versions": "V",
            "openblas_threads": "1", "date": "D"}  # fmt: skip
    saved = tmp_path / "strategies.json"
    saved.write_text(json.dumps({"meta": meta, "rows": rows, "memory": [], "profile": {}}))
    proc = run_script("scripts/bench_strategies.py", "--from-json", str(saved), "--no-docs")
    assert proc.returncode == 0, proc.stderr
    assert "met on 4 of 4 rows; ratio in `minimize`'s layout median 1.50x" in proc.stdout
    assert "bench_strategies.py --objectives sphere --dims 100 --seeds 3\n" in proc.stdout


# --------------------------------------------------------------------------------------
# Processes: each script starts; the quickest real measurements run.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_script_starts(script):
    proc = run_script(f"scripts/{script}", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: ")


def test_perturb_worker_measures_one_configuration():
    config = {"kind": "fast", "objective": "sphere", "d": 100, "num_samples": 20,
              "sigma": 0.1, "chunk_size": 10, "repeats": 1}  # fmt: skip
    command = [sys.executable, "scripts/bench_perturb.py", "--worker", json.dumps(config)]
    result = _bench.run_for_result(command, 120)
    assert result["time_s"] > 0
    assert result["peak_rss_mb"] >= result["base_rss_mb"] > 0  # a tiny case may add nothing


def test_strategies_without_evosax_says_how_to_install_it():
    try:
        import evosax  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("evosax is installed here")
    proc = run_script("scripts/bench_strategies.py", "--quick")
    assert proc.returncode == 2
    assert bench_strategies.INSTALL_COMMAND in proc.stderr


def test_scaling_bytes_table_quick():
    proc = run_script("scripts/bench_scaling.py", "--quick", "--bytes-only", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "| 1,000 | 256 | all-gather 256x1, all-reduce 1000 | 5,024 | 1,024,000 |" in proc.stdout


@pytest.mark.skipif(
    importlib.util.find_spec("cocoex") is None,
    reason="cocoex (coco-experiment) is not installed here: the BBOB benchmark runs in "
    ".venv-bench (see scripts/bench_bbob.py)",
)
def test_bbob_solves_the_2d_sphere_with_ours_and_pycma(tmp_path):
    """f1 (the sphere), 2-D, instance 1, 1,000 d evaluations: both reach f_opt + 1e-8 in a
    few hundred evaluations (pycma needs about 200), cocoex's observer agrees, and the
    section reports it."""
    doc, saved = tmp_path / "benchmarks.md", tmp_path / "bbob.json"
    proc = run_script(
        "scripts/bench_bbob.py",
        *("--dimensions", "2", "--functions", "1", "--instances", "1"),
        *("--budget-multiplier", "1000", "--optimizers", "ours-cma", "pycma"),
        *("--no-ecdf", "--workdir", str(tmp_path), "--json", str(saved), "--output", str(doc)),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = json.loads(saved.read_text())["records"]
    assert sorted(r["optimizer"] for r in records) == ["ours-cma", "pycma"]
    for record in records:
        assert record["solved"], record
        assert record["coco_target_hit"], record
        assert record["best_precision"] <= 1e-8
        assert 0 < record["evaluations"] <= 2000
    assert (tmp_path / "exdata" / "ours-cma" / "d02").is_dir()
    assert "| ours: `cma_es` + BIPOP | 1/1 | 1/1 |" in doc.read_text()


@pytest.mark.skipif(
    importlib.util.find_spec("cma") is None,
    reason="pycma (cma) is not installed here: the CMA-ES benchmark runs in .venv-bench "
    "(see scripts/bench_cma.py)",
)
def test_cma_quick_times_every_side_and_runs_the_large_scale_part(tmp_path):
    """bench_cma --quick in float32: every importable side is timed at d = 10 (evosax is
    left out where it is not installed), and 20 generations of ours (and evosax's)
    LM-MA-ES and sep-CMA-ES from x0 = 1 with sigma 1 lower the ellipsoid, which falls
    along most directions from there, and stay finite."""
    saved = tmp_path / "cma.json"
    proc = run_script("scripts/bench_cma.py", "--quick", "--x64-dims", "--json", str(saved))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(saved.read_text())
    expected = ["ours", "ours_scan", "evosax", "pycma"]
    if importlib.util.find_spec("evosax") is None:
        expected.remove("evosax")
    (speed,) = results["speed"]
    assert (speed["d"], speed["x64"], sorted(speed["sides"])) == (10, False, sorted(expected))
    for side in speed["sides"].values():
        assert side["times_s"]["60"]
    assert [row["strategy"] for row in results["large"]] == ["lm_ma_es", "sep_cma_es"]
    for row in results["large"]:
        for library in row["libraries"].values():
            assert not library["nonfinite"]
            assert library["final"] < library["curve"][0][1]
    assert "## CMA-ES family: speed and large scale" in proc.stdout
    assert "| LM-MA-ES | ours |" in proc.stdout


def test_python_objectives_quick_measures_every_part_and_writes_only_where_told(tmp_path):
    """bench_python_objectives --quick: ours (and pycma where installed) timed at d = 10,
    population 10; every parallel case runs its generations, none faster than its
    workers could sleep through 20 ms per evaluation; the section goes to --output only
    (docs/ untouched) and --from-json rebuilds the same section."""
    docs = [ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "results" / "python_objectives.json"]
    before = [path.stat().st_mtime_ns if path.exists() else None for path in docs]
    saved, doc = tmp_path / "python_objectives.json", tmp_path / "benchmarks.md"
    script = "scripts/bench_python_objectives.py"
    proc = run_script(script, "--quick", "--json", str(saved), "--output", str(doc))
    assert proc.returncode == 0, proc.stderr
    results = json.loads(saved.read_text())
    (row,) = results["overhead"]
    expected = ["cma_es", "snes"] + (["pycma"] if importlib.util.find_spec("cma") else [])
    assert (row["d"], row["population"], sorted(row["sides"])) == (10, 10, sorted(expected))
    for side in row["sides"].values():
        assert len(side["block_ms"]) == 2
        assert side["ms_per_generation"] > 0
    parallel = results["parallel"]
    kinds = {(run["objective"], run["evaluator"]) for run in parallel["runs"]}
    expected_runs = {("sleep", "workers"), ("cpu", "workers")}
    if importlib.util.find_spec("distributed"):
        expected_runs |= {("sleep", "dask_executor"), ("sleep", "dask")}
    assert kinds == expected_runs
    for run in parallel["runs"]:
        assert len(run["generation_s"]) == run["generations"] - 1
        if run["objective"] == "sleep":  # each worker sleeps 20 ms per evaluation
            assert run["evaluations_per_s"] <= run["workers"] / 0.02
    section = doc.read_text()
    assert "## Plain Python objectives: ask/tell overhead and parallel evaluation" in section
    assert "| 10 | 10 | `snes` |" in section
    assert "| sleep 20 ms | `workers=2` |" in section
    assert [path.stat().st_mtime_ns if path.exists() else None for path in docs] == before
    rebuilt = tmp_path / "rebuilt.md"
    proc = run_script(script, "--from-json", str(saved), "--output", str(rebuilt))
    assert proc.returncode == 0, proc.stderr
    assert rebuilt.read_text() == section


def test_scaling_from_json_rewrites_only_the_accelerator_subsection(tmp_path):
    """--from-json inserts the accelerator subsection (table, picture link) before the
    bytes one, then replaces it on a second run; the rest of the section and the other
    sections stay as they were, and the picture is drawn next to the Markdown file."""
    doc, saved = tmp_path / "benchmarks.md", tmp_path / "accelerator-x1.json"
    before = "## Other\n\nkept\n\n"
    section = (
        "## Scaling over devices and processes\n\nheader\n\n### Generations per second\n\n"
        "gens\n\n### Bytes moved between devices per generation (OpenAI-ES, 4 devices)\n\n"
        "bytes\n"
    )
    after = "\n## Next\n\nalso kept\n"
    doc.write_text(before + section + after)
    rows = [
        {"workload": "mlp", "population": 256, "rates": [10.0, 19.5]},
        {"workload": "cartpole", "population": 256, "rates": [5.0, 9.0]},
    ]
    result = {"device": "Chip X1", "platform": "gpu", "count": 2, "jax": "9.9",
              "max_abs_difference": 0.0, "rows": rows}  # fmt: skip
    for rate in (19.5, 30.0):
        result["rows"][0]["rates"][1] = rate
        saved.write_text(json.dumps(result))
        proc = run_script(
            "scripts/bench_scaling.py", "--from-json", str(saved), "--output", str(doc)
        )
        assert proc.returncode == 0, proc.stderr
    text = doc.read_text()
    assert text.startswith(before + section.split("### Bytes")[0])
    assert text.endswith("### Bytes moved between devices per generation (OpenAI-ES, 4 devices)"
                         "\n\nbytes\n" + after)  # fmt: skip
    assert text.count("### On an accelerator: 2 x Chip X1 (jax 9.9)\n") == 1
    assert "| MLP regression, d = 4,801 | 256 | 10.0 | 30.0 |" in text
    assert "19.5" not in text
    assert "](images/accelerator_x1.png)" in text
    assert (tmp_path / "images" / "accelerator_x1.png").stat().st_size > 0


def test_learning_curves_quick_trains_two_generations_and_redraws_from_json(tmp_path):
    """plot_learning_curves --quick on CartPole-v1: a run capped at 2 of its 100 tuned
    generations, whose curve has one entry per generation with growing env steps; the
    section, the JSON and the picture go where told (docs/ untouched), and --from-json
    rebuilds the same section and picture."""
    docs = [ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "results" / "learning_curves.json"]
    before = [path.stat().st_mtime_ns for path in docs]
    saved, doc = tmp_path / "curves.json", tmp_path / "benchmarks.md"
    script = "scripts/plot_learning_curves.py"
    options = ("--tasks", "CartPole-v1", "--json", str(saved), "--output", str(doc))
    proc = run_script(script, "--quick", *options, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (task,) = json.loads(saved.read_text())["tasks"]
    assert (task["env"], task["threshold"], task["generations"]) == ("CartPole-v1", 475.0, 2)
    assert (task["num_generations"], task["capped"]) == (100, True)
    curve = task["curve"]
    assert curve["generation"] == [0, 1]
    assert 0 < curve["env_steps"][0] < curve["env_steps"][1]
    assert all(1 <= value <= 500 for value in curve["return_mean"])  # CartPole's range
    assert task["evaluations"]["generation"] == [1]
    section = doc.read_text()
    assert "| CartPole-v1 | open_es, linear, 64 | 2 of 100 (capped) |" in section
    assert "](images/learning_curves.png)" in section
    picture = tmp_path / "images" / "learning_curves.png"
    drawn = picture.read_bytes()
    picture.unlink()
    rebuilt = tmp_path / "rebuilt.md"
    proc = run_script(script, "--from-json", str(saved), "--output", str(rebuilt))
    assert proc.returncode == 0, proc.stderr
    assert rebuilt.read_text() == section
    assert picture.read_bytes() == drawn
    assert [path.stat().st_mtime_ns for path in docs] == before


# --------------------------------------------------------------------------------------
# bench_accelerator: its clock, its section from made-up rows and a CPU quick run.
# --------------------------------------------------------------------------------------


def test_accelerator_clock_gives_each_group_its_cumulative_share():
    clock = bench_accelerator.Clock(100.0, ["envs", "strategies"])
    shares = bench_accelerator.GROUP_SHARES
    envs_end = 100.0 * shares["envs"] / (shares["envs"] + shares["strategies"])
    assert clock.deadline["envs"] - clock.start == pytest.approx(envs_end)
    assert clock.deadline["strategies"] - clock.start == pytest.approx(100.0)


def test_accelerator_section_shows_ratios_targets_and_skipped_rows():
    meta = {"device": "NVIDIA H100", "platform": "gpu", "jax": "0.10.2", "versions": "V",
            "date": "D", "command": "C", "elapsed_s": 270.0, "quick": False,
            "time_limit_s": 280.0}  # fmt: skip
    results = {
        "meta": meta,
        "strategies": [
            {"strategy": "open_es", "d": 1000, "population": 256, "generations": 20,
             "ours": {"gen_per_s": 2000.0}, "evosax": {"gen_per_s": 1000.0}},
            {"strategy": "cma_es", "d": 10_000, "population": 256, "generations": 2,
             "ours": {"gen_per_s": 5.0}, "evosax": {"gen_per_s": 10.0}},
            {"strategy": "snes", "d": 1_000_000, "population": 16384, "skipped": "time limit"},
        ],
        "envs": [{"env": "CartPole-v1", "num_envs": 10_000, "steps": 100,
                  "steps_per_s": 3e8}],
        "brax": [{"env": "ant", "population": 256, "episode_length": 1000,
                  "ours": {"skipped": "adapter not available"},
                  "brax_es": {"steps_per_s": 1e6}}],
        "solve": [{"env": "halfcheetah", "population": 4096,
                   "ours": {"seconds": 120.0, "best": 3100.0},
                   "brax_es": {"seconds": None, "best": 2500.0, "budget_s": 60.0}}],
    }  # fmt: skip
    section = bench_accelerator.render(results)
    assert "| OpenAI-ES | 1,000 | 256 | 20 | 2,000 | 1,000 | 2.00x | met |" in section
    assert "| CMA-ES | 10,000 | 256 | 2 | 5 | 10 | 0.50x | missed |" in section
    assert "| SNES | 1,000,000 | 16,384 | - | time limit |" in section
    assert "1 rows were skipped: the time limit of 280 s" in section
    assert "| CartPole-v1 | 10,000 | 100 | 300,000,000 |" in section
    assert "| ant | 256 | 1000 | adapter not available | 1,000,000 | - | not measured |" in section
    assert (
        "| halfcheetah | 4,096 | 120 s (best 3,100) | not reached in 60 s (best 2,500) | met |"
        in (section)
    )
    assert "CPU quick run" not in section
    quick = bench_accelerator.render({**results, "meta": {**meta, "quick": True}})
    assert "**These numbers are from a CPU quick run**" in quick
    assert "| 2.00x | not judged (CPU quick run) |" in quick
    assert "| 120 s (best 3,100) | not reached in 60 s (best 2,500) | not judged" in quick


def test_accelerator_quick_runs_on_cpu_and_writes_only_where_told(tmp_path):
    """--quick on CPU: every strategy at d = 100, population 16 (evosax "not installed"
    where it is not), CartPole and Pendulum at 64 envs, where CartPole's reward of 1 per
    step, auto-reset included, sums to exactly 1 per env step; the JSON records the device
    and jax; the section goes to --output only and says it is a CPU quick run; --from-json
    rebuilds it."""
    docs = [ROOT / "docs" / "benchmarks.md", bench_accelerator.DEFAULT_JSON]
    before = [path.stat().st_mtime_ns if path.exists() else None for path in docs]
    saved, doc = tmp_path / "accelerator.json", tmp_path / "benchmarks.md"
    script = "scripts/bench_accelerator.py"
    options = ("--groups", "envs", "strategies", "--json", str(saved), "--output", str(doc))
    proc = run_script(script, "--quick", *options)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(saved.read_text())
    assert results["meta"]["device"] == jax.devices()[0].device_kind
    assert results["meta"]["jax"] == jax.__version__
    strategies = results["strategies"]
    assert [(r["strategy"], r["d"], r["population"]) for r in strategies] == [
        (name, 100, 16) for name in ("open_es", "snes", "cma_es")
    ]
    for row in strategies:
        assert row["ours"]["gen_per_s"] > 0
        assert jnp.isfinite(row["ours"]["final_f"])
        if importlib.util.find_spec("evosax") is None:
            assert row["evosax"] == {"skipped": "not installed"}
    envs = {row["env"]: row for row in results["envs"]}
    assert sorted(envs) == ["CartPole-v1", "Pendulum-v1"]
    assert all(row["num_envs"] == 64 and row["steps_per_s"] > 0 for row in envs.values())
    assert envs["CartPole-v1"]["reward_per_step"] == 1.0
    assert -16.3 <= envs["Pendulum-v1"]["reward_per_step"] <= 0.0  # Pendulum's reward range
    section = doc.read_text()
    assert "**These numbers are from a CPU quick run**" in section
    assert "| OpenAI-ES | 100 | 16 | 2 |" in section
    assert "### Brax: env steps per second of a whole generation\n\nNot run" in section
    assert [path.stat().st_mtime_ns if path.exists() else None for path in docs] == before
    rebuilt = tmp_path / "rebuilt.md"
    proc = run_script(script, "--from-json", str(saved), "--output", str(rebuilt))
    assert proc.returncode == 0, proc.stderr
    assert rebuilt.read_text() == section


def test_accelerator_time_limit_skips_the_rows_and_says_so(tmp_path):
    saved = tmp_path / "accelerator.json"
    options = ("--groups", "envs", "--time-limit", "0.001", "--json", str(saved))
    proc = run_script("scripts/bench_accelerator.py", "--quick", *options)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(saved.read_text())["envs"]
    assert [row["skipped"] for row in rows] == ["time limit", "time limit"]
    assert "2 rows were skipped: the time limit of 0 s ran out" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("brax") is None, reason="brax is not installed")
def test_accelerator_quick_brax_rows_measure_both_sides(tmp_path):
    """--quick --groups brax (minutes on a CPU: Brax compiles slowly): halfcheetah at
    population 4 and episode length 10 on the spring pipeline, Brax ES's rate from the
    epoch after its two compiling ones, ours where the adapter is there."""
    saved = tmp_path / "accelerator.json"
    options = ("--groups", "brax", "--brax-pipeline", "spring", "--json", str(saved))
    proc = run_script("scripts/bench_accelerator.py", "--quick", *options, timeout=900)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(saved.read_text())["brax"]
    assert (row["env"], row["population"], row["episode_length"]) == ("halfcheetah", 4, 10)
    assert len(row["brax_es"]["epochs"]) == 3
    assert row["brax_es"]["steps_per_s"] == row["brax_es"]["epochs"][2] > 0
    if importlib.util.find_spec("es_toolkit.envs.brax_envs") is None:
        assert row["ours"] == {"skipped": "adapter not available"}
    else:
        assert row["ours"]["steps_per_s"] > 0


def test_accelerator_episode_return_masks_the_rewards_after_the_episode_ends():
    """Pendulum cut to 3 steps, rolled out for 5: the return is the sum of the first 3
    rewards of a step-by-step Python loop with the same policy and keys."""
    import dataclasses

    from es_toolkit.envs import make

    env = make("Pendulum-v1")
    params = dataclasses.replace(env.default_params, max_steps_in_episode=3)
    sizes = bench_accelerator.mlp_sizes(3, 1)
    flat = jax.random.normal(jax.random.key(0), (sum(a * b + b for a, b in sizes),))

    class ShortPendulum(type(env)):
        @property
        def default_params(self):
            return params

    short = ShortPendulum()
    key = jax.random.key(5)
    got = bench_accelerator.episode_return(short, sizes, 5)(flat, key)
    obs, state = short.reset(key, params)
    expected = 0.0
    for t in range(3):
        action = bench_accelerator.mlp_policy(flat, obs, sizes)
        obs, state, reward, *_ = short.step(jax.random.fold_in(key, t), state, action, params)
        expected += float(reward)
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_accelerator_time_to_return_stops_at_the_target_or_the_budget():
    from es_toolkit.envs import make

    env = make("Pendulum-v1")
    options = {"population": 4, "episode_length": 5}
    reached = bench_accelerator.ours_time_to_return(env, 60.0, target=-1e9, **options)
    assert reached["generations"] == 1
    assert reached["seconds"] > 0
    assert -16.3 * 5 <= reached["best"] <= 0.0  # Pendulum's reward range, 5 steps
    missed = bench_accelerator.ours_time_to_return(env, 0.5, target=1.0, **options)
    assert missed["seconds"] is None
    assert missed["generations"] >= 1
    assert missed["budget_s"] == 0.5


def test_accelerator_keeps_the_groups_not_run_from_earlier_results_of_the_same_device():
    meta = {"device": "H100", "platform": "gpu", "quick": False, "date": "today"}
    earlier = {
        "meta": {**meta, "date": "yesterday"},
        "envs": [{"env": "old"}],
        "strategies": [{"strategy": "old"}],
        "brax": [],
        "solve": [{"env": "old"}],
    }
    now = {"meta": meta, "envs": [], "strategies": [], "brax": [], "solve": [{"env": "new"}]}
    merged = bench_accelerator.with_earlier_groups(now, earlier, ["solve"])
    assert merged["solve"] == [{"env": "new"}]
    assert merged["envs"] == [{"env": "old"}]
    assert merged["strategies"] == [{"strategy": "old"}]
    assert merged["meta"]["earlier"] == {"groups": ["envs", "strategies"], "date": "yesterday"}
    other_device = {**earlier, "meta": {**earlier["meta"], "device": "A100"}}
    assert bench_accelerator.with_earlier_groups(now, other_device, ["solve"]) == now
