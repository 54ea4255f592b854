"""TensorBoard and Weights & Biases logging, read back from the files they write and
compared with the run folder's JSONL log: the same number for every generation and
metric, on each x-axis; the config, the curve and the recorded episode; a resumed run
continuing the same W&B run and hiding in TensorBoard what it logs again; the ETA of the
progress line.

W&B runs offline, with every W&B folder in a temporary directory; its history is read
from the ``.wandb`` file (LevelDB's log format: 32 KiB blocks of CRC-checked chunks, each
record a ``wandb_internal_pb2.Record``).
"""

import dataclasses
import io
import json
import math
import struct
import sys
import time
import zlib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageSequence

from es_toolkit import cli, minimize, progress
from es_toolkit._run_config import ConfigError
from es_toolkit.checkpoint import read_metadata
from es_toolkit.optimize_config import OptimizeConfig
from es_toolkit.optimize_run import run_optimization
from es_toolkit.report import read_jsonl
from es_toolkit.strategies import open_es
from es_toolkit.tracking import TensorBoardLogger, WandbLogger
from es_toolkit.tracking.tensorboard import hparam_values
from es_toolkit.training import TrainConfig, train
from es_toolkit.training.config import resume_config

CARTPOLE = {
    "backend": "jax",
    "population_size": 8,
    "eval_every": 2,
    "eval_episodes": 2,
    "final_eval_episodes": 2,
}


# --- reading back what the loggers wrote -------------------------------------------------


def tensorboard_run(logdir: Path):
    """TensorBoard's own reader of a run's event files, as its server loads them."""
    from tensorboard.backend.event_processing import plugin_event_accumulator

    accumulator = plugin_event_accumulator.EventAccumulator(
        str(logdir), size_guidance={"tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def tensorboard_scalars(logdir: Path) -> dict[str, dict[int, float | None]]:
    """Every scalar tag's values by step (NaN as None, as the JSONL log writes it); a step
    TensorBoard shows twice fails."""
    from tensorboard.util import tensor_util

    run = tensorboard_run(logdir)
    scalars = {}
    for tag in run.Tags()["tensors"]:
        if run.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            continue
        events = run.Tensors(tag)
        values = {e.step: tensor_util.make_ndarray(e.tensor_proto).item() for e in events}
        assert len(values) == len(events), f"{tag} shows a step twice"
        scalars[tag] = {step: None if math.isnan(v) else v for step, v in values.items()}
    return scalars


def expected_scalars(rows: list[dict], axis: str) -> dict[str, dict[int, float | None]]:
    """What TensorBoard should show on ``axis``: every other value of every row, at the
    row's ``axis`` count."""
    expected: dict[str, dict[int, float | None]] = {}
    for row in rows:
        for name, value in row.items():
            if name != axis:
                expected.setdefault(f"{axis}/{name}", {})[row[axis]] = value
    return expected


def tensorboard_tensors(logdir: Path, plugin: str) -> dict[str, list]:
    """The tensor events of a plugin (``images``, ``text``), by tag."""
    run = tensorboard_run(logdir)
    return {
        tag: run.Tensors(tag)
        for tag in run.Tags()["tensors"]
        if run.SummaryMetadata(tag).plugin_data.plugin_name == plugin
    }


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def wandb_records(path: Path, timeout: float = 30.0) -> list:
    """The records of a finished run's ``.wandb`` file, in order. W&B's service process
    writes the file, and may still be writing it when ``finish`` returns: this waits for
    the run's exit record."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_wandb_file(path)
        if any(record.WhichOneof("record_type") == "exit" for record in records):
            return records
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout} s"
        time.sleep(0.1)


def read_wandb_file(path: Path) -> list:
    """The complete records of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    block = 32768
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, chunks, pending = 7, [], b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        if len(chunk) < length:  # still being written
            break
        assert zlib.crc32(chunk, zlib.crc32(bytes([kind]))) == checksum
        position += 7 + length
        if kind == 1:  # a whole record
            chunks.append(chunk)
        elif kind in (2, 3):  # first and middle parts
            pending += chunk
        else:  # the last part
            chunks.append(pending + chunk)
            pending = b""
    records = []
    for chunk in chunks:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk)
        records.append(record)
    return records


def wandb_history(records) -> list[dict]:
    """History steps as dicts (nested keys joined with ``/``), W&B's own keys left out."""
    steps = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            step = {
                item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in record.history.item
            }
            steps.append({k: v for k, v in step.items() if not k.startswith("_")})
    return steps


def wandb_run_dirs(run_folder: Path) -> list[Path]:
    return sorted((run_folder / "wandb").glob("offline-run-*"))


def nan_as_none(row: dict) -> dict:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


# --- one training run, resumed once, with both loggers ------------------------------------


@pytest.fixture(scope="module")
def wandb_offline(tmp_path_factory):
    """W&B offline, its folders in a temporary directory; its service stopped after."""
    wandb = pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("DIR", "CACHE_DIR", "CONFIG_DIR", "DATA_DIR"):
            (root / name).mkdir()
            patch.setenv(f"WANDB_{name}", str(root / name))
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        patch.setenv("WANDB_PROJECT", "es-toolkit-tests")
        yield
        wandb.teardown()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, wandb_offline):
    """CartPole for 2 generations, resumed to 3 (two sessions, two blocks), logging to
    TensorBoard and W&B, with the episode recorded as a GIF."""
    out = tmp_path_factory.mktemp("runs") / "cartpole"
    config = TrainConfig.for_env(
        "CartPole-v1", num_generations=2, loggers=("tensorboard", "wandb"), **CARTPOLE
    )
    train(config, out, progress=False)
    first_id = read_metadata(out / "checkpoint.npz")["wandb_run_id"]
    video = out / "episode.gif"
    train(
        dataclasses.replace(config, num_generations=3),
        out,
        resume=True,
        progress=False,
        video=video,
    )
    return out, first_id


