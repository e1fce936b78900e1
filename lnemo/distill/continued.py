"""Continued pretraining: keep training a (distilled) model on a user corpus, with an LM objective or KD.

Llama-Nemotron Ultra follows its global KD with continued pretraining on general text. This is the same
sharded loop as pretraining and distillation, started from given weights and fed a corpus of documents.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
from jax.sharding import Mesh

from lnemo.data import Tokenizer, text_pipeline
from lnemo.distill.objective import KDObjective, kd_objective
from lnemo.distill.trainer import make_distill_eval_fn, setup_distillation
from lnemo.models import ModelConfig
from lnemo.train import adamw, fit, make_eval_fn, warmup_cosine
from lnemo.train.metrics import MetricsWriter
from lnemo.train.model_setup import setup_model_training
from lnemo.train.objectives import lm_objective
from lnemo.train.state import TrainState
from lnemo.types import PyTree


def continued_pretraining(
    config: ModelConfig,
    params: PyTree,
    texts: Sequence[str],
    tokenizer: Tokenizer,
    mesh: Mesh,
    *,
    num_steps: int,
    seq_len: int,
    batch_size: int,
    learning_rate: float = 3e-4,
    warmup_steps: int = 0,
    teacher: tuple[ModelConfig, PyTree] | None = None,
    objective: KDObjective | None = None,
    eval_texts: Sequence[str] = (),
    eval_batches: int = 4,
    seed: int = 0,
    writers: Sequence[MetricsWriter] = (),
    progress: bool = False,
) -> tuple[TrainState, dict[str, float]]:
    """Train ``params`` further on ``texts`` (repeated, shuffled each epoch) and evaluate on ``eval_texts``.

    Without ``teacher`` the objective is next-token cross-entropy (``lm_objective``). With a teacher it is
    ``objective`` (default: forward KL to the teacher's logits, ``kd_objective(..., hidden_weight=0.0)``),
    the teacher frozen on the same mesh. AdamW with linear warmup and cosine decay to 10 %.

    Args:
      config: the model to train.
      params: its starting parameters.
      texts: the corpus, one document per entry (``lnemo.data.read_text`` / ``read_jsonl``).
      tokenizer: the tokenizer.
      mesh: device mesh.
      num_steps: optimiser steps.
      seq_len: packed row length.
      batch_size: global rows per step (divisible by the process count).
      learning_rate: peak learning rate.
      warmup_steps: linear warmup steps (< num_steps).
      teacher: ``(teacher_config, teacher_params)`` to distil from, or None for the LM objective.
      objective: the KD objective with a teacher; ignored without one.
      eval_texts: held-out documents; empty = no evaluation.
      eval_batches: held-out batches evaluated (at most).
      seed: shuffle and initialisation seed.
      writers: metric writers for ``fit``.
      progress: show a progress bar.

    Returns:
      ``(state, metrics)``: the final ``TrainState`` and the held-out token means (``lm`` always, plus
      ``kl`` with a teacher); empty metrics without ``eval_texts``.

    Example:
      >>> state, metrics = continued_pretraining(child, child_params, read_text("corpus.txt"), ByteTokenizer(),
      ...                                        make_mesh({"data": -1}), num_steps=500, seq_len=256,
      ...                                        batch_size=16, teacher=(parent, parent_params))

    References:
      Llama-Nemotron, arXiv 2505.00949 (LN-Ultra: KD then continued pretraining; reference sheet §1).
    """
    if batch_size % jax.process_count():
        raise ValueError(f"batch_size={batch_size} must divide by the process count {jax.process_count()}")
    local = batch_size // jax.process_count()
    schedule = warmup_cosine(learning_rate, warmup_steps=warmup_steps, total_steps=num_steps)
    optimizer = adamw(schedule)
    key = jax.random.key(seed)
    lm = lm_objective(config)
    if teacher is None:
        run = setup_model_training(config, lm, optimizer, mesh, key, init_params=lambda k: params,
                                   learning_rate_fn=schedule)
    else:
        teacher_config, teacher_params = teacher
        objective = objective or kd_objective(config, teacher_config, hidden_weight=0.0)
        run = setup_distillation(config, teacher_config, teacher_params, objective, optimizer, mesh, key,
                                 init_params=lambda k: params, learning_rate_fn=schedule)
    data = iter(text_pipeline(texts, tokenizer, seq_len=seq_len, batch_size=local, seed=seed, num_epochs=None))
    state = fit(run.step, run.state, data, num_steps=num_steps, batch_sharding=run.batch_sharding,
                writers=writers, progress=progress)
    if not eval_texts:
        return state, {}
    held_out = list(itertools.islice(iter(text_pipeline(eval_texts, tokenizer, seq_len=seq_len, batch_size=local,
                                                         shuffle=False)), eval_batches))
    if not held_out:
        raise ValueError(f"eval_texts fill no batch of {local} rows x {seq_len} tokens; give more held-out text")
    metrics = {"lm": make_eval_fn(lm, held_out, batch_sharding=run.batch_sharding)(state)["loss"]}
    if teacher is not None:
        kl = kd_objective(config, teacher[0], hidden_weight=0.0)
        metrics["kl"] = make_distill_eval_fn(kl, run.teacher_params, held_out,
                                             batch_sharding=run.batch_sharding)(state)["kl"]
    return state, metrics
