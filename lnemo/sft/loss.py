"""The SFT loss: next-token cross-entropy on trained (assistant) tokens only, with per-mode sums."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax.numpy as jnp

from lnemo.losses import token_cross_entropy
from lnemo.models import ModelConfig, forward
from lnemo.sft.data import MODE_OFF, MODE_ON
from lnemo.types import Array, PRNGKey, PyTree
from lnemo.utils import masked_sum


def sft_loss(config: ModelConfig) -> Callable[[PyTree, Mapping[str, Array], PRNGKey], tuple[Array, dict[str, Array]]]:
    """A ``lnemo.train.SumLossFn``: summed token cross-entropy where ``loss_mask`` is True.

    $$\\mathrm{loss\\_sum} = -\\sum_{b,t} m_{bt} \\log p_\\theta(y_{bt} \\mid x_{b,\\le t})$$

    The training step divides by the token count of the whole accumulation window (token-level
    averaging, as in Llama-Nemotron's SFT). With a ``mode`` field in the batch (``sft_pipeline``), the
    aux sums are also split by mode: ``loss_sum_on``/``tokens_on`` and ``loss_sum_off``/``tokens_off``.

    Args:
      config: the model.

    Returns:
      ``(params, batch, rng) -> (loss_sum, aux)``; the batch holds ``tokens``, ``targets``,
      ``loss_mask``, ``segment_ids``, ``positions`` (``[B, T]``) and optionally ``mode``. ``aux`` has
      ``tokens`` and ``correct`` (argmax hits) and the per-mode sums.

    Example:
      >>> step = make_train_step(sft_loss(config), adamw(1e-4))  # doctest: +SKIP

    References:
      Bercovich et al., "Llama-Nemotron", arXiv 2505.00949, §4 (token-level cross-entropy on responses).
    """

    def loss_fn(params: PyTree, batch: Mapping[str, Array], rng: PRNGKey) -> tuple[Array, dict[str, Array]]:
        logits_BxTxV = forward(config, params, batch["tokens"], positions=batch["positions"],
                               segment_ids=batch["segment_ids"]).logits
        mask_BxT = batch["loss_mask"]
        ce_BxT = token_cross_entropy(logits_BxTxV, batch["targets"], where=mask_BxT)
        hits_BxT = jnp.argmax(logits_BxTxV, axis=-1) == batch["targets"]
        aux = {"tokens": jnp.sum(mask_BxT), "correct": jnp.sum(hits_BxT & mask_BxT)}
        if "mode" in batch:
            for name, mode in (("on", MODE_ON), ("off", MODE_OFF)):
                where_BxT = mask_BxT & (batch["mode"] == mode)
                aux[f"loss_sum_{name}"] = masked_sum(ce_BxT, where=where_BxT)
                aux[f"tokens_{name}"] = jnp.sum(where_BxT)
        return masked_sum(ce_BxT), aux

    return loss_fn
