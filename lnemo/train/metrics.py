"""Metric writers for the host loop: JSON lines and TensorBoard event files."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Protocol


class MetricsWriter(Protocol):
    """Receives one dict of scalar metrics per logged step."""

    def write(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class JsonlWriter:
    """Append ``{"step": step, **metrics}`` as one JSON line per call; flushed every write.

    The file is opened in append mode, so a resumed run continues the same file (steps after
    the restored checkpoint then appear twice; the later record is the resumed one).

    Args:
      path: output file; parent directories are created.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "a")  # noqa: SIM115 - kept open for the writer's lifetime

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        self._file.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class TensorBoardWriter:
    """Scalars to TensorBoard event files through ``tensorboardX.SummaryWriter``.

    Args:
      logdir: event-file directory (``tensorboard --logdir`` it).
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        from tensorboardX import SummaryWriter  # imported here: it pulls in torch when installed

        self._writer = SummaryWriter(str(logdir))

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, float(value), step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
