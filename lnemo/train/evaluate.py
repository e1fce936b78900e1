"""Held-out evaluation with the training loss contract, for ``fit(eval_fn=...)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from lnemo.train.loop import global_batch
from lnemo.train.state import TrainState
from lnemo.train.step import SumLossFn


def make_eval_fn(
    loss_fn: SumLossFn,
    batches: Sequence[Mapping[str, np.ndarray]],
    *,
    batch_sharding: jax.sharding.Sharding,
    seed: int = 0,
) -> Callable[[TrainState], dict[str, float]]:
    """An ``eval_fn`` computing the token-mean loss of ``loss_fn`` over fixed batches.

    $$ \\mathrm{loss} = \\frac{\\sum_b \\mathrm{loss\\_sum}_b}{\\max(1, \\sum_b \\mathrm{tokens}_b)} $$

    The batches are placed on the devices once; the per-batch sums run in one jitted function
    (compiled once, on the first call). Other ``aux`` entries are summed over the batches.

    Args:
      loss_fn: ``(params, batch, rng) -> (loss_sum, aux)`` with ``aux["tokens"]``, as for
        ``make_train_step``.
      batches: held-out batches, process-local numpy dicts (like training batches).
      batch_sharding: sharding of each batch leaf.
      seed: PRNG seed of the ``rng`` passed to ``loss_fn`` (the same every call).

    Returns:
      ``state -> {"loss": ..., "tokens": ..., **other aux sums}`` as Python floats.

    Example:
      >>> eval_fn = make_eval_fn(loss_fn, held_out, batch_sharding=batch_sharding(mesh))
      >>> fit(step, state, data, num_steps=1000, batch_sharding=..., eval_fn=eval_fn, eval_every=100)
    """
    if not batches:
        raise ValueError("make_eval_fn: batches is empty; give at least one held-out batch")
    placed = [global_batch(batch, batch_sharding) for batch in batches]
    rng = jax.random.key_data(jax.random.key(seed))
    sums = jax.jit(lambda params, batch: loss_fn(params, batch, rng))

    def eval_fn(state: TrainState) -> dict[str, float]:
        outs = jax.device_get([sums(state.params, batch) for batch in placed])
        totals = {k: float(np.sum([aux[k] for _, aux in outs])) for k in outs[0][1]}
        loss = float(np.sum([loss_sum for loss_sum, _ in outs])) / max(totals["tokens"], 1.0)
        return {"loss": loss, **totals}

    return eval_fn