def test_tensorboard_shows_every_number_of_the_log_by_generation_and_env_steps(trained):
    out, _ = trained
    rows = read_jsonl(out / "metrics.jsonl")
    assert [row["generation"] for row in rows] == [0, 1, 2]
    by_generation = tensorboard_scalars(out / "tensorboard")
    by_env_steps = tensorboard_scalars(out / "tensorboard" / "env_steps")
    assert by_generation == expected_scalars(rows, "generation")
    assert by_env_steps == expected_scalars(rows, "env_steps")
    assert by_generation["generation/eval_return_mean"].keys() == {1, 2}  # evaluated blocks


def test_tensorboard_has_the_config_as_text_and_hyperparameters(trained):
    from tensorboard.plugins.hparams import plugin_data_pb2

    out, _ = trained
    config = json.loads((out / "result.json").read_text())["config"]
    texts = tensorboard_tensors(out / "tensorboard", "text")["config/text_summary"]
    # Each session logs the config it runs with; the resumed one asks for 3 generations.
    assert [event.step for event in texts] == [0, 2]
    text = texts[-1].tensor_proto.string_val[0].decode()
    assert json.loads(text.removeprefix("```json\n").removesuffix("\n```")) == config
    content = tensorboard_run(out / "tensorboard").PluginTagToContent("hparams")
    data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = data.session_start_info.hparams
    assert hparams["env"].string_value == "CartPole-v1"
    assert hparams["population_size"].number_value == 8
    assert hparams["normalize_obs"].bool_value is True
    assert json.loads(hparams["hidden_sizes"].string_value) == config["hidden_sizes"]
    assert json.loads(hparams["loggers"].string_value) == ["tensorboard", "wandb"]
    assert hparams["devices"].string_value == "null"  # None
    assert hparams["strategy_options"].string_value == "{}"  # nothing to flatten
    assert set(hparams) == set(config)


def test_tensorboard_has_the_curve_and_the_episode_frames(trained):
    out, _ = trained
    images = tensorboard_tensors(out / "tensorboard", "images")
    # Each session ends with the curve so far, at its last generation.
    assert [event.step for event in images["curve"]] == [1, 2]
    assert images["curve"][-1].tensor_proto.string_val[2] == (out / "curve.png").read_bytes()
    with Image.open(out / "episode.gif") as gif:
        frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    (first,) = images["evaluation/first_frame"]
    (last,) = images["evaluation/last_frame"]
    np.testing.assert_array_equal(png_pixels(first.tensor_proto.string_val[2]), frames[0])
    np.testing.assert_array_equal(png_pixels(last.tensor_proto.string_val[2]), frames[-1])
    (note,) = tensorboard_tensors(out / "tensorboard", "text")["evaluation/text_summary"]
    assert f"({len(frames)} frames)" in note.tensor_proto.string_val[0].decode()


