"""Where the logging propensities rho_0-hat(a, k | x) come from: one-hot, empirical per context, or parametric
(the marginals of a fitted Plackett-Luce logger, see ``pl_fit``).

All three produce per-context ``[C, N, K]`` tables (or directly the ``[S, K]`` values at the logged pairs) that the
estimators consume via ``data.gather_logged``.

References:
  Li et al., KDD 2018 (empirical per-query propensities); Vinay, Kilaru & Arbour, SIGIR 2022 (parametric
  propensities; lnemo's reading of the method is reconstructed, see ``ope-methods.md`` §4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lnemo.ope.data import Sessions
from lnemo.types import Array


def one_hot_propensities(sessions: Sessions) -> Array:
    """Treats every logged list as certain: rho_0-hat = 1 at each shown (item, slot), ``[S, K]`` (0 at empty slots).

    IP-IPS then reduces to sum_k c_ik rho_e(y_ik, k): a click counts only as far as the target ranker puts the item
    at the same slot, which biases the estimate down as the target diverges from the logged lists.

    Example:
      >>> one_hot_propensities(Sessions(jnp.array([[2, -1]]), jnp.zeros((1, 2)), jnp.array([0])))
      Array([[1., 0.]], dtype=float32)
    """
    return (jnp.asarray(sessions.items_SxK) >= 0).astype(jnp.float32)


def empirical_marginals(sessions: Sessions, *, num_contexts: int, num_items: int) -> Array:
    """Empirical item-position frequencies per context: N_x(a, k) / N_x, ``[C, N, K]``.

    Pairs never logged for a context get 0 (their target mass is silently lost by IP-IPS; see
    ``diagnostics.off_support_mass``). Equals one-hot when every context is seen once.

    Args:
      sessions: the log.
      num_contexts: C (static).
      num_items: N (static).

    Returns:
      ``[C, N, K]`` frequencies (all zero for contexts never logged).

    Example:
      >>> s = Sessions(jnp.array([[0], [1]]), jnp.zeros((2, 1)), jnp.array([0, 0]))
      >>> empirical_marginals(s, num_contexts=1, num_items=2)[0, :, 0]
      Array([0.5, 0.5], dtype=float32)

    References:
      Li et al., KDD 2018, §4.
    """
    items, _, ctx = sessions
    items, ctx = jnp.asarray(items), jnp.asarray(ctx)
    num_slots = items.shape[-1]
    shown = items >= 0
    slot = jnp.broadcast_to(jnp.arange(num_slots), items.shape)
    flat = ((ctx[:, None] * num_items + jnp.maximum(items, 0)) * num_slots + slot).reshape(-1)
    counts = jax.ops.segment_sum(shown.reshape(-1).astype(jnp.float32), flat,
                                 num_segments=num_contexts * num_items * num_slots)
    per_ctx = jax.ops.segment_sum(jnp.ones(ctx.shape, jnp.float32), ctx, num_segments=num_contexts)
    table = counts.reshape(num_contexts, num_items, num_slots)
    return table / jnp.maximum(per_ctx, 1.0)[:, None, None]
