"""Restarts and the evaluation budget in OptimizeConfig: checked at construction, counted in
result.json, and resumed exactly, also after a restart changed the population size."""

import dataclasses
import json
import re

import pytest

from es_toolkit._run_config import ConfigError
from es_toolkit.optimize_config import OptimizeConfig
from es_toolkit.optimize_run import read_optimization, run_optimization
from es_toolkit.report import read_jsonl
from es_toolkit.run_folder import RunFolder

# CMA-ES with 6 members on the 2-d Rastrigin converges to a local minimum and stops on
# pycma's criteria, so IPOP restarts it (12 members, ...) before the budget of 3000
# evaluations ends the run. The tests below split this run inside its last run, a
# restarted one, and check that it is there (the population size in the checkpoint).
RESTARTING = OptimizeConfig(
    objective="rastrigin",
    dim=2,
    strategy="cma_es",
    population_size=6,
    num_generations=400,
    max_evaluations=3000,
    restarts="ipop",
)


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"max_evaluations": 0}, "max_evaluations", "max_evaluations must be an int >= 1, got 0."),
        ({"max_evaluations": 10.0}, "max_evaluations", "got 10.0"),
        ({"max_evaluations": True}, "max_evaluations", "got True"),
        ({"restarts": "IPOP"}, "restarts", "restarts must be one of bipop, ipop, got 'IPOP'."),
        ({"restarts": 1}, "restarts", "got 1"),
        (
            {"restarts": "bipop", "strategy": "open_es"},
            "restarts",
            "restarts='bipop' draws the initial step size of each small run, and open_es "
            "keeps none in its state: use restarts='ipop'.",
        ),
        ({"restarts": "bipop", "strategy": "ars"}, "restarts", "ars keeps none"),
    ],
)
def test_bad_settings_name_their_field(options, field, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        OptimizeConfig(**options)
    assert error.value.field == field


@pytest.mark.parametrize(
    ("strategy", "restarts"),
    [
        ("open_es", "ipop"),
        ("ars", "ipop"),
        ("snes", "bipop"),
        ("pgpe", "bipop"),
        ("cma_es", "bipop"),
    ],
)
def test_restartable_strategies_are_accepted(strategy, restarts):
    """IPOP only rebuilds the population; BIPOP also needs a state with a sigma."""
    config = OptimizeConfig(strategy=strategy, restarts=restarts, max_evaluations=1)
    assert (config.restarts, config.max_evaluations) == (restarts, 1)


def run_in(folder, config, *, resume=False):
    return run_optimization(config, folder, resume=resume, progress=False)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The run of ``RESTARTING`` in one go: its result, result.json and log."""
    out = tmp_path_factory.mktemp("straight")
    result = run_in(out, RESTARTING)
    return result, json.loads((out / "result.json").read_text()), read_jsonl(out / "metrics.jsonl")


def assert_same_run(out, straight):
    result, summary, rows = straight
    resumed = json.loads((out / "result.json").read_text())
    for name in ("generations", "num_evaluations", "num_restarts", "stop_reason"):
        assert resumed[name] == summary[name], name
    assert resumed["best_value"] == pytest.approx(result.best_value, rel=1e-5, abs=1e-12)
    resumed_rows = read_jsonl(out / "metrics.jsonl")
    assert [row["generation"] for row in resumed_rows] == [row["generation"] for row in rows]
    for a, b in zip(rows, resumed_rows, strict=True):
        assert b["best_value"] == pytest.approx(a["best_value"], rel=1e-5, abs=1e-12)


def test_straight_run_restarts_until_the_budget(straight):
    """IPOP doubles the population at every restart and the budget ends the run: the last
    generation that started fit in it (one more, of at most 6 * 2**r + 1 evaluations
    with the mean, would not)."""
    result, summary, rows = straight
    assert result.num_restarts >= 1
    assert result.stop_reason == "max_evaluations"
    per_generation = 6 * 2**result.num_restarts + 1
    assert 3000 - per_generation < result.num_evaluations <= 3000
    assert summary["num_evaluations"] == result.num_evaluations
    assert summary["num_restarts"] == result.num_restarts
    assert summary["stop_reason"] == "max_evaluations"
    assert summary["generations"] == len(rows) == result.num_generations < 400
    assert summary["config"]["restarts"] == "ipop"
    assert summary["config"]["max_evaluations"] == 3000


def test_resume_after_a_restart(tmp_path, straight):
    """Stopped 20 generations before the end, inside a restarted run (whose state has other
    shapes than the first run's), then resumed with the generations raised: the same run
    as in one go."""
    cut = straight[0].num_generations - 20
    run_in(tmp_path, dataclasses.replace(RESTARTING, num_generations=cut))
    metadata = RunFolder(tmp_path).read_metadata()
    assert metadata["generation"] == cut
    assert metadata["run_population_size"] == 6 * 2 ** straight[0].num_restarts
    run_in(tmp_path, RESTARTING, resume=True)
    assert_same_run(tmp_path, straight)


def test_raising_the_budget_extends_the_run(tmp_path, straight):
    """A budget 200 evaluations short ends the run inside its last, restarted run;
    resumed with 3000 (the rest of the config read from the folder) it is the run made
    with 3000 from the start. A budget below the evaluations done is refused."""
    result = straight[0]
    budget = result.num_evaluations - 200
    per_generation = 6 * 2**result.num_restarts + 1
    run_in(tmp_path, dataclasses.replace(RESTARTING, max_evaluations=budget))
    summary = json.loads((tmp_path / "result.json").read_text())
    assert summary["stop_reason"] == "max_evaluations"
    assert summary["num_restarts"] == result.num_restarts
    assert budget - per_generation < summary["num_evaluations"] <= budget
    saved = read_optimization(tmp_path)
    assert saved.max_evaluations == budget
    with pytest.raises(ConfigError, match="max_evaluations must be at least") as error:
        run_in(tmp_path, dataclasses.replace(saved, max_evaluations=budget - 300), resume=True)
    assert error.value.field == "max_evaluations"
    run_in(tmp_path, dataclasses.replace(saved, max_evaluations=3000), resume=True)
    assert_same_run(tmp_path, straight)


def test_restarts_cannot_change_on_resume(tmp_path):
    config = dataclasses.replace(RESTARTING, num_generations=50)
    run_in(tmp_path, config)
    with pytest.raises(ConfigError, match="cannot resume") as error:
        run_in(tmp_path, dataclasses.replace(config, restarts="bipop"), resume=True)
    assert error.value.field == "restarts"
