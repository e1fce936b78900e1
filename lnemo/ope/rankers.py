"""Stochastic and deterministic rankers over per-item scores: sampling, marginals and prefix probabilities.

A ranker is a small NamedTuple with three pure methods over scores ``[..., N]`` (leading dims = contexts or
sessions):

* ``sample(key, scores, *, where, num_slots)`` -> items ``[..., K]`` (-1 past the last valid item);
* ``marginals(scores, *, where, num_slots)`` -> rho ``[..., N, K]`` = P(item at slot);
* ``prefix_log_probs(scores, items, *, where)`` -> log pi(y_1..y_k) ``[..., K]`` (padded slots repeat the last value).

Marginals feed item-position estimators; prefix probabilities feed list estimators (SIPS, RIPS, Cascade-DR).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from lnemo.ope.marginals import _float, _valid, gumbel_top_k, pl_marginals_quadrature
from lnemo.types import Array, PRNGKey


class Ranker(Protocol):
    """What estimators, simulators and ground truth need from a ranker (``PlackettLuce``, ``Deterministic``,
    ``EpsilonGreedy`` or your own)."""

    def sample(self, key: PRNGKey, scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array: ...

    def marginals(self, scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array: ...

    def prefix_log_probs(self, scores_N: Array, items_K: Array, *, where: Array | None = None) -> Array: ...


def pl_slot_log_probs(scores_N: Array, items_K: Array, *, where: Array | None = None) -> Array:
    """Per-slot Plackett-Luce log-probabilities log P(y_k | y_1..y_{k-1}) of given top-K lists.

    log P(y_k | y_<k) = s_{y_k} - logsumexp_{j valid, j not in y_<k} s_j; padded slots (item -1) give 0. Summed
    over slots this is the top-K PL log-likelihood of the list over the whole candidate set.

    Args:
      scores_N: PL scores ``[..., N]``.
      items_K: shown items ``[..., K]`` (indices into N, -1 = empty slot).
      where: valid candidates, broadcastable to ``scores_N``.

    Returns:
      ``[..., K]`` per-slot log-probabilities (0 at empty slots); gradients stay finite at empty slots.

    Example:
      >>> pl_slot_log_probs(jnp.zeros(3), jnp.array([2, 0]))  # log(1/3), log(1/2)  # doctest: +SKIP

    References:
      Plackett 1975; Luce 1959; lnemo ``ope-methods.md`` §4 (top-K likelihood over the candidate set).
    """
    scores_N = _float(scores_N)
    valid = _valid(scores_N, where)
    n = scores_N.shape[-1]
    items_K = jnp.asarray(items_K)
    slot_on = items_K >= 0
    chosen = jax.nn.one_hot(items_K, n, dtype=bool)
    before = (jnp.cumsum(chosen, axis=-2) - chosen) > 0
    remaining = valid[..., None, :] & ~before
    logits = jnp.where(remaining & slot_on[..., None], scores_N[..., None, :], -jnp.inf)
    logits = jnp.where(slot_on[..., None], logits, 0.0)
    lse = jax.nn.logsumexp(logits, axis=-1)
    picked = jnp.take_along_axis(scores_N, jnp.where(slot_on, items_K, 0), axis=-1)
    return jnp.where(slot_on, picked - lse, 0.0)


def _uniform_prefix_log_probs(items_K: Array, valid_N: Array) -> Array:
    n_valid = jnp.sum(valid_N, axis=-1, keepdims=True).astype(jnp.float32)
    k = jnp.arange(items_K.shape[-1], dtype=jnp.float32)
    per_slot = jnp.where(items_K >= 0, -jnp.log(jnp.maximum(n_valid - k, 1.0)), 0.0)
    return jnp.cumsum(per_slot, axis=-1)


def _uniform_marginals(valid_N: Array, num_slots: int) -> Array:
    n_valid = jnp.sum(valid_N, axis=-1, keepdims=True)
    k_on = jnp.arange(num_slots) < n_valid
    rho = jnp.where(k_on, 1.0 / jnp.maximum(n_valid, 1), 0.0)[..., None, :]
    return jnp.where(valid_N[..., None], rho, 0.0)


class PlackettLuce(NamedTuple):
    """Plackett-Luce ranker over scores with a temperature: P(y) = prod_k softmax(s / T) over the remaining items.

    Attributes:
      temperature: T > 0; large T approaches uniform, small T approaches deterministic.
      marginals_fn: computes rho from tempered scores (default: quadrature; inject MC or exact enumeration).

    Example:
      >>> PlackettLuce(temperature=0.5).marginals(jnp.zeros((2, 4)), num_slots=2).shape
      (2, 4, 2)

    References:
      lnemo ``ope-methods.md`` §5.
    """

    temperature: float = 1.0
    marginals_fn: Callable[..., Array] = pl_marginals_quadrature

    def sample(self, key: PRNGKey, scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array:
        """Gumbel top-K samples ``[..., K]``."""
        return gumbel_top_k(key, _float(scores_N) / self.temperature, where=where, num_slots=num_slots)

    def marginals(self, scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array:
        """Marginal rank propensities ``[..., N, K]``."""
        return self.marginals_fn(_float(scores_N) / self.temperature, where=where, num_slots=num_slots)

    def prefix_log_probs(self, scores_N: Array, items_K: Array, *, where: Array | None = None) -> Array:
        """Cumulative log pi(y_1..y_k) ``[..., K]``."""
        slot = pl_slot_log_probs(_float(scores_N) / self.temperature, items_K, where=where)
        return jnp.cumsum(slot, axis=-1)


class Deterministic(NamedTuple):
    """Deterministic ranker: sorts valid items by score (ties to the lower index) and shows the top K.

    Example:
      >>> Deterministic().sample(None, jnp.array([0.1, 0.9, 0.5]), num_slots=2)  # doctest: +SKIP
      Array([1, 2], dtype=int32)
    """

    def sample(self, key: PRNGKey | None, scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array:
        """The top-K list ``[..., K]`` (the key is ignored)."""
        scores_N = _float(scores_N)
        valid = _valid(scores_N, where)
        values, items = jax.lax.top_k(jnp.where(valid, scores_N, -jnp.inf), num_slots)
        return jnp.where(values > -jnp.inf, items, -1).astype(jnp.int32)

    def marginals(self, scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array:
        """One-hot marginals ``[..., N, K]``."""
        items = self.sample(None, scores_N, where=where, num_slots=num_slots)
        hits = jax.nn.one_hot(items, scores_N.shape[-1], dtype=_float(scores_N).dtype)
        return jnp.swapaxes(hits, -1, -2)

    def prefix_log_probs(self, scores_N: Array, items_K: Array, *, where: Array | None = None) -> Array:
        """0 while the list matches the ranker's own list, -inf from the first mismatch on."""
        top = self.sample(None, scores_N, where=where, num_slots=items_K.shape[-1])
        match = jnp.cumprod(top == items_K, axis=-1) > 0
        return jnp.where(match, 0.0, -jnp.inf)


