"""Experiment trackers through accelerate (TensorBoard, Weights & Biases): which ones a run
starts, and one way to send scalars and clips to each.

Two step axes: the denoiser's training step (``train/*``, ``eval/*``, ``samples/*``) and the
autoencoder phase's own (``autoencoder/*``), which runs first. TensorBoard keeps the phase in
its own folder (``tensorboard/autoencoder``), so purging the steps a resumed run repeats
(``purge_step``) never hides it; W&B plots each group against its own step metric.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from accelerate.tracking import TensorBoardTracker, WandBTracker
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

from text2sign.data.video_io import gif_bytes

REPORT_TO = {"tensorboard": ["tensorboard"], "wandb": ["wandb"],
             "all": ["tensorboard", "wandb"], "none": []}
GIF_FPS = 8


def tracker_names(report_to: str) -> list[str]:
    """accelerate's ``log_with`` for ``train.report_to``; W&B must be installed."""
    if report_to not in REPORT_TO:
        raise ValueError(f"train.report_to={report_to!r} is not one of {list(REPORT_TO)}")
    names = REPORT_TO[report_to]
    if "wandb" in names:
        try:  # W&B is the optional [wandb] extra
            import wandb  # noqa: F401
        except ImportError:
            raise ValueError(f"train.report_to={report_to} needs Weights & Biases: pip install "
                             "'text2sign[wandb]' (WANDB_MODE=offline logs without an account "
                             "or network), or use train.report_to=tensorboard") from None
    return names


def accelerate_trackers(report_to: str, out: Path, resume_step: int) -> list[Any]:
    """accelerate's ``log_with`` for ``train.report_to``: TensorBoard in ``out/tensorboard``,
    purging the steps after the checkpoint a run resumes from (they are logged again); W&B in
    project ``text2sign`` (or $WANDB_PROJECT), each start of a run its own W&B run, grouped by
    the run's name. Trackers start in ``init_trackers``, on the main process only."""
    names = tracker_names(report_to)
    trackers = []
    if "tensorboard" in names:
        purge = {"purge_step": resume_step + 1} if resume_step else {}
        trackers.append(TensorBoardTracker("tensorboard", str(out), **purge))
    if "wandb" in names:
        trackers.append(WandBTracker(os.environ.get("WANDB_PROJECT", "text2sign"),
                                     dir=str(out), group=out.name,
                                     name=out.name + (f"@{resume_step}" if resume_step else "")))
    return trackers


def gif_summary(tag: str, videos: np.ndarray, fps: float):
    """A TensorBoard image summary holding an animated GIF (what add_video writes, without
    needing moviepy): clips side by side, uint8 (T_i, H, W, 3) each; a shorter clip holds its
    last frame."""
    length = max(len(v) for v in videos)
    held = [v[np.minimum(np.arange(length), len(v) - 1)] for v in videos]  # (T, H, W, 3) each
    strip = np.concatenate(held, axis=2)  # (T, H, N*W, 3)
    image = Summary.Image(height=strip.shape[1], width=strip.shape[2], colorspace=3,
                          encoded_image_string=gif_bytes(strip, fps))
    return Summary(value=[Summary.Value(tag=tag, image=image)])


class Trackers:
    """The started trackers of the main process (none on the others)."""

    def __init__(self, accelerator: Any, names: list[str], out: Path):
        main = accelerator.is_main_process
        self.out = out
        self.tensorboard = (accelerator.get_tracker("tensorboard", unwrap=True)
                            if main and "tensorboard" in names else None)
        self.wandb = accelerator.get_tracker("wandb", unwrap=True) if main and "wandb" in names \
            else None
        self._autoencoder_writer = None
        if self.wandb is not None:
            for group, axis in (("train", "train/step"), ("eval", "train/step"),
                                ("samples", "train/step"), ("autoencoder", "autoencoder/step")):
                self.wandb.define_metric(axis)
                self.wandb.define_metric(f"{group}/*", step_metric=axis)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Numbers named ``group/name``; ``autoencoder/*`` go on the autoencoder's axis."""
        if not values:
            return
        phase = next(iter(values)).split("/", 1)[0]
        axis = "autoencoder/step" if phase == "autoencoder" else "train/step"
        if self.tensorboard is not None:
            writer = self.tensorboard if phase != "autoencoder" else self._autoencoder_tb()
            for name, value in values.items():
                writer.add_scalar(name, value, global_step=step)
        if self.wandb is not None:
            self.wandb.log({**values, axis: step})

    def videos(self, tag: str, videos: np.ndarray | list[np.ndarray], captions: list[str],
               step: int, fps: float = GIF_FPS) -> None:
        """Clips uint8 (N, T, H, W, 3) or a list of (T_i, H, W, 3): one animated GIF strip in
        TensorBoard, one ``wandb.Video`` per clip in W&B, playing at ``fps``."""
        if self.tensorboard is not None:
            self.tensorboard._get_file_writer().add_summary(
                gif_summary(f"{tag}/" + " | ".join(captions), videos, fps), step)
        if self.wandb is not None:
            import wandb  # the optional [wandb] extra (tracker_names checked it is there)

            self.wandb.log({
                f"{tag}/{i}": wandb.Video(io.BytesIO(gif_bytes(video, fps)),
                                          caption=caption, format="gif")
                for i, (video, caption) in enumerate(zip(videos, captions, strict=True))
            } | {"train/step": step})

    def _autoencoder_tb(self):
        if self._autoencoder_writer is None:
            self._autoencoder_writer = SummaryWriter(str(self.out / "tensorboard" /
                                                         "autoencoder"))
        return self._autoencoder_writer

    def close(self) -> None:
        if self._autoencoder_writer is not None:
            self._autoencoder_writer.close()
