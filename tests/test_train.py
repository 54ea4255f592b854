"""The training loop: exact resume, exactly the generations asked for, interruption and
I/O failures that keep the checkpoint, and wall time that survives a resume."""

import dataclasses
import errno
import json

import pytest
from trees import assert_trees_equal

from es_toolkit import report
from es_toolkit.checkpoint import CheckpointError, read_metadata
from es_toolkit.run_folder import RunFolderError
from es_toolkit.training import ConfigError, TrainConfig, load_run, train
from es_toolkit.training.config import RESUMABLE_FIELDS

TINY = TrainConfig(
    population_size=8,
    num_generations=6,
    eval_every=2,
    eval_episodes=2,
    final_eval_episodes=4,
    sigma=0.1,
    learning_rate=0.05,
)


def without_wall_time(rows):
    return [
        {k: v for k, v in row.items() if k not in ("wall_time", "steps_per_second")} for row in rows
    ]


def test_resume_gives_the_same_run(tmp_path):
    """4 generations, then 2 more after a resume, equal 6 generations in one go."""
    whole = train(TINY, tmp_path / "whole", progress=False)
    train(dataclasses.replace(TINY, num_generations=4), tmp_path / "split", progress=False)
    resumed = train(None, tmp_path / "split", resume=True, progress=False)  # as saved: 4
    assert int(resumed.state.generation) == 4
    resumed = train(TINY, tmp_path / "split", resume=True, progress=False)
    assert_trees_equal(resumed.state, whole.state)
    assert without_wall_time(report.read_jsonl(tmp_path / "split" / "metrics.jsonl")) == (
        without_wall_time(report.read_jsonl(tmp_path / "whole" / "metrics.jsonl"))
    )
    assert resumed.final_return_mean == whole.final_return_mean
    summary = json.loads((tmp_path / "whole" / "result.json").read_text())
    assert summary["generations"] == 6
    assert summary["env_steps"] == int(whole.state.env_steps) > 0
    rows = report.read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    assert [row["generation"] for row in rows] == list(range(6))
    assert {"return_mean", "return_max", "env_steps", "sigma", "wall_time"} <= set(rows[0])
    assert [row.get("eval_return_mean") is not None for row in rows] == [False, True] * 3
    assert (tmp_path / "whole" / "curve.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("generations", "evaluated"), [(5, [1, 3, 4]), (1, [0])])
def test_runs_exactly_the_generations_asked_for(tmp_path, generations, evaluated):
    """Blocks end at multiples of eval_every and at num_generations (the last block is
    shorter), never past it."""
    config = dataclasses.replace(TINY, num_generations=generations)
    result = train(config, tmp_path, progress=False)
    rows = report.read_jsonl(tmp_path / "metrics.jsonl")
    assert int(result.state.generation) == generations == len(rows)
    assert [r["generation"] for r in rows if r.get("eval_return_mean") is not None] == evaluated
    assert json.loads((tmp_path / "result.json").read_text())["generations"] == generations


def test_an_extended_run_evaluates_where_a_run_never_stopped_does(tmp_path):
    train(dataclasses.replace(TINY, num_generations=3), tmp_path / "a", progress=False)
    extended = train(TINY, tmp_path / "a", resume=True, progress=False)
    straight = train(TINY, tmp_path / "b", progress=False)
    assert_trees_equal(extended.state.strategy_state, straight.state.strategy_state)
    evaluated = [
        r["generation"]
        for r in report.read_jsonl(tmp_path / "a" / "metrics.jsonl")
        if r.get("eval_return_mean") is not None
    ]
    assert evaluated == [1, 2, 3, 5]  # the short block's evaluation at 3, then 4 and 6 as usual


def test_interrupted_run_names_the_checkpoint_it_keeps_and_resumes(tmp_path, monkeypatch):
    writes = []
    original = report.JsonlLog.write

    def interrupt_second_block(self, rows):
        writes.append(len(rows))
        if len(writes) == 2:
            raise KeyboardInterrupt
        original(self, rows)

    monkeypatch.setattr(report.JsonlLog, "write", interrupt_second_block)
    with pytest.raises(KeyboardInterrupt, match=r"checkpoint of generation 2 .* resumes"):
        train(TINY, tmp_path, progress=False)
    monkeypatch.undo()
    assert read_metadata(tmp_path / "checkpoint.npz")["generation"] == 2
    resumed = train(None, tmp_path, resume=True, progress=False)
    assert int(resumed.state.generation) == 6


def test_a_write_failure_mid_run_is_one_error_naming_the_path(tmp_path, monkeypatch):
    """A folder that turns read-only mid-run (simulated: tests run as root, which
    permissions do not stop) gives a RunFolderError naming the file; the checkpoint of
    the last block is intact and resumes."""
    original = report.JsonlLog.write
    calls = []

    def read_only_after_first_block(self, rows):
        calls.append(1)
        if len(calls) > 1:
            raise PermissionError(errno.EACCES, "Permission denied", str(self.path))
        original(self, rows)

    monkeypatch.setattr(report.JsonlLog, "write", read_only_after_first_block)
    with pytest.raises(RunFolderError) as error:
        train(TINY, tmp_path, progress=False)
    message = str(error.value)
    assert f"cannot write {tmp_path / 'metrics.jsonl'}: Permission denied" in message
    assert "checkpoint of generation 2" in message
    assert "\n" not in message
    monkeypatch.undo()
    assert int(train(None, tmp_path, resume=True, progress=False).state.generation) == 6


def test_wall_time_goes_on_across_a_resume(tmp_path):
    train(dataclasses.replace(TINY, num_generations=2), tmp_path, progress=False)
    before = report.read_jsonl(tmp_path / "metrics.jsonl")[-1]["wall_time"]
    train(TINY, tmp_path, resume=True, progress=False)
    times = [row["wall_time"] for row in report.read_jsonl(tmp_path / "metrics.jsonl")]
    assert times == sorted(times)
    assert times[-1] > before
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["wall_time_s"] == times[-1]


def test_refuses_another_run_and_mismatched_resume(tmp_path):
    train(TINY, tmp_path, progress=False)
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(TINY, tmp_path, progress=False)
    other = dataclasses.replace(TINY, env="Acrobot-v1")
    with pytest.raises(ConfigError, match=r"another run \(env: saved 'CartPole-v1', given 'Acro"):
        train(other, tmp_path, resume=True, progress=False)
    with pytest.raises(ConfigError, match="num_generations must be at least 6"):
        train(dataclasses.replace(TINY, num_generations=4), tmp_path, resume=True, progress=False)
    assert (tmp_path / "metrics.jsonl").read_text() == before
    data = (tmp_path / "checkpoint.npz").read_bytes()
    (tmp_path / "checkpoint.npz").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        train(TINY, tmp_path, resume=True, progress=False)


def test_only_resumable_fields_may_change_on_resume(tmp_path):
    assert set(RESUMABLE_FIELDS) == {"num_generations", "num_workers", "devices", "loggers"}
    train(dataclasses.replace(TINY, num_generations=2), tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"sigma: saved 0\.1, given 0\.2"):
        train(dataclasses.replace(TINY, sigma=0.2), tmp_path, resume=True, progress=False)
    train(dataclasses.replace(TINY, devices=2), tmp_path, resume=True, progress=False)


def test_load_run_takes_the_folder_or_the_checkpoint(tmp_path):
    result = train(dataclasses.replace(TINY, num_generations=2), tmp_path, progress=False)
    for path in (tmp_path, tmp_path / "checkpoint.npz"):
        config, state = load_run(path)
        assert config == result.config
        assert_trees_equal(state, result.state)