class EpsilonGreedy(NamedTuple):
    """Mixture ranker: with probability epsilon a uniformly random list, otherwise the base ranker's list.

    Marginals and prefix probabilities are the epsilon-mixtures of the base's and the uniform ranker's.

    Attributes:
      epsilon: exploration probability in [0, 1].
      base: the exploiting ranker (default: deterministic).

    Example:
      >>> EpsilonGreedy(0.1).marginals(jnp.array([0.0, 1.0, 2.0]), num_slots=1)  # doctest: +SKIP
    """

    epsilon: float
    base: Deterministic | PlackettLuce = Deterministic()

    def sample(self, key: PRNGKey, scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array:
        """Samples ``[..., K]``: per list, uniform with probability epsilon, else the base ranker."""
        scores_N = _float(scores_N)
        k_mix, k_base, k_uni = jax.random.split(key, 3)
        base = self.base.sample(k_base, scores_N, where=where, num_slots=num_slots)
        uniform = gumbel_top_k(k_uni, jnp.zeros_like(scores_N), where=where, num_slots=num_slots)
        explore = jax.random.bernoulli(k_mix, self.epsilon, scores_N.shape[:-1])
        return jnp.where(explore[..., None], uniform, base)

    def marginals(self, scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array:
        """Mixture marginals ``[..., N, K]``."""
        valid = _valid(_float(scores_N), where)
        base = self.base.marginals(scores_N, where=where, num_slots=num_slots)
        return (1 - self.epsilon) * base + self.epsilon * _uniform_marginals(valid, num_slots)

    def prefix_log_probs(self, scores_N: Array, items_K: Array, *, where: Array | None = None) -> Array:
        """log((1 - eps) pi_base(y_1..y_k) + eps pi_uniform(y_1..y_k)) ``[..., K]``."""
        valid = _valid(_float(scores_N), where)
        base = self.base.prefix_log_probs(scores_N, items_K, where=where)
        uniform = _uniform_prefix_log_probs(items_K, valid)
        return jnp.logaddexp(jnp.log1p(-self.epsilon) + base, jnp.log(self.epsilon) + uniform)