def test_wandb_history_is_the_log_and_a_resumed_run_continues_the_same_run(trained):
    out, first_id = trained
    rows = read_jsonl(out / "metrics.jsonl")
    sessions = wandb_run_dirs(out)
    assert [path.name.rsplit("-", 1)[1] for path in sessions] == [first_id, first_id]
    assert read_metadata(out / "checkpoint.npz")["wandb_run_id"] == first_id
    history = []
    for session in sessions:
        (path,) = session.glob("*.wandb")
        history += wandb_history(wandb_records(path))
    logged = [nan_as_none(step) for step in history if "generation" in step]
    assert logged == rows  # every key and value of every row, nothing more
    media = [step for step in history if "generation" not in step]
    assert [sorted(k for k in step if k.endswith("_type")) for step in media] == [
        ["curve/_type"],  # each session ends with the curve so far
        ["curve/_type"],
        ["evaluation/_type"],
    ]
    _, curve, video = media
    assert curve["env_steps"] == rows[-1]["env_steps"]  # W&B puts it on the chart's x-axis
    assert (sessions[1] / "files" / curve["curve/path"]).read_bytes() == (
        out / "curve.png"
    ).read_bytes()
    assert video["evaluation/_type"] == "video-file"
    assert (sessions[1] / "files" / video["evaluation/path"]).read_bytes() == (
        out / "episode.gif"
    ).read_bytes()


def test_wandb_has_the_config_the_run_name_and_env_steps_as_x_axis(trained):
    out, _ = trained
    config = json.loads((out / "result.json").read_text())["config"]
    records = wandb_records(next(wandb_run_dirs(out)[-1].glob("*.wandb")))
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "cartpole"  # the run folder's name
    assert run.project == "es-toolkit-tests"  # WANDB_PROJECT
    values = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert {k: v for k, v in values.items() if k != "_wandb"} == config
    metrics = [r.metric for r in records if r.WhichOneof("record_type") == "metric"]
    assert ("*", "env_steps") in [(m.glob_name, m.step_metric) for m in metrics]


# --- a resumed run that logged generations past its checkpoint ----------------------------


def test_a_resumed_tensorboard_log_hides_the_events_past_the_kept_rows(tmp_path):
    """A run that died between logging a block and checkpointing it logs the block again:
    TensorBoard shows the second session's values there, and the first's before."""

    def rows(values):
        return [
            {"generation": g, "env_steps": 10 * (g + 1), "loss": value}
            for g, value in enumerate(values)
        ]

    first = rows([5.0, 4.0, 3.0, 2.0, 1.0])
    with TensorBoardLogger(tmp_path) as logger:
        logger.log_metrics(first)
    again = rows([5.0, 4.0, 3.5, 2.5])  # kept 0 and 1, redid 2 and 3
    with TensorBoardLogger(tmp_path, resume_after=again[1]) as logger:
        logger.log_metrics(again[2:])
    assert tensorboard_scalars(tmp_path) == expected_scalars(again, "generation")
    assert tensorboard_scalars(tmp_path / "env_steps") == expected_scalars(again, "env_steps")
    with TensorBoardLogger(tmp_path) as logger:  # a new run in the same folder
        logger.log_metrics(first[:1])
    assert tensorboard_scalars(tmp_path) == expected_scalars(first[:1], "generation")


# --- optimizations and minimize's callback --------------------------------------------------


