"""Language-modelling losses per token: log-probs of given tokens, cross-entropy, z-loss."""

from __future__ import annotations

import jax.numpy as jnp

from lnemo.losses._numerics import masked, safe_logsumexp, token_ids, vocab_last
from lnemo.types import Array


def token_logprobs(logits_xV: Array, tokens_x: Array, *, where: Array | None = None, axis: int = -1) -> Array:
    """Log-probability of each given token under the softmax of its logits, in float32.

    $$\\log q(y) = z_y - \\log \\sum_v e^{z_v}$$

    Only a log-sum-exp and a gather are taken: the full log-softmax is never materialised. Masked tokens
    give 0 and their ids (e.g. -100 padding) are never used as indices.

    Args:
      logits_xV: logits, any leading shape ``x`` with the vocabulary on ``axis``; any float dtype.
      tokens_x: integer token ids, shape ``x``.
      where: boolean mask broadcastable to ``x``; True = counts. None counts everything.
      axis: the vocabulary axis of ``logits_xV``.

    Returns:
      Float32 log-probs, shape ``x``; 0 where masked.

    Example:
      >>> token_logprobs(jnp.log(jnp.array([[0.25, 0.75]])), jnp.array([1]))
      Array([-0.28768...], dtype=float32)

    References:
      Used by sequence-level KD (Kim & Rush 2016) and by GRPO (Shao et al. 2024, arXiv 2402.03300).
    """
    logits_xV = vocab_last(logits_xV, where=where, axis=axis)
    tokens_x = token_ids(tokens_x, where=where)
    chosen_x = jnp.take_along_axis(logits_xV, tokens_x[..., None], axis=-1)[..., 0]
    return masked(chosen_x - safe_logsumexp(logits_xV), where)


def token_cross_entropy(logits_xV: Array, labels_x: Array, *, where: Array | None = None, axis: int = -1) -> Array:
    """Cross-entropy of integer labels under softmax logits, per token, in float32.

    $$\\mathrm{CE}(z, y) = -\\log \\mathrm{softmax}(z)_y$$

    Args:
      logits_xV: logits, any leading shape ``x`` with the vocabulary on ``axis``; any float dtype.
      labels_x: integer labels, shape ``x``.
      where: boolean mask broadcastable to ``x``; True = counts.
      axis: the vocabulary axis of ``logits_xV``.

    Returns:
      Float32 per-token cross-entropy, shape ``x``; 0 where masked.

    Example:
      >>> token_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))
      Array([1.3862944, 1.3862944], dtype=float32)

    References:
      Standard next-token loss; the "LM loss" of Puzzle's GKD ablation (arXiv 2411.19146; reference sheet §6.8).
    """
    return -token_logprobs(logits_xV, labels_x, where=where, axis=axis)


def z_loss(logits_xV: Array, *, where: Array | None = None, axis: int = -1) -> Array:
    """Squared log-partition per token, a regulariser that keeps logits from drifting.

    $$z(z) = \\left(\\log \\sum_v e^{z_v}\\right)^2$$

    Add it with a small weight (1e-4 in PaLM) to the cross-entropy: ``ce + 1e-4 * z_loss(logits)``.

    Args:
      logits_xV: logits, any leading shape ``x`` with the vocabulary on ``axis``.
      where: boolean mask broadcastable to ``x``; True = counts.
      axis: the vocabulary axis.

    Returns:
      Float32 squared log-sum-exp, shape ``x``; 0 where masked.

    Example:
      >>> z_loss(jnp.zeros((1, 4)))
      Array([1.921812], dtype=float32)

    References:
      Chowdhery et al., "PaLM", arXiv 2204.02311, §5 (z_loss).
    """
    logits_xV = vocab_last(logits_xV, where=where, axis=axis)
    return masked(jnp.square(safe_logsumexp(logits_xV)), where)
