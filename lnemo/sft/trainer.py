"""The SFT driver: run a schedule of stages on the training engine, sharded over a mesh."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from lnemo.data import Tokenizer
from lnemo.models import ModelConfig, param_logical_axes
from lnemo.sft.data import sft_pipeline
from lnemo.sft.loss import sft_loss
from lnemo.sft.schedule import Stage
from lnemo.sft.template import ChatFormat
from lnemo.sharding import batch_sharding, make_mesh, param_shardings
from lnemo.train import (
    MetricsWriter,
    adamw,
    fit,
    init_train_state,
    jit_train_step,
    make_train_step,
    train_state_shardings,
    warmup_cosine,
)
from lnemo.types import PyTree


class _History:
    """Collects logged records with the per-mode losses derived from their sums."""

    def __init__(self, stage: str) -> None:
        self.stage, self.records = stage, []

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        record = {"stage": self.stage, "step": step, **metrics}
        for mode in ("on", "off"):
            if metrics.get(f"tokens_{mode}", 0) > 0:
                record[f"loss_{mode}"] = metrics[f"loss_sum_{mode}"] / metrics[f"tokens_{mode}"]
        if metrics.get("tokens", 0) > 0 and "correct" in metrics:
            record["token_accuracy"] = metrics["correct"] / metrics["tokens"]
        self.records.append(record)

    def close(self) -> None:
        pass


def train_sft(config: ModelConfig, params: PyTree, stages: Sequence[Stage], tokenizer: Tokenizer, *, seq_len: int,
              batch_size: int, mesh: Mesh | None = None, seed: int = 0, fmt: ChatFormat = ChatFormat(),
              writers: Sequence[MetricsWriter] = (), log_every: int = 10,
              progress: bool = False) -> tuple[PyTree, list[dict[str, float]]]:
    """Fine-tune ``params`` through ``stages`` in order; each stage restarts the optimiser.

    Every stage packs its examples into ``[batch_size, seq_len]`` rows (``sft_pipeline``), builds AdamW
    with its warmup-cosine schedule, and runs ``lnemo.train.fit`` for ``stage.num_steps`` steps with
    the loss on assistant tokens only (``sft_loss``).

    Args:
      config: the model.
      params: the starting parameters (e.g. a pretrained model).
      stages: the schedule (``Stage``, ``reasoning_then_mixed``).
      tokenizer: the tokenizer of the examples.
      seq_len: packed row length T.
      batch_size: global rows per step B (must divide by the mesh's batch axes).
      mesh: device mesh; default every device on one ``"data"`` axis.
      seed: data shuffle and dropout seed.
      fmt: the turn format (for the per-mode metrics).
      writers: extra metric writers (receive every stage's records).
      log_every: logging period in steps.
      progress: show a progress bar.

    Returns:
      ``(params, history)``: the final parameters and the logged records, each with ``stage``, ``step``,
      ``loss``, ``loss_on``, ``loss_off`` (when present), ``token_accuracy`` and the step metrics.

    Example:
      >>> stages = reasoning_then_mixed(ProblemSource(), tok, steps=(50, 100), learning_rate=3e-4)  # doctest: +SKIP
      >>> params, history = train_sft(cfg, params, stages, tok, seq_len=256, batch_size=16)  # doctest: +SKIP
    """
    mesh = mesh or make_mesh({"data": -1})
    shardings = param_shardings(params, param_logical_axes(config), mesh)
    data_sharding = batch_sharding(mesh)
    history: list[dict[str, float]] = []
    for i, stage in enumerate(stages):
        schedule = warmup_cosine(stage.learning_rate, warmup_steps=stage.warmup_steps,
                                 total_steps=max(stage.num_steps, stage.warmup_steps + 1),
                                 final_lr_ratio=stage.final_lr_ratio)
        tx = adamw(schedule, weight_decay=stage.weight_decay)
        state_shardings = train_state_shardings(tx, params, shardings)
        key = jax.random.key(seed + i)
        state = jax.jit(lambda p, k: init_train_state(p, tx, k), out_shardings=state_shardings)(params, key)
        step = jit_train_step(make_train_step(sft_loss(config), tx, learning_rate_fn=schedule), state_shardings,
                              data_sharding)
        pipeline = sft_pipeline(stage.examples, tokenizer, seq_len=seq_len, batch_size=batch_size // jax.process_count(),
                                seed=seed + i, fmt=fmt)
        recorder = _History(stage.name)
        state = fit(step, state, iter(pipeline), num_steps=stage.num_steps, batch_sharding=data_sharding,
                    writers=[recorder, *writers], log_every=log_every, progress=progress)
        params = state.params
        history.extend(recorder.records)
    return params, history


def final_losses(history: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The last logged ``loss``, ``loss_on`` and ``loss_off`` of a ``train_sft`` history."""
    out: dict[str, float] = {}
    for record in history:
        out.update({k: float(np.asarray(record[k])) for k in ("loss", "loss_on", "loss_off") if k in record})
    return out
