"""Recording an episode of a policy in Gymnasium's own env as a GIF or a video.

Frames come from ``render_mode="rgb_array"``; MuJoCo envs render headless with
``MUJOCO_GL=egl`` (set it before the first MuJoCo import). GIFs are written with Pillow
(a dependency of matplotlib); videos (.mp4) with imageio and its ffmpeg plugin, the
``video`` extra.
"""

import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from es_toolkit.gym.env import import_gymnasium, make_env
from es_toolkit.gym.episodes import EpisodeBatch, EpisodeResults, run_batch

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi")


def record_episode(
    env_id: str,
    act,
    params: Any,
    obs_stats: Any,
    path: str | Path,
    *,
    seed: int = 0,
    max_episode_steps: int | None = None,
    fps: int | None = None,
) -> EpisodeResults:
    """Runs one episode of ``act(params, normalize(obs))`` and writes its frames to
    ``path`` (``.gif`` or a video suffix). Returns the episode's results, as a rollout
    worker gives them (return, length and observation statistics).
    """
    path = check_recording(path)
    gym = import_gymnasium()
    env = gym.wrappers.RenderCollection(
        make_env(env_id, max_episode_steps=max_episode_steps, render_mode="rgb_array")
    )
    try:
        one = np.zeros(1, np.int64)
        population = jax.tree.map(lambda leaf: np.asarray(leaf)[None], params)
        stats = None if obs_stats is None else jax.tree.map(np.asarray, obs_stats)
        episode = run_batch([env], act, EpisodeBatch(population, one, one, one + seed, stats))
        frames = [np.asarray(frame) for frame in env.render()]
        fps = fps or int(env.metadata.get("render_fps", 30))
    finally:
        env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        _write_gif(frames, path, fps)
    else:
        _write_video(frames, path, fps)
    return episode


def check_recording(path: str | Path) -> Path:
    """``path`` if an episode can be written there: a known suffix, and for videos the
    ``video`` extra installed. Raises before any episode is run."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".gif" and suffix not in VIDEO_SUFFIXES:
        raise ValueError(
            f"path must end in .gif or one of {', '.join(VIDEO_SUFFIXES)}, got {str(path)!r}."
        )
    if suffix != ".gif":
        try:
            import imageio.v3  # noqa: F401
            import imageio_ffmpeg  # noqa: F401  imageio finds ffmpeg through it
        except ImportError as error:
            raise ImportError(
                f"writing {suffix} videos needs imageio and imageio-ffmpeg: "
                'pip install "es_toolkit[video]"'
            ) from error
    return path


def _write_gif(frames: list[np.ndarray], path: Path, fps: int) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=1000 / fps, loop=0, optimize=True
    )


def _write_video(frames: list[np.ndarray], path: Path, fps: int) -> None:
    import imageio.v3 as iio

    with warnings.catch_warnings():
        # imageio starts ffmpeg with fork + exec; JAX warns about any fork, but nothing runs
        # between the two in the child.
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        iio.imwrite(path, np.stack(frames), fps=fps)
