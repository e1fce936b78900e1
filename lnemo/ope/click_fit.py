"""Fitted click models for the direct method and doubly robust baselines.

``PositionBasedEM`` fits theta_k and gamma(a | x) of a position-based model to a click log by expectation
maximisation (an optax-style NamedTuple of pure ``init``/``update``); ``cascade_dr_baselines`` turns any
item-position click-rate table into the Q-function baselines of ``estimators.cascade_dr``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lnemo.ope.data import Sessions
from lnemo.ope.rankers import Ranker
from lnemo.types import Array


class PositionBasedState(NamedTuple):
    """Parameters of a position-based model: ``theta_K`` examination and ``gamma_CxN`` attractiveness."""

    theta_K: Array
    gamma_CxN: Array

    def click_rates(self) -> Array:
        """u-hat(a, k | x) = theta_k gamma(a | x), ``[C, N, K]``."""
        return self.gamma_CxN[..., None] * self.theta_K


class PositionBasedEM(NamedTuple):
    """EM for the position-based model P(c_k = 1) = theta_k gamma(y_k | x).

    E-step for a non-click: P(E=1, R=0 | c=0) = theta (1 - gamma) / (1 - theta gamma), P(E=0, R=1 | c=0) =
    (1 - theta) gamma / (1 - theta gamma); M-step: theta_k and gamma(a | x) are the means of the posterior
    examination and relevance over their occurrences. Pairs never shown keep their initial gamma.

    Attributes:
      num_contexts: C.
      num_items: N.
      num_slots: K.
      init_theta: initial theta.
      init_gamma: initial gamma.

    Example:
      >>> em = PositionBasedEM(1, 2, 2)
      >>> state = em.init()
      >>> state = em.update(state, Sessions(jnp.array([[0, 1]]), jnp.array([[1.0, 0.0]]), jnp.array([0])))

    References:
      Wang et al., WSDM 2018 (regression EM; here with free per-(context, item) gamma); Chuklin et al., *Click
      Models for Web Search* (2015), §4.
    """

    num_contexts: int
    num_items: int
    num_slots: int
    init_theta: float = 0.5
    init_gamma: float = 0.5

    def init(self) -> PositionBasedState:
        """Initial parameters."""
        return PositionBasedState(jnp.full(self.num_slots, self.init_theta, jnp.float32),
                                  jnp.full((self.num_contexts, self.num_items), self.init_gamma, jnp.float32))

    def update(self, state: PositionBasedState, sessions: Sessions) -> PositionBasedState:
        """One EM step over the whole log."""
        items, clicks, ctx = sessions
        shown = items >= 0
        theta = jnp.broadcast_to(state.theta_K, items.shape)
        gamma = state.gamma_CxN[ctx[:, None], jnp.maximum(items, 0)]
        denom = jnp.maximum(1 - theta * gamma, 1e-12)
        exam = clicks + (1 - clicks) * theta * (1 - gamma) / denom
        rel = clicks + (1 - clicks) * (1 - theta) * gamma / denom
        exam, rel, weight = (jnp.where(shown, x, 0.0) for x in (exam, rel, shown.astype(jnp.float32)))
        theta_new = jnp.sum(exam, axis=0) / jnp.maximum(jnp.sum(weight, axis=0), 1.0)
        theta_new = jnp.where(jnp.sum(weight, axis=0) > 0, theta_new, state.theta_K)
        flat = (ctx[:, None] * self.num_items + jnp.maximum(items, 0)).reshape(-1)
        size = self.num_contexts * self.num_items
        rel_sum = jax.ops.segment_sum(rel.reshape(-1), flat, num_segments=size)
        count = jax.ops.segment_sum(weight.reshape(-1), flat, num_segments=size)
        gamma_new = jnp.where(count > 0, rel_sum / jnp.maximum(count, 1.0), state.gamma_CxN.reshape(-1))
        return PositionBasedState(theta_new, gamma_new.reshape(self.num_contexts, self.num_items))


def cascade_dr_baselines(
    click_rates_CxNxK: Array, target_scores_CxN: Array, sessions: Sessions, *, ranker: Ranker, where_CxN: Array
) -> tuple[Array, Array]:
    """Q-function baselines for ``cascade_dr`` from an item-position click-rate table u-hat(a, k | x).

    F_k = E_{pi_e}[sum_{j >= k} u-hat(y_j, j) | y_1:k-1] uses the target ranker restricted to the items not yet
    shown (exact for Plackett-Luce and deterministic rankers); then q_target_k = F_k and
    q_logged_k = u-hat(y_k, k) + F_{k+1}.

    Args:
      click_rates_CxNxK: u-hat per context.
      target_scores_CxN: the target ranker's scores.
      sessions: the log.
      ranker: the target ranker (``PlackettLuce`` or ``Deterministic``).
      where_CxN: valid candidates.

    Returns:
      ``(q_logged_SxK, q_target_SxK)``, 0 at empty slots.

    Example:
      >>> from lnemo.ope.rankers import PlackettLuce
      >>> s = Sessions(jnp.array([[1, 0]]), jnp.zeros((1, 2)), jnp.array([0]))
      >>> q_log, q_tgt = cascade_dr_baselines(jnp.full((1, 2, 2), 0.5), jnp.zeros((1, 2)), s,
      ...                                     ranker=PlackettLuce(), where_CxN=jnp.ones((1, 2), bool))

    References:
      Kiyohara et al., WSDM 2022, §4 (the recursive Q-function).
    """
    items, _, ctx = sessions
    num_slots = items.shape[-1]
    n = target_scores_CxN.shape[-1]
    shown = items >= 0
    u_SxNxK = click_rates_CxNxK[ctx]
    chosen = jax.nn.one_hot(items, n, dtype=bool)
    before_SxKxN = (jnp.cumsum(chosen, axis=-2) - chosen) > 0
    remaining = where_CxN[ctx][:, None, :] & ~before_SxKxN
    scores = jnp.broadcast_to(target_scores_CxN[ctx][:, None, :], remaining.shape)
    rho_SxKxNxM = ranker.marginals(scores, where=remaining, num_slots=num_slots)
    # u shifted so that slot m of the conditional ranking at step k is absolute slot m + k.
    absolute_KxM = jnp.arange(num_slots)[:, None] + jnp.arange(num_slots)[None, :]
    u_SxNxKxM = jnp.take(u_SxNxK, jnp.minimum(absolute_KxM, num_slots - 1), axis=-1)
    u_shift_SxKxNxM = jnp.where((absolute_KxM < num_slots)[:, None, :], u_SxNxKxM.transpose(0, 2, 1, 3), 0.0)
    future_SxK = jnp.sum(rho_SxKxNxM * u_shift_SxKxNxM, axis=(-2, -1))
    future_next = jnp.concatenate([future_SxK[:, 1:], jnp.zeros_like(future_SxK[:, :1])], axis=-1)
    u_logged = u_SxNxK[jnp.arange(items.shape[0])[:, None], jnp.maximum(items, 0), jnp.arange(num_slots)]
    q_logged = jnp.where(shown, u_logged + future_next, 0.0)
    return q_logged, jnp.where(shown, future_SxK, 0.0)
