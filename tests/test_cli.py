"""The optimize command: as a script and as ``es-toolkit``, with tiny budgets."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from es_toolkit.cli import main
from es_toolkit.report import read_jsonl

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--dim", "3", "--population", "8", "--generations", "12", "--quiet"]


def check_run_folder(out: Path, generations: int) -> dict:
    rows = read_jsonl(out / "metrics.jsonl")
    assert [row["generation"] for row in rows] == list(range(generations))
    assert all(row["wall_time"] >= 0 for row in rows)
    assert (out / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "result.json").read_text())
    assert summary["generations"] == generations
    assert summary["best_value"] == pytest.approx(min(row["best_value"] for row in rows), rel=1e-6)
    return summary


def test_script_and_command_run_the_same_code(tmp_path):
    script = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "optimize.py"),
            *TINY,
            "--out",
            str(tmp_path / "a"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "best value" in script.stdout
    command = Path(sys.executable).parent / "es-toolkit"
    subprocess.run(
        [str(command), "optimize", *TINY, "--out", str(tmp_path / "b")],
        capture_output=True,
        timeout=300,
        check=True,
    )
    a = check_run_folder(tmp_path / "a", 12)
    b = check_run_folder(tmp_path / "b", 12)
    assert a["best_value"] == b["best_value"]  # same seed, same numbers


@pytest.mark.parametrize("strategy", ["open_es", "pgpe", "snes", "ars"])
def test_every_strategy_and_progress(tmp_path, strategy, capsys):
    argv = ["optimize", "--strategy", strategy, "--objective", "sphere", "--dim", "4"]
    assert main([*argv, "--population", "8", "--generations", "60", "--out", str(tmp_path)]) == 0
    summary = check_run_folder(tmp_path, 60)
    assert summary["config"]["strategy"] == strategy
    captured = capsys.readouterr()
    assert "generation  50/60" in captured.err
    assert f"sphere d=4 {strategy}: best value" in captured.out


def test_target_stops_early(tmp_path):
    main(
        [
            "optimize",
            "--objective",
            "sphere",
            "--sigma",
            "0.5",
            *TINY[:4],
            "--generations",
            "500",
            "--target",
            "1e3",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["reached_target"]
    assert summary["generations"] < 500


def test_refuses_a_folder_with_another_run(tmp_path, capsys):
    main(["optimize", *TINY, "--out", str(tmp_path)])
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", *TINY, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (tmp_path / "metrics.jsonl").read_text() == before  # nothing lost
    main(["optimize", *TINY, "--out", str(tmp_path), "--overwrite"])
    check_run_folder(tmp_path, 12)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strategy", "cma"], "invalid choice: 'cma'"),
        (["--objective", "nope"], "invalid choice: 'nope'"),
        (["--population", "0"], "--population must be an int >= 2, got 0."),
        (["--sigma", "-1"], "--sigma must be a positive finite float, got -1.0."),
        (["--generations", "0"], "--generations must be an int >= 1, got 0."),
        (["--chunk-size", "3"], "--chunk-size must be even"),
        (["--dim", "0"], "--dim must be an int >= 1, got 0."),
        (["--resume"], "holds no saved run"),
        (["--max-evaluations", "0"], "--max-evaluations must be an int >= 1, got 0."),
        (["--restarts", "pop"], "invalid choice: 'pop'"),
        (
            ["--restarts", "bipop"],
            "--restarts='bipop' draws the initial step size of each small run, and open_es",
        ),
    ],
)
def test_bad_options_are_named(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", *argv, "--out", str(tmp_path), "--quiet"])
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith("es-toolkit optimize: error:")
    assert message in last_line
    assert not (tmp_path / "metrics.jsonl").exists()


def test_resume_continues_the_saved_optimization(tmp_path, capsys):
    """30 generations, then --resume --generations 60, equal 60 generations in one go."""
    options = ["--objective", "sphere", "--dim", "4", "--population", "8", "--quiet"]
    main(["optimize", *options, "--generations", "60", "--out", str(tmp_path / "straight")])
    main(["optimize", *options, "--generations", "30", "--out", str(tmp_path / "split")])
    main(["optimize", "--resume", "--out", str(tmp_path / "split"), "--generations", "60"])
    straight = check_run_folder(tmp_path / "straight", 60)
    resumed = check_run_folder(tmp_path / "split", 60)
    assert resumed["best_value"] == pytest.approx(straight["best_value"], rel=1e-5)
    rows = [read_jsonl(tmp_path / name / "metrics.jsonl") for name in ("straight", "split")]
    for a, b in zip(*rows, strict=True):
        assert a["best_value"] == pytest.approx(b["best_value"], rel=1e-5)
    with pytest.raises(SystemExit):
        main(["optimize", "--resume", "--out", str(tmp_path / "split"), "--dim", "5"])
    assert "cannot resume" in capsys.readouterr().err


SPHERE_IN_BOX = ["--objective", "sphere", "--dim", "3", "--population", "8", "--quiet"]


@pytest.mark.parametrize(
    ("box", "handling"), [("1,2", "transform"), ("1,", "penalty"), ("1,inf", "transform")]
)
def test_bounds_keep_the_search_in_the_box(tmp_path, box, handling):
    """The sphere's minimum over [1, 2]^3 (or [1, inf)^3) is 3, at (1, 1, 1): a best value
    below 3 would mean f was evaluated outside, and SNES gets within 1e-3 of 3 in 150
    generations because the bound is reached at a finite point."""
    argv = [*SPHERE_IN_BOX, "--strategy", "snes", "--generations", "150"]
    argv += [f"--bounds={box}", "--bound-handling", handling, "--out", str(tmp_path)]
    assert main(["optimize", *argv]) == 0
    summary = check_run_folder(tmp_path, 150)
    assert summary["config"]["bounds"] == [1.0, 2.0 if box == "1,2" else None]
    assert summary["config"]["bound_handling"] == handling
    assert 3.0 <= summary["best_value"] <= 3.003
    rows = read_jsonl(tmp_path / "metrics.jsonl")
    assert min(row["mean_value"] for row in rows) >= 3.0


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ("3,1", "--bounds must have low < high, got low 3.0 >= high 1.0."),
        ("a,b", "argument --bounds: expected LO,HI: two floats, either empty or inf"),
        ("1", "argument --bounds: expected LO,HI"),
        ("nan,1", "--bounds must be (low, high)"),
    ],
)
def test_bad_bounds_are_named(tmp_path, capsys, box, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["optimize", f"--bounds={box}", "--out", str(tmp_path), "--quiet"])
    assert exit_info.value.code == 2
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line.startswith("es-toolkit optimize: error:")
    assert message in last_line
    assert not (tmp_path / "metrics.jsonl").exists()


def test_resume_keeps_the_bounds(tmp_path, capsys):
    """A bounded run resumed without --bounds continues in the saved box: 30 + 30
    generations equal 60 in one go, and other bounds are another run."""
    options = [*SPHERE_IN_BOX, "--bounds=1,2", "--bound-handling", "penalty"]
    main(["optimize", *options, "--generations", "60", "--out", str(tmp_path / "straight")])
    main(["optimize", *options, "--generations", "30", "--out", str(tmp_path / "split")])
    main(["optimize", "--resume", "--out", str(tmp_path / "split"), "--generations", "60"])
    straight = check_run_folder(tmp_path / "straight", 60)
    resumed = check_run_folder(tmp_path / "split", 60)
    assert resumed["config"]["bounds"] == [1.0, 2.0]
    assert resumed["config"]["bound_handling"] == "penalty"
    assert resumed["best_value"] == pytest.approx(straight["best_value"], rel=1e-5)
    assert resumed["best_value"] >= 3.0
    with pytest.raises(SystemExit):
        main(["optimize", "--resume", "--out", str(tmp_path / "split"), "--bounds=0,2"])
    assert "cannot resume" in capsys.readouterr().err


RESTARTING = ["--objective", "rastrigin", "--dim", "2", "--strategy", "cma_es", "--population", "6"]


def test_restarts_and_the_budget(tmp_path, capsys):
    """CMA-ES with 6 members stops on the 2-d Rastrigin after about 150 generations and
    IPOP restarts it with 12: a budget of 1500 evaluations ends the run inside the second
    run (13 evaluations a generation with the mean). Raised to 2000 on resume, the run
    goes on to that budget (still inside its second run, which ends after about 2200)."""
    argv = [*RESTARTING, "--generations", "400", "--restarts", "ipop", "--quiet"]
    assert main(["optimize", *argv, "--max-evaluations", "1500", "--out", str(tmp_path)]) == 0
    first = json.loads((tmp_path / "result.json").read_text())
    assert first["config"]["restarts"] == "ipop"
    assert (first["num_restarts"], first["stop_reason"]) == (1, "max_evaluations")
    assert 1500 - 13 < first["num_evaluations"] <= 1500
    assert (
        f"after {first['generations']} generations ({first['num_evaluations']} evaluations, "
        "restarts: 1, stop: max_evaluations)"
    ) in capsys.readouterr().out
    assert main(["optimize", "--resume", "--out", str(tmp_path), "--max-evaluations", "2000"]) == 0
    resumed = json.loads((tmp_path / "result.json").read_text())
    check_run_folder(tmp_path, resumed["generations"])  # the log goes on without a gap
    assert resumed["config"]["max_evaluations"] == 2000
    assert (resumed["num_restarts"], resumed["stop_reason"]) == (1, "max_evaluations")
    assert 2000 - 13 < resumed["num_evaluations"] <= 2000
    assert (
        resumed["generations"]
        == first["generations"] + (resumed["num_evaluations"] - first["num_evaluations"]) // 13
    )
