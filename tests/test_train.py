"""The training loop: exact resume, refusing other runs, interruption, and the commands."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from es_toolkit import train as train_lib
from es_toolkit.checkpoint import CheckpointError
from es_toolkit.report import read_jsonl
from es_toolkit.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
TINY = TrainConfig(
    population_size=8,
    num_generations=6,
    eval_every=2,
    eval_episodes=2,
    final_eval_episodes=4,
    sigma=0.1,
    learning_rate=0.05,
)


def leaves_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def without_wall_time(rows):
    return [
        {k: v for k, v in row.items() if k not in ("wall_time", "steps_per_second")} for row in rows
    ]


def test_resume_gives_the_same_run(tmp_path):
    """4 generations, then 2 more after a resume, equal 6 generations in one go."""
    whole = train(TINY, tmp_path / "whole", progress=False)
    train(dataclasses.replace(TINY, num_generations=4), tmp_path / "split", progress=False)
    resumed = train(TINY, tmp_path / "split", resume=True, progress=False)
    leaves_equal(resumed.state, whole.state)
    assert without_wall_time(read_jsonl(tmp_path / "split" / "metrics.jsonl")) == without_wall_time(
        read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    )
    assert resumed.final_return_mean == whole.final_return_mean
    summary = json.loads((tmp_path / "whole" / "result.json").read_text())
    assert summary["generations"] == 6
    assert summary["env_steps"] == int(whole.state.env_steps) > 0
    rows = read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    assert [row["generation"] for row in rows] == list(range(6))
    assert {
        "return_mean",
        "return_max",
        "return_min",
        "env_steps",
        "sigma",
        "wall_time",
        "steps_per_second",
    } <= set(rows[0])
    assert [row.get("eval_return_mean") is not None for row in rows] == [False, True] * 3
    assert (tmp_path / "whole" / "curve.png").read_bytes()[:4] == b"\x89PNG"


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    writes = []
    original = train_lib.JsonlLog.write

    def interrupt_second_block(self, rows):
        writes.append(len(rows))
        if len(writes) == 2:
            raise KeyboardInterrupt
        original(self, rows)

    monkeypatch.setattr(train_lib.JsonlLog, "write", interrupt_second_block)
    with pytest.raises(KeyboardInterrupt, match="resumes with --resume"):
        train(TINY, tmp_path, progress=False)
    monkeypatch.undo()
    assert train_lib.read_metadata(tmp_path / "checkpoint.npz")["generation"] == 2
    resumed = train(TINY, tmp_path, resume=True, progress=False)
    assert int(resumed.state.generation) == 6


def test_refuses_another_run_and_mismatched_resume(tmp_path):
    train(TINY, tmp_path, progress=False)
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(TINY, tmp_path, progress=False)
    other = dataclasses.replace(TINY, env="Acrobot-v1")
    with pytest.raises(
        CheckpointError, match=r"another run.*env: saved 'CartPole-v1', given 'Acrobot-v1'"
    ):
        train(other, tmp_path, resume=True, progress=False)
    assert (tmp_path / "metrics.jsonl").read_text() == before
    data = (tmp_path / "checkpoint.npz").read_bytes()
    (tmp_path / "checkpoint.npz").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        train(TINY, tmp_path, resume=True, progress=False)


def test_train_and_evaluate_commands(tmp_path):
    out = tmp_path / "run"
    train_args = [
        "--population",
        "8",
        "--generations",
        "4",
        "--eval-every",
        "2",
        "--eval-episodes",
        "2",
        "--final-eval-episodes",
        "3",
        "--out",
        str(out),
        "--quiet",
    ]
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *train_args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "CartPole-v1 open_es: mean return" in done.stdout
    command = Path(sys.executable).parent / "es-toolkit"
    evaluated = subprocess.run(
        [str(command), "evaluate", str(out / "checkpoint.npz"), "--episodes", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "CartPole-v1 (jax): mean return" in evaluated.stdout
    refused = subprocess.run(
        [str(command), "train", *train_args], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 2
    assert "already holds a run" in refused.stderr
