"""Small array helpers shared by every area (no flax, no models)."""

from __future__ import annotations

import jax.numpy as jnp

from lnemo.types import Array


def masked_sum(x: Array, *, where: Array | None = None, axis: int | tuple[int, ...] | None = None) -> Array:
    """Sum of ``x`` over ``axis`` counting only entries where ``where`` is True.

    Args:
      x: values, any shape.
      where: boolean mask broadcastable to ``x``; None counts everything.
      axis: axes to reduce; None reduces all.

    Returns:
      The masked sum, float32 or wider, with ``axis`` removed.
    """
    x = jnp.asarray(x)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if where is not None:
        x = jnp.where(jnp.broadcast_to(where, x.shape), x, 0)
    return jnp.sum(x, axis=axis)


def masked_mean(x: Array, *, where: Array | None = None, axis: int | tuple[int, ...] | None = None) -> Array:
    """Mean of ``x`` over ``axis`` counting only entries where ``where`` is True.

    An all-masked reduction returns 0 (not NaN) and has finite, zero gradients.

    Example:
      >>> masked_mean(jnp.array([1.0, 2.0, 10.0]), where=jnp.array([True, True, False]))
      Array(1.5, dtype=float32)
    """
    x = jnp.asarray(x)
    if where is None:
        count = jnp.asarray(x.size if axis is None else _axis_size(x.shape, axis), jnp.float32)
    else:
        count = jnp.sum(jnp.broadcast_to(where, x.shape), axis=axis).astype(jnp.float32)
    return masked_sum(x, where=where, axis=axis) / jnp.maximum(count, 1.0)


def _axis_size(shape: tuple[int, ...], axis: int | tuple[int, ...]) -> int:
    axes = (axis,) if isinstance(axis, int) else axis
    size = 1
    for a in axes:
        size *= shape[a]
    return size
