"""Float32 numerics shared by the loss modules: masked logits, safe log-sum-exp, KL over log-probs.

Every helper keeps values and gradients finite when the token mask is all False, when logits are huge
(+-1e4) and when part of the vocabulary is masked out with -inf or -inf-like logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lnemo.types import Array


def vocab_last(logits: Array, *, where: Array | None, axis: int) -> Array:
    """Float32 copy of ``logits`` with the vocabulary axis last and masked tokens replaced by zeros.

    Zeroing masked tokens first means padding rows holding garbage (inf, NaN) cannot reach a log or exp.
    """
    logits = jnp.moveaxis(jnp.asarray(logits, jnp.float32), axis, -1)
    if where is None:
        return logits
    return jnp.where(jnp.asarray(where)[..., None], logits, 0.0)


def token_ids(ids: Array, *, where: Array | None) -> Array:
    """Integer ids with masked entries replaced by 0 so that padding ids (e.g. -100) never index."""
    ids = jnp.asarray(ids)
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"token ids must be integers, got dtype {ids.dtype}")
    return ids if where is None else jnp.where(where, ids, 0)


def masked(loss: Array, where: Array | None) -> Array:
    """Per-token ``loss`` with masked entries exactly 0 (broadcasting ``where`` against it)."""
    if where is None:
        return loss
    where = jnp.asarray(where)
    shape = jnp.broadcast_shapes(loss.shape, where.shape)
    return jnp.where(jnp.broadcast_to(where, shape), jnp.broadcast_to(loss, shape), 0.0)


def safe_logsumexp(x: Array, *, axis: int = -1) -> Array:
    """``logsumexp`` over ``axis`` that returns -inf (with zero, finite gradients) for all -inf rows."""
    peak = jnp.max(x, axis=axis, keepdims=True)
    peak = jax.lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0.0))
    total = jnp.sum(jnp.exp(x - peak), axis=axis)
    positive = total > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, total, 1.0)), -jnp.inf) + jnp.squeeze(peak, axis)


def log1mexp(x: Array) -> Array:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate at both ends; -inf where ``x >= 0``."""
    x = jnp.minimum(x, 0.0)
    near_zero = x > -jnp.log(2.0)
    safe_near = jnp.where(near_zero & (x < 0), x, -1.0)
    safe_far = jnp.where(near_zero, -1.0, x)
    value = jnp.where(near_zero, jnp.log(-jnp.expm1(safe_near)), jnp.log1p(-jnp.exp(safe_far)))
    return jnp.where(x < 0, value, -jnp.inf)


def kl_from_logprobs(logp: Array, logq: Array) -> Array:
    """``sum_v p_v (log p_v - log q_v)`` over the last axis, with ``0 log 0 = 0``.

    The difference is replaced by 0 where ``p_v`` underflows to 0 *before* it meets ``p_v``, so -inf or
    -inf-like entries of either argument give neither NaN values nor NaN gradients there.
    """
    p = jnp.exp(logp)
    support = p > 0
    diff = jnp.where(support, logp - logq, 0.0)
    return jnp.sum(jnp.where(support, p * diff, 0.0), axis=-1)


def log_mixture(logp: Array, logq: Array, weight: float) -> Array:
    """``log(weight * p + (1 - weight) * q)`` elementwise, for ``0 <= weight <= 1`` (a Python float)."""
    if weight == 0.0:
        return logq
    if weight == 1.0:
        return logp
    return safe_logsumexp(jnp.stack([logp + jnp.log(weight), logq + jnp.log1p(-weight)]), axis=0)


def check_unit_interval(name: str, value: float) -> None:
    """Raise a ValueError naming ``name`` unless ``0 <= value <= 1``."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
