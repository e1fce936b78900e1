"""Model objectives in the engine's loss contract: ``(params, batch, rng) -> (loss_sum, aux)``.

A batch is the packed-row dict of ``lnemo.data`` (``tokens``, ``targets``, ``loss_mask``, ``segment_ids``,
``positions``, all ``[B, T]``). The loss is summed over the tokens where ``loss_mask`` is True and
``aux["tokens"]`` counts them, so the train step normalises by the token count of the whole accumulation
window.
"""

from __future__ import annotations

import jax.numpy as jnp

from lnemo.losses import chunked_cross_entropy_from_hidden, token_cross_entropy, z_loss
from lnemo.models import ModelConfig, forward, lm_head_kernel
from lnemo.train.step import SumLossFn
from lnemo.types import Array, PRNGKey, PyTree
from lnemo.utils import masked_sum


def lm_objective(config: ModelConfig, *, z_loss_weight: float = 0.0, chunk_size: int | None = None) -> SumLossFn:
    """Next-token cross-entropy (plus an optional z-loss) of ``config``'s model on packed rows.

    $$\\mathcal{L} = \\sum_{t \\in \\text{mask}} -\\log q(y_t \\mid x_{<t}) + w_z \\log^2 Z_t$$

    Args:
      config: the model.
      z_loss_weight: weight of ``log^2 Z`` (PaLM's z-loss); 0 disables it.
      chunk_size: with a value, the LM head and the cross-entropy run in sequence chunks of this many tokens
        and the ``[B, T, V]`` logits are never materialised (no z-loss in that mode).

    Returns:
      ``loss_fn(params, batch, rng) -> (loss_sum, {"tokens", "correct", ["z_loss_sum"]})``; ``correct``
      counts masked tokens whose arg-max prediction is the target (not available when chunked).
    """
    if z_loss_weight and chunk_size is not None:
        raise ValueError(f"lm_objective: z_loss_weight={z_loss_weight} needs full logits; set chunk_size=None")

    def loss_fn(params: PyTree, batch: PyTree, rng: PRNGKey) -> tuple[Array, dict[str, Array]]:
        del rng
        mask = batch["loss_mask"].astype(bool)
        out = forward(config, params, batch["tokens"], positions=batch.get("positions"),
                      segment_ids=batch.get("segment_ids"), skip_logits=chunk_size is not None)
        aux: dict[str, Array] = {"tokens": jnp.sum(mask).astype(jnp.float32)}
        if chunk_size is not None:
            ce = chunked_cross_entropy_from_hidden(out.final_hidden, lm_head_kernel(config, params),
                                                   batch["targets"], where=mask, chunk_size=chunk_size)
            return masked_sum(ce, where=mask), aux
        ce = token_cross_entropy(out.logits, batch["targets"], where=mask)
        loss = masked_sum(ce, where=mask)
        aux["correct"] = jnp.sum((jnp.argmax(out.logits, -1) == batch["targets"]) & mask).astype(jnp.float32)
        if z_loss_weight:
            z = masked_sum(z_loss(out.logits, where=mask), where=mask)
            aux["z_loss_sum"] = z
            loss = loss + z_loss_weight * z
        return loss, aux

    return loss_fn
