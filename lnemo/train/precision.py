"""Mixed precision: float32 master params and optimiser state, low-precision compute."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lnemo.train.step import SumLossFn
from lnemo.types import Array, PRNGKey, PyTree


def cast_floating(tree: PyTree, dtype: jnp.dtype) -> PyTree:
    """Cast every floating-point leaf of ``tree`` to ``dtype``; integer and bool leaves are kept.

    Args:
      tree: pytree of arrays.
      dtype: target floating dtype, e.g. ``jnp.bfloat16``.

    Returns:
      The tree with floating leaves in ``dtype``.
    """
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def with_compute_dtype(loss_fn: SumLossFn, dtype: jnp.dtype = jnp.bfloat16) -> SumLossFn:
    """Wrap a loss so the model computes with params cast to ``dtype``.

    The cast sits inside the differentiated function: the gradient flows back through it and
    arrives in float32 for the float32 master params, so the optimiser state stays float32.
    Matrix products should still accumulate in float32 (``preferred_element_type``), which is
    the model's job, as is computing the loss itself in float32.

    Args:
      loss_fn: ``(params, batch, rng) -> (loss_sum, aux)``.
      dtype: compute dtype for floating params.

    Returns:
      The wrapped loss function with the same contract.

    Example:
      >>> step = make_train_step(with_compute_dtype(loss_fn, jnp.bfloat16), optimizer)
    """

    def wrapped(params: PyTree, batch: PyTree, rng: PRNGKey) -> tuple[Array, dict[str, Array]]:
        return loss_fn(cast_floating(params, dtype), batch, rng)

    return wrapped
