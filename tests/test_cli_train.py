"""The train and evaluate commands as a user meets them: the documented resume command,
exactly the generations asked for, one-line errors naming the flag or the path, and the
same run from the command line as from ``TrainConfig.for_env``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from es_toolkit import cli
from es_toolkit.report import read_jsonl
from es_toolkit.training import TrainConfig, train

ES_TOOLKIT = [sys.executable, "-m", "es_toolkit.cli"]
SMALL = ["--eval-episodes", "2", "--final-eval-episodes", "2", "--quiet"]


def run_main(argv, capsys):
    """``es-toolkit ARGV`` in this process: (exit code, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def generations_logged(out: Path) -> list[int]:
    return [row["generation"] for row in read_jsonl(out / "metrics.jsonl")]


def test_the_documented_resume_command_continues_the_saved_run(tmp_path, capsys):
    out = str(tmp_path / "R")
    first = ["train", "--population", "16", "--generations", "5", "--target-return", "1e9"]
    assert run_main([*first, *SMALL, "--out", out], capsys)[0] == 0
    code, stdout, _ = run_main(["train", "--resume", "--out", out, "--quiet"], capsys)
    assert code == 0
    assert "after 5 generations" in stdout  # nothing to do: the saved run is complete
    code, _, err = run_main(["train", "--resume", "--out", out, "--population", "32"], capsys)
    assert code == 2
    assert "cannot resume" in err
    assert "--population: saved 16, given 32" in err
    code, stdout, _ = run_main(["train", "--resume", "--out", out, "--generations", "8"], capsys)
    assert code == 0
    assert generations_logged(Path(out)) == list(range(8))
    summary = json.loads((Path(out) / "result.json").read_text())
    assert summary["config"]["population_size"] == 16
    assert summary["generations"] == 8


def test_runs_exactly_the_generations_asked_for_with_the_default_eval_every(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_main(
        ["train", "--generations", "5", "--population", "8", *SMALL[:4], "--out", str(out)],
        capsys,
    )
    assert code == 0
    assert "5/5" in err
    assert "10/5" not in err
    assert generations_logged(out) == list(range(5))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--episodes-per-member", "0"], "--episodes-per-member must be an int >= 1, got 0."),
        (["--learning-rate", "nan"], "--learning-rate must be a positive finite float, got nan."),
        (["--learning-rate", "-1"], "--learning-rate must be a positive finite float, got -1.0."),
        (["--reward-shift", "nan"], "--reward-shift must be a finite float, got nan."),
        (["--eval-episodes", "0"], "--eval-episodes must be an int >= 1, got 0."),
        (["--final-eval-episodes", "0"], "--final-eval-episodes must be an int >= 1, got 0."),
        (["--generations", "0"], "--generations must be an int >= 1, got 0."),
        (["--population", "7"], "--population must be even, got 7."),
        (["--num-workers", "0", "--backend", "gymnasium"], "--num-workers must be an int >= 1"),
        (["--resume", "--overwrite"], "give one"),
        (["--resume"], "holds no saved run"),
    ],
)
def test_settings_that_cannot_work_are_refused_before_any_work(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    code, _, err = run_main(["train", *argv, "--out", str(out)], capsys)
    assert code == 2
    assert message in err
    assert err.count("\n") == 1
    assert not out.exists()


def test_errors_are_one_line_from_a_fresh_process(tmp_path):
    """No traceback and no error printed at interpreter exit (a half-built worker pool
    once printed an AttributeError from ``__del__``)."""
    for argv in (
        ["train", "--num-workers", "0", "--backend", "gymnasium", "--out", str(tmp_path / "a")],
        ["train", "--out", "/proc/es_toolkit_run", "--generations", "1"],
        ["evaluate", str(tmp_path / "missing")],
    ):
        done = subprocess.run([*ES_TOOLKIT, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("es-toolkit ")


def test_unwritable_out_names_the_path(capsys):
    code, _, err = run_main(["train", "--out", "/proc/es_toolkit_run", "--quiet"], capsys)
    assert code == 2
    assert "cannot write /proc/es_toolkit_run" in err


def test_a_second_run_into_a_folder_in_use_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom es_toolkit.run_folder import RunFolder\n"
            "with RunFolder(sys.argv[1]).claim():\n    print('claimed', flush=True)\n"
            "    time.sleep(120)\n",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "claimed"
        code, _, err = run_main(["train", "--out", str(out), "--quiet"], capsys)
        assert code == 2
        assert f"{out} is in use by another run (process {holder.pid})" in err
        assert not (out / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()


def test_evaluate_takes_the_run_folder_and_refuses_zero_episodes(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = ["train", "--population", "8", "--generations", "2", *SMALL, "--out", str(out)]
    assert run_main(argv, capsys)[0] == 0
    code, stdout, _ = run_main(["evaluate", str(out), "--episodes", "3"], capsys)
    assert code == 0
    assert "CartPole-v1 (jax): mean return" in stdout
    code, _, err = run_main(["evaluate", str(out), "--episodes", "0"], capsys)
    assert code == 2
    assert "--episodes must be an int >= 1, got 0" in err

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "evaluate_policy", interrupted)
    code, _, err = run_main(["evaluate", str(out)], capsys)
    assert code == 130
    assert err == "es-toolkit evaluate: interrupted\n"


def test_command_line_and_for_env_train_the_same_run(tmp_path, capsys):
    """``es-toolkit train --env Pendulum-v1`` starts from the same tuned settings as
    ``TrainConfig.for_env("Pendulum-v1")``: the same log, wall-clock fields aside."""
    overrides = {
        "num_generations": 2,
        "eval_every": 1,
        "eval_episodes": 2,
        "final_eval_episodes": 2,
    }
    train(TrainConfig.for_env("Pendulum-v1", **overrides), tmp_path / "api", progress=False)
    argv = ["train", "--env", "Pendulum-v1", "--generations", "2", "--eval-every", "1"]
    assert run_main([*argv, *SMALL, "--out", str(tmp_path / "cli")], capsys)[0] == 0

    def logged(name):
        rows = read_jsonl(tmp_path / name / "metrics.jsonl")
        return [
            {k: v for k, v in r.items() if k not in ("wall_time", "steps_per_second")} for r in rows
        ]

    assert logged("cli") == logged("api")
    assert len(logged("api")) == 2


def test_a_video_without_its_extra_names_the_install_command_before_any_work(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    argv = ["train", "--population", "8", "--generations", "2", *SMALL, "--out", str(out)]
    assert run_main(argv, capsys)[0] == 0
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    code, stdout, err = run_main(["evaluate", str(out), "--video", str(tmp_path / "x.mp4")], capsys)
    assert code == 2
    assert 'needs imageio and imageio-ffmpeg: pip install "es_toolkit[video]"' in err
    assert err.count("\n") == 1
    assert stdout == ""  # refused before the evaluation
