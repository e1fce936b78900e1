"""Checkpoints of train state, data-iterator state and run config with orbax.

A checkpoint step directory holds three items: ``state`` (any array pytree, normally a
``TrainState``; orbax ``StandardSave``), ``data`` (the data iterators' JSON states, e.g. a grain
iterator's ``get_state()``, one per process) and ``config`` (the run config as JSON). Restoring
the state onto a target tree that carries shardings places every array directly in its target
layout, on the same mesh or on a different one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from lnemo.types import PyTree


class Restored(NamedTuple):
    """What ``Checkpointer.restore`` returns.

    Attributes:
      step: the restored step.
      state: the state pytree, laid out as the restore target asked.
      data_state: this process's data-iterator state saved with it (``None`` if none was given).
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


def _gather_json(value: Any) -> list[Any]:
    """Every process's JSON value, in process order (a collective: all processes must call it)."""
    if jax.process_count() == 1:
        return [value]
    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    lengths = multihost_utils.process_allgather(np.array([data.size], np.int32)).reshape(-1)
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: data.size] = data
    rows = multihost_utils.process_allgather(padded)
    return [json.loads(bytes(row[:n]).decode()) for row, n in zip(rows, lengths, strict=True)]


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
          data_state: this process's JSON-serialisable data-iterator state, e.g. a grain
            iterator's ``get_state()``. Each process's state is kept (they differ when every
            process reads its own shard) and ``restore`` hands each process its own.
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
            data=ocp.args.JsonSave({"data_states": _gather_json(data_state)}),
            config=ocp.args.JsonSave({"config": self._config}),
        )
        if not self._manager.save(step, args=args, force=True):
            raise RuntimeError(f"Checkpointer.save: orbax declined to save step {step} in {self.directory}")

    def restore(self, target: PyTree, *, step: int | None = None, ignore_data_state: bool = False) -> Restored:
        """Restore a step onto ``target``'s structure, dtypes and shardings.

        Args:
          target: pytree of ``jax.ShapeDtypeStruct`` with ``sharding`` (e.g.
            ``lnemo.train.abstract_train_state``) or of arrays, whose shardings are reused. The
            shardings may be on a different mesh from the one the checkpoint was saved on.
          step: the step to restore; default the latest.
          ignore_data_state: return ``data_state=None`` instead of this process's saved data
            state; needed when the number of processes changed since the save.

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
        data_states = out.data["data_states"]
        if ignore_data_state or all(d is None for d in data_states):
            data_state = None
        elif len(data_states) != jax.process_count():
            raise ValueError(
                f"Checkpointer.restore: step {step} in {self.directory} holds the data states of "
                f"{len(data_states)} processes but this run has {jax.process_count()}; pass "
                "ignore_data_state=True to restore only the train state and start the data afresh"
            )
        else:
            data_state = data_states[jax.process_index()]
        return Restored(step, out.state, data_state, out.config["config"])

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
