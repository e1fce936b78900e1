"""Checkpoints of train state, data-iterator state and run config with orbax.

A checkpoint step directory holds three items: ``state`` (any array pytree, normally a
``TrainState``; orbax ``StandardSave``), ``data`` (the data iterator's JSON state, e.g. a grain
iterator's ``get_state()``) and ``config`` (the run config as JSON). Restoring the state onto a
target tree that carries shardings places every array directly in its target layout, on the
same mesh or on a different one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp

from lnemo.types import PyTree


class Restored(NamedTuple):
    """What ``Checkpointer.restore`` returns.

    Attributes:
      step: the restored step.
      state: the state pytree, laid out as the restore target asked.
      data_state: the data-iterator state saved with it (``None`` if none was given).
      config: the run config saved with it (``None`` if none was given).
    """

    step: int
    state: PyTree
    data_state: Any
    config: Any


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"Checkpointer: {what} must be JSON-serialisable; {err}") from err


def _as_target(leaf: Any) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=getattr(leaf, "sharding", None))


class Checkpointer:
    """Save and restore training checkpoints in ``directory`` (an orbax ``CheckpointManager``).

    Saves are asynchronous: ``save`` returns once the arrays are copied off the devices and
    the files are written in the background; ``wait_until_finished``/``close`` block until they
    are committed. A step is committed atomically, so a process killed mid-save leaves the
    previous checkpoints intact and restorable. Existing checkpoints are never overwritten:
    saving a step that is not newer than the latest one raises. Only the newest
    ``max_to_keep`` steps are kept. Every process of a multi-process run must call ``save``
    and ``restore`` together.

    Args:
      directory: checkpoint root (created if missing; existing checkpoints are kept).
      max_to_keep: number of most recent steps to keep; ``None`` keeps all.
      async_save: write in a background thread.
      config: JSON-serialisable run config stored with every step.

    Example:
      >>> with Checkpointer("/tmp/run", max_to_keep=3, config={"lr": 3e-4}) as ckpt:
      ...     ckpt.save(100, state, data_state=it.get_state())
      ...     restored = ckpt.restore(abstract_state)  # latest step
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        max_to_keep: int | None = 3,
        async_save: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"Checkpointer: max_to_keep must be >= 1 or None, got {max_to_keep!r}")
        _check_json(config, "config")
        self.directory = os.path.abspath(os.fspath(directory))
        self._config = None if config is None else dict(config)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def all_steps(self) -> list[int]:
        """Committed steps, ascending."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest committed step, or ``None`` when the directory holds none."""
        return self._manager.latest_step()

    def save(self, step: int, state: PyTree, *, data_state: Any = None) -> None:
        """Save ``state``, ``data_state`` and the config as ``step`` (asynchronously).

        Args:
          step: the step number; must be newer than every existing step.
          state: pytree of arrays (a ``TrainState``).
          data_state: JSON-serialisable data-iterator state, e.g. a grain iterator's ``get_state()``.
        """
        latest = self.latest_step()
        if latest is not None and step <= latest:
            raise ValueError(
                f"Checkpointer.save: step {step} is not newer than the latest checkpoint {latest} in "
                f"{self.directory}; refusing to overwrite or interleave existing checkpoints"
            )
        _check_json(data_state, "data_state")
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave({"data_state": data_state}),
            config=ocp.args.JsonSave({"config": self._config}),
        )
        if not self._manager.save(step, args=args, force=True):
            raise RuntimeError(f"Checkpointer.save: orbax declined to save step {step} in {self.directory}")

    def restore(self, target: PyTree, *, step: int | None = None) -> Restored:
        """Restore a step onto ``target``'s structure, dtypes and shardings.

        Args:
          target: pytree of ``jax.ShapeDtypeStruct`` with ``sharding`` (e.g.
            ``lnemo.train.abstract_train_state``) or of arrays, whose shardings are reused. The
            shardings may be on a different mesh from the one the checkpoint was saved on.
          step: the step to restore; default the latest.

        Returns:
          ``Restored(step, state, data_state, config)``.
        """
        self._manager.wait_until_finished()
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"Checkpointer.restore: no checkpoint to restore in {self.directory}")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise FileNotFoundError(
                f"Checkpointer.restore: step {step} not in {self.directory}; available steps: {steps}"
            )
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(jax.tree.map(_as_target, target)),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        )
        out = self._manager.restore(step, args=args)
        return Restored(step, out.state, out.data["data_state"], out.config["config"])

    def wait_until_finished(self) -> None:
        """Block until every pending save is committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finish pending saves and release the manager."""
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
