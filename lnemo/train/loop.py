"""The host training loop: data -> sharded batches -> step, with eval, checkpoints, logs, progress."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from lnemo.checkpoint import Checkpointer
from lnemo.train.metrics import MetricsWriter
from lnemo.train.state import TrainState
from lnemo.train.step import TrainStep
from lnemo.types import PyTree


def global_batch(local_batch: Mapping[str, np.ndarray], sharding: jax.sharding.Sharding) -> PyTree:
    """Assemble this process's rows into global arrays laid out with ``sharding``.

    With one process the local batch is the global batch. With several, each process passes
    its own rows (``global batch / process count`` of them) and the result spans all processes.

    Args:
      local_batch: dict of numpy arrays, leading dimension = this process's batch rows.
      sharding: batch sharding (``lnemo.sharding.batch_sharding``).

    Returns:
      The same dict of global ``jax.Array``.
    """

    def place(path: Any, x: np.ndarray) -> jax.Array:
        try:
            return jax.make_array_from_process_local_data(sharding, np.asarray(x))
        except ValueError as err:
            raise ValueError(
                f"global_batch: batch{jax.tree_util.keystr(path)} of local shape {np.shape(x)} does not fit the "
                f"batch sharding {sharding}: {err}"
            ) from err

    return jax.tree_util.tree_map_with_path(place, local_batch)


def _save(checkpointer: Checkpointer, state: TrainState, data: Any, step: int) -> None:
    if checkpointer.latest_step() == step:
        return
    data_state = data.get_state() if hasattr(data, "get_state") else None
    checkpointer.save(step, state, data_state=data_state)


def fit(
    train_step: TrainStep,
    state: TrainState,
    data: Iterator[Mapping[str, np.ndarray]],
    *,
    num_steps: int,
    batch_sharding: jax.sharding.Sharding,
    eval_fn: Callable[[TrainState], Mapping[str, float]] | None = None,
    eval_every: int = 0,
    checkpointer: Checkpointer | None = None,
    checkpoint_every: int = 0,
    writers: Sequence[MetricsWriter] = (),
    log_every: int = 10,
    flops_per_token: float | None = None,
    peak_flops: float | None = None,
    progress: bool = True,
) -> TrainState:
    """Train from ``state.step`` up to ``num_steps`` steps, evaluating, checkpointing and logging.

    Every step takes the next batch of ``data`` (process-local numpy rows), places it with
    ``global_batch`` and calls ``train_step``. Steps are dispatched asynchronously; the host
    blocks only to log. Logged records are the means of each step metric over the steps since
    the previous record, plus ``tokens_per_sec`` (the step's ``tokens`` metric over wall time,
    the first step of the call, which compiles, excluded) and, given ``flops_per_token`` and
    ``peak_flops``, ``mfu = tokens_per_sec * flops_per_token / peak_flops``. Evaluation
    results are logged with an ``eval/`` prefix.

    If ``data`` has ``get_state()`` (a grain iterator, or anything returning JSON), its state is
    saved with every checkpoint, taken when exactly the batches of the saved steps have been
    consumed; restoring it with ``set_state`` makes a resumed run see the same batches. A
    checkpoint is also written at the end and on Ctrl-C (``KeyboardInterrupt``, re-raised after
    the save has committed). Writers and the progress bar run on process 0 only.

    Args:
      train_step: jitted ``(state, batch) -> (state, metrics)`` (``jit_train_step``), which
        may donate ``state``.
      state: the state to continue from (``state.step`` steps done).
      data: iterator of batch dicts of numpy arrays; stopping early ends training.
      num_steps: total number of steps to reach (not the number to run now).
      batch_sharding: sharding of each batch leaf.
      eval_fn: ``state -> {name: value}``, called every ``eval_every`` steps and at the end.
      eval_every: evaluation period in steps; 0 = only at the end (if ``eval_fn``).
      checkpointer: where to save; ``None`` saves nothing.
      checkpoint_every: checkpoint period in steps; 0 = only at the end and on Ctrl-C.
      writers: metric writers (``JsonlWriter``, ``TensorBoardWriter``); closed by the caller.
      log_every: logging period in steps.
      flops_per_token: model FLOPs per trained token (forward + backward), for MFU.
      peak_flops: the hardware's peak FLOP/s over all devices, for MFU.
      progress: show a tqdm bar with loss, tokens/s and MFU.

    Returns:
      The final ``TrainState``.
    """
    if log_every < 1:
        raise ValueError(f"fit: log_every must be >= 1, got {log_every}")
    lead = jax.process_index() == 0
    writers = list(writers) if lead else []
    step = int(state.step)
    bar = tqdm(total=num_steps, initial=step, disable=not (progress and lead), dynamic_ncols=True)
    window: list[dict[str, jax.Array]] = []
    timed_tokens: list[jax.Array] = []
    clock, first = time.perf_counter(), True

    def flush() -> None:
        nonlocal clock, window, timed_tokens
        record = _summarise(window)
        now = time.perf_counter()
        if timed_tokens and now > clock:
            record["tokens_per_sec"] = float(np.sum(jax.device_get(timed_tokens))) / (now - clock)
            if flops_per_token and peak_flops:
                record["mfu"] = record["tokens_per_sec"] * flops_per_token / peak_flops
        clock, window, timed_tokens = now, [], []
        _log(writers, bar, step, record)

    try:
        while step < num_steps:
            try:
                batch = next(data)
            except StopIteration:
                break
            state, metrics = train_step(state, global_batch(batch, batch_sharding))
            step += 1
            bar.update(1)
            window.append(metrics)
            if first:  # the first step compiles: leave it out of the throughput
                jax.block_until_ready(metrics)
                clock, first = time.perf_counter(), False
            else:
                timed_tokens.append(metrics["tokens"])
            if step % log_every == 0:
                flush()
            if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == num_steps):
                results = {f"eval/{k}": float(v) for k, v in eval_fn(state).items()}
                _log(writers, None, step, results)
            if checkpointer is not None and checkpoint_every and step % checkpoint_every == 0:
                _save(checkpointer, state, data, step)
        if window:
            flush()
        if checkpointer is not None:
            _save(checkpointer, state, data, step)
            checkpointer.wait_until_finished()
    except KeyboardInterrupt:
        if checkpointer is not None:
            if any(x.is_deleted() for x in jax.tree.leaves(state)):
                bar.write("fit: interrupted inside a step whose input was donated; no checkpoint saved")
            else:
                _save(checkpointer, state, data, int(state.step))
                checkpointer.wait_until_finished()
                bar.write(f"fit: interrupted; saved checkpoint at step {int(state.step)}")
        raise
    finally:
        bar.close()
    return state


def _summarise(window: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(window)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def _log(writers: Sequence[MetricsWriter], bar: Any, step: int, record: dict[str, float]) -> None:
    for writer in writers:
        writer.write(step, record)
    if bar is not None:
        shown = {}
        if "loss" in record:
            shown["loss"] = f"{record['loss']:.4f}"
        if "tokens_per_sec" in record:
            shown["tok/s"] = f"{record['tokens_per_sec']:,.0f}"
        if "mfu" in record:
            shown["mfu"] = f"{record['mfu']:.1%}"
        bar.set_postfix(shown, refresh=False)
