"""Reading the images and videos a run writes, for loggers that log them by their pixels:
an image's size and channels, and a recorded episode's first and last frames."""

from pathlib import Path

import numpy as np


def image_shape(path: str | Path) -> tuple[int, int, int]:
    """``(height, width, channels)`` of an image file (PNG, JPEG, GIF)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.height, image.width, len(image.getbands())


def end_frames(path: str | Path) -> tuple[np.ndarray, np.ndarray, int]:
    """The first and last frames of a GIF or video file as ``(height, width, 3)`` uint8
    RGB arrays, and the number of frames.

    GIFs are read with Pillow; videos with imageio's ffmpeg plugin (the ``video`` extra,
    which recording them needed too).
    """
    path = Path(path)
    if path.suffix.lower() == ".gif":
        return _gif_end_frames(path)
    try:
        import imageio.v3 as iio
    except ImportError as error:
        raise ImportError(
            f"reading the frames of {path} needs imageio and imageio-ffmpeg: "
            'pip install "es_toolkit[video]"'
        ) from error
    first = last = None
    count = 0
    for frame in iio.imiter(path):
        first = frame if first is None else first
        last, count = frame, count + 1
    if first is None:
        raise ValueError(f"{path} holds no frames.")
    return _rgb(first), _rgb(last), count


def _gif_end_frames(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    from PIL import Image

    with Image.open(path) as image:
        count = getattr(image, "n_frames", 1)
        first = np.asarray(image.convert("RGB"))
        image.seek(count - 1)  # Pillow composes the frames up to this one
        last = np.asarray(image.convert("RGB"))
    return first, last, count


def _rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame, dtype=np.uint8)
    if frame.ndim == 2:
        return np.repeat(frame[..., None], 3, axis=-1)
    return frame[..., :3]