def test_optimize_command_logs_every_generation_to_tensorboard(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["optimize", "--objective", "sphere", "--dim", "3", "--population", "8"]
    argv += ["--generations", "4", "--logger", "tensorboard", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert len(rows) == 4
    assert tensorboard_scalars(out / "tensorboard") == expected_scalars(rows, "generation")
    assert not (out / "tensorboard" / "env_steps").exists()  # an optimization has none
    (curve,) = tensorboard_tensors(out / "tensorboard", "images")["curve"]
    assert curve.tensor_proto.string_val[2] == (out / "curve.png").read_bytes()
    saved = read_metadata(out / "checkpoint.npz")["config"]
    assert saved["loggers"] == ["tensorboard"]
    assert "wandb_run_id" not in read_metadata(out / "checkpoint.npz")


def test_a_python_objective_run_is_logged_by_evaluations_too(tmp_path):
    out = tmp_path / "run"
    objective = f"{Path(__file__).parent / '_evaluator_objectives.py'}:wavy"
    config = OptimizeConfig(objective=objective, dim=2, population_size=4, num_generations=3)
    run_optimization(config, out, progress=False, loggers=["tensorboard"])
    rows = read_jsonl(out / "metrics.jsonl")
    assert [row["num_evaluations"] for row in rows] == [5, 10, 15]  # 4 members and the mean
    by_evaluations = tensorboard_scalars(out / "tensorboard" / "num_evaluations")
    assert by_evaluations == expected_scalars(rows, "num_evaluations")


def test_a_logger_is_minimizes_callback(tmp_path):
    def sphere(x):
        return jnp.sum(x**2)

    with TensorBoardLogger(tmp_path) as logger:
        result = minimize(
            sphere,
            jnp.ones(3),
            strategy=open_es(8, sigma=0.3),
            num_generations=7,
            block_size=3,
            callback=logger,
            progress=False,
        )
    logged = tensorboard_scalars(tmp_path)
    assert logged.keys() == {f"generation/{name}" for name in result.metrics}
    for name, values in result.metrics.items():
        expected = [None if math.isnan(v) else v for v in np.asarray(values, float).tolist()]
        assert list(logged[f"generation/{name}"].values()) == expected
        assert list(logged[f"generation/{name}"]) == list(range(7))


def test_a_wandb_logger_is_minimizes_callback(tmp_path, wandb_offline):
    with WandbLogger(dir=tmp_path, name="minimize") as logger:
        result = minimize(
            lambda x: jnp.sum(x**2),
            jnp.ones(2),
            strategy=open_es(8, sigma=0.3),
            num_generations=4,
            block_size=2,
            callback=logger,
            progress=False,
        )
    (path,) = tmp_path.glob("wandb/offline-run-*/*.wandb")
    history = wandb_history(wandb_records(path))
    assert [step["generation"] for step in history] == [0, 1, 2, 3]
    for name, values in result.metrics.items():
        assert [step[name] for step in history] == np.asarray(values, float).tolist()


# --- settings and errors --------------------------------------------------------------------


def test_loggers_are_checked_and_may_change_on_resume():
    config = TrainConfig(loggers=["tensorboard", "wandb", "tensorboard"])
    assert config.loggers == ("tensorboard", "wandb")
    assert TrainConfig.from_json(config.to_json()) == config
    assert resume_config(config, dataclasses.replace(config, loggers=()), "run").loggers == ()
    with pytest.raises(ConfigError, match="loggers must be a list of names from") as error:
        TrainConfig(loggers=("mlflow",))
    assert error.value.field == "loggers"
    with pytest.raises(ConfigError, match="got 'tensorboard'"):
        OptimizeConfig(loggers="tensorboard")
    assert OptimizeConfig(loggers=["wandb"]).loggers == ("wandb",)


def test_a_missing_extra_names_the_logger_and_its_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r'tensorboard logger .*"es_toolkit\[tensorboard\]"'):
        TensorBoardLogger(tmp_path)
    with pytest.raises(ImportError, match=r'wandb logger .*pip install "es_toolkit\[wandb\]"'):
        WandbLogger(dir=tmp_path)
    out = tmp_path / "run"
    argv = ["optimize", "--objective", "sphere", "--generations", "2", "--logger", "wandb"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*argv, "--quiet", "--out", str(out)])
    assert exit_info.value.code == 2
    assert "the wandb logger needs wandb" in capsys.readouterr().err
    assert not out.exists()  # refused before any generation: nothing left behind


def test_train_video_is_checked_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    out = tmp_path / "run"
    for video, message in [
        ("episode.txt", "path must end in .gif or one of .mp4"),
        ("episode.mp4", 'needs imageio and imageio-ffmpeg: pip install "es_toolkit[video]"'),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "--video", str(tmp_path / video), "--out", str(out), "--quiet"])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


def test_logger_flag_takes_known_names_only(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--logger", "mlflow"])
    assert "invalid choice: 'mlflow'" in capsys.readouterr().err


def test_hparam_values_flatten_and_stringify():
    config = {"a": 1, "b": {"c": 0.5, "d": {"e": "x"}}, "f": (1, 2), "g": None, "h": {}}
    assert hparam_values(config) == {
        "a": 1,
        "b.c": 0.5,
        "b.d.e": "x",
        "f": "[1, 2]",
        "g": "null",
        "h": "{}",
    }


# --- the progress line's time left -----------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize(
    ("initial", "done", "seconds", "shown"),
    [
        (0, 5, 10.0, "0.5/s  eta=30s"),  # 15 left at 0.5 per second
        (3, 5, 10.0, "0.2/s  eta=1m15s"),  # resumed at 3: 2 done here in 10 s, 15 left
        (0, 1, 400.0, "0.0/s  eta=2h06m"),  # 19 left at 1 per 400 s: 7600 s
        (4, 4, 10.0, "0.0/s  eta=?"),  # nothing done yet: no rate
        (0, 20, 10.0, "2.0/s  eta=0s"),
    ],
)
def test_progress_shows_the_time_left_at_the_rate(monkeypatch, initial, done, seconds, shown):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    stream = io.StringIO()
    bar = progress.Progress(20, "train", stream=stream, initial=initial)
    clock.now += seconds
    bar.update(done, best=1.5)
    assert stream.getvalue() == f"train  {done}/20  {shown}  {seconds:.1f}s  best=1.5\n"
