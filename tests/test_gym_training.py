"""Training on the Gymnasium backend: results that do not depend on the number of
workers, exact resumption, and the train and evaluate commands."""

import dataclasses
import json
import subprocess
import sys

import pytest

gymnasium = pytest.importorskip("gymnasium")

from trees import assert_trees_equal  # noqa: E402

from es_toolkit.training import TrainConfig, train  # noqa: E402

GYM_TINY = TrainConfig(
    env="CartPole-v1",
    backend="gymnasium",
    population_size=8,
    num_generations=4,
    eval_every=2,
    eval_episodes=3,
    final_eval_episodes=3,
    sigma=0.1,
    learning_rate=0.05,
)


def test_gymnasium_training_does_not_depend_on_workers_and_resumes_exactly(tmp_path):
    one = train(dataclasses.replace(GYM_TINY, num_workers=1), tmp_path / "one", progress=False)
    two = train(dataclasses.replace(GYM_TINY, num_workers=2), tmp_path / "two", progress=False)
    assert_trees_equal(one.state, two.state)
    assert int(one.state.env_steps) > 0
    half = dataclasses.replace(GYM_TINY, num_generations=2)
    train(half, tmp_path / "resumed", progress=False)
    resumed = train(GYM_TINY, tmp_path / "resumed", resume=True, progress=False)
    assert_trees_equal(one.state, resumed.state)
    assert one.final_return_mean == resumed.final_return_mean


def test_train_and_evaluate_commands_on_gymnasium_with_a_gif(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "es_toolkit.cli"]
    subprocess.run(
        [
            *command,
            "train",
            "--backend",
            "gymnasium",
            "--population",
            "8",
            "--generations",
            "2",
            "--eval-every",
            "2",
            "--eval-episodes",
            "2",
            "--final-eval-episodes",
            "2",
            "--num-workers",
            "2",
            "--out",
            str(out),
            "--quiet",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = json.loads((out / "result.json").read_text())
    assert summary["config"]["backend"] == "gymnasium"
    gif = tmp_path / "episode.gif"
    evaluated = subprocess.run(
        [*command, "evaluate", str(out / "checkpoint.npz"), "--episodes", "2", "--gif", str(gif)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "CartPole-v1 (gymnasium): mean return" in evaluated.stdout
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames > 5
    refused = subprocess.run(
        [*command, "train", "--env", "Blackjack-v1", "--out", str(tmp_path / "bj")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2
    assert "no policy for this observation space: Tuple" in refused.stderr
