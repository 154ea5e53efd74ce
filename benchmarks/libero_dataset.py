"""LIBERO-shaped LeRobot datasets (v3.0) the tests and benchmarks build on disk.

The schema of ``lerobot/libero``: two cameras (``observation.images.image`` and
``observation.images.image2``, stored as MP4), an 8-dim ``observation.state``, a 7-dim
``action``, 10 fps, real LIBERO task strings. Episodes cycle through the tasks (episode ``e`` is
of task ``e % len(tasks)``) and are packed ``episodes_per_file`` to a data file and to a video
file, as the Hub's datasets pack many episodes per file. Values are a function of the episode and
frame index, so a test can tell which episode a frame came from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lerobot.configs import RGBEncoderConfig
from lerobot.datasets.lerobot_dataset import LeRobotDataset

# Real task strings of the LIBERO benchmark definitions (libero_spatial, _object, _goal, _10).
LIBERO_TASKS = [
    "pick up the black bowl between the plate and the ramekin and place it on the plate",
    "pick up the alphabet soup and place it in the basket",
    "open the middle drawer of the cabinet",
    "put both the alphabet soup and the tomato sauce in the basket",
    "pick up the black bowl next to the ramekin and place it on the plate",
    "put the bowl on the stove",
]
CAMERAS = ("observation.images.image", "observation.images.image2")
STATE_DIM, ACTION_DIM, FPS = 8, 7, 10


def libero_features(image_size: int, video: bool = True) -> dict[str, dict]:
    camera = {"dtype": "video" if video else "image", "shape": (image_size, image_size, 3),
              "names": ["height", "width", "channels"]}
    return {
        **{key: dict(camera) for key in CAMERAS},
        "observation.state": {"dtype": "float32", "shape": (STATE_DIM,), "names": None},
        "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
    }


def episode_frame(episode: int, frame: int, image_size: int) -> dict[str, np.ndarray]:
    """Frame ``frame`` of episode ``episode``: state[0] = episode, state[1] = frame."""
    state = np.full(STATE_DIM, 0.5, dtype=np.float32)
    state[0], state[1] = episode, frame
    action = np.linspace(-1, 1, ACTION_DIM, dtype=np.float32) * (episode + 1) / 10
    images = {}
    for c, key in enumerate(CAMERAS):
        image = np.zeros((image_size, image_size, 3), dtype=np.uint8)
        image[..., c] = 40 + 10 * (episode % 20)  # flat colours survive video compression
        image[..., 2] = 10 * frame % 250
        images[key] = image
    return {**images, "observation.state": state, "action": action}


def build_libero_dataset(
    root,
    tasks: list[str],
    episodes_per_task: int,
    frames_per_episode: int,
    image_size: int = 16,
    episodes_per_file: int = 2,
    *,
    repo_id: str = "lerobot/libero",
    video: bool = True,
) -> Path:
    """Build the dataset at ``root`` (which must not exist yet) and return ``root``.

    A new data and video file is started every ``episodes_per_file`` episodes by finalising and
    resuming the dataset (``LeRobotDataset.resume`` continues a dataset in the next file).
    """
    root = Path(root)
    open_kwargs = {"rgb_encoder": RGBEncoderConfig(vcodec="h264")}  # SVT-AV1 rejects frames this small
    dataset = LeRobotDataset.create(repo_id, fps=FPS, features=libero_features(image_size, video),
                                    root=root, use_videos=video, **open_kwargs)
    for episode in range(len(tasks) * episodes_per_task):
        if episode and episode % episodes_per_file == 0:
            dataset.finalize()
            dataset = LeRobotDataset.resume(repo_id, root=root, **open_kwargs)
        for frame in range(frames_per_episode):
            dataset.add_frame({**episode_frame(episode, frame, image_size), "task": tasks[episode % len(tasks)]})
        # one camera after the other: a process pool per episode forks this multi-threaded process
        dataset.save_episode(parallel_encoding=False)
    dataset.finalize()
    return root
