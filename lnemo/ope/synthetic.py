"""Synthetic learning-to-rank data and the click-simulation protocol with exact ground truth.

Protocol (``ope-methods.md`` §6): (1) a labelled LTR set (graded 0..4); (2) a weak logging ranker (a linear model
fitted on a feature subset and few queries) made stochastic (PL temperature, epsilon-greedy); (3) rankings sampled
from it; (4) clicks from a click model on the true labels; (5) the exact value of any target ranker under the click
model, by marginals for item-position models and by enumeration (or Monte Carlo with its standard error) for
cascade-type models.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lnemo.ope.data import Candidates, Sessions
from lnemo.ope.marginals import _prefix_probs, _prefixes
from lnemo.ope.rankers import Deterministic, PlackettLuce, Ranker
from lnemo.types import Array, ClickModel, PRNGKey


class LTRData(NamedTuple):
    """A learning-to-rank set: ``features_CxNxF``, graded ``labels_CxN`` (0..4) and ``where_CxN`` (valid items)."""

    features_CxNxF: Array
    labels_CxN: Array
    where_CxN: Array

    @property
    def candidates(self) -> Candidates:
        """The candidate sets."""
        return Candidates(self.where_CxN, self.features_CxNxF)


def make_ltr_data(
    key: PRNGKey, *, num_queries: int, num_items: int, num_features: int, min_items: int | None = None,
    noise: float = 0.5, grade_quantiles: tuple[float, ...] = (0.5, 0.75, 0.9, 0.97),
) -> LTRData:
    """Generates queries with Gaussian item features and graded labels from a nonlinear latent relevance.

    latent(a) = f . w + 0.5 sin(3 f . u) + noise * eps; grades 0..4 are cut at the given quantiles of the latent
    (most items are irrelevant, few are perfect, as in real LTR sets). Each query has between ``min_items`` and
    ``num_items`` valid items.

    Args:
      key: PRNG key.
      num_queries: C.
      num_items: N (padded size).
      num_features: F.
      min_items: smallest candidate set (default N).
      noise: label noise scale.
      grade_quantiles: latent quantiles separating grades 0|1|2|3|4.

    Returns:
      ``LTRData``.

    Example:
      >>> make_ltr_data(jax.random.key(0), num_queries=3, num_items=5, num_features=4).labels_CxN.shape
      (3, 5)
    """
    k_f, k_w, k_u, k_e, k_n = jax.random.split(key, 5)
    features = jax.random.normal(k_f, (num_queries, num_items, num_features), jnp.float32)
    w = jax.random.normal(k_w, (num_features,)) / jnp.sqrt(num_features)
    u = jax.random.normal(k_u, (num_features,)) / jnp.sqrt(num_features)
    latent = features @ w + 0.5 * jnp.sin(3 * features @ u) + noise * jax.random.normal(k_e, features.shape[:2])
    cuts = jnp.quantile(latent, jnp.asarray(grade_quantiles))
    labels = jnp.searchsorted(cuts, latent).astype(jnp.int32)
    lo = num_items if min_items is None else min_items
    sizes = jax.random.randint(k_n, (num_queries, 1), lo, num_items + 1)
    where = jnp.arange(num_items) < sizes
    return LTRData(features, jnp.where(where, labels, 0), where)


def weak_ranker_weights(
    key: PRNGKey, data: LTRData, *, feature_fraction: float = 0.5, query_fraction: float = 0.1, ridge: float = 1.0
) -> Array:
    """Weights of a weak linear ranker: ridge regression of labels on a random feature subset, fitted on a random
    fraction of queries (scores = features @ weights; zero weight on the unused features).

    Example:
      >>> d = make_ltr_data(jax.random.key(0), num_queries=20, num_items=5, num_features=4)
      >>> weak_ranker_weights(jax.random.key(1), d).shape
      (4,)
    """
    k_f, k_q = jax.random.split(key)
    f = data.features_CxNxF.shape[-1]
    used = jax.random.permutation(k_f, f) < max(1, round(feature_fraction * f))
    queries = jax.random.uniform(k_q, (data.labels_CxN.shape[0],)) < query_fraction
    on = (data.where_CxN & queries[:, None]).reshape(-1)
    x = jnp.where(used, data.features_CxNxF, 0.0).reshape(-1, f) * on[:, None]
    y = data.labels_CxN.reshape(-1).astype(jnp.float32) * on
    return jnp.linalg.solve(x.T @ x + ridge * jnp.eye(f), x.T @ y) * used


def simulate_sessions(
    key: PRNGKey, ranker: Ranker, scores_CxN: Array, attractiveness_CxN: Array, click_model: ClickModel, *,
    where_CxN: Array, num_sessions: int, num_slots: int, context_probs_C: Array | None = None,
) -> Sessions:
    """Samples a click log: contexts, then lists from the logging ranker, then clicks from the click model.

    Args:
      key: PRNG key.
      ranker: the logging ranker.
      scores_CxN: its scores.
      attractiveness_CxN: true attractiveness gamma of each candidate.
      click_model: the user model (``click_models``).
      where_CxN: valid candidates.
      num_sessions: S.
      num_slots: K.
      context_probs_C: context distribution (default uniform; skew it for head/tail queries).

    Returns:
      ``Sessions``.

    Example:
      >>> from lnemo.ope.click_models import Cascade
      >>> s = simulate_sessions(jax.random.key(0), PlackettLuce(), jnp.zeros((2, 4)), jnp.full((2, 4), 0.5), Cascade(),
      ...                       where_CxN=jnp.ones((2, 4), bool), num_sessions=5, num_slots=2)
    """
    k_c, k_r, k_k = jax.random.split(key, 3)
    num_contexts = scores_CxN.shape[0]
    logits = jnp.zeros(num_contexts) if context_probs_C is None else jnp.log(jnp.asarray(context_probs_C))
    ctx = jax.random.categorical(k_c, logits, shape=(num_sessions,)).astype(jnp.int32)
    items = ranker.sample(k_r, scores_CxN[ctx], where=where_CxN[ctx], num_slots=num_slots)
    shown = items >= 0
    gamma = jnp.where(shown, attractiveness_CxN[ctx[:, None], jnp.maximum(items, 0)], 0.0)
    clicks = click_model.sample(k_k, gamma, where=shown)
    return Sessions(items, clicks.astype(jnp.float32), ctx)


class TrueValue(NamedTuple):
    """Ground truth: ``value``, its Monte Carlo ``stderr`` (0 when exact) and per-context values ``value_C``."""

    value: Array
    stderr: Array
    value_C: Array


def true_value(
    ranker: Ranker, scores_CxN: Array, attractiveness_CxN: Array, click_model: ClickModel, *, where_CxN: Array,
    num_slots: int, context_probs_C: Array | None = None, key: PRNGKey | None = None, num_samples: int = 100_000,
) -> TrueValue:
    """Exact expected clicks per impression of a ranker under a click model (Monte Carlo only when unavoidable).

    Item-position models (with ``item_position_ctr``): V = E_x sum_{a,k} rho(a,k|x) u(a,k|x), exact with exact
    marginals. Cascade-type models: exact expected clicks of each list, summed over all prefixes for deterministic
    rankers and for Plackett-Luce rankers with N <= 8 (enumeration); otherwise averaged over ``num_samples`` sampled
    lists per context (needs ``key``), with the standard error.

    Args:
      ranker: the ranker to evaluate.
      scores_CxN: its scores.
      attractiveness_CxN: true gamma.
      click_model: the user model.
      where_CxN: valid candidates.
      num_slots: K.
      context_probs_C: context distribution (default uniform).
      key: PRNG key for the Monte Carlo fallback.
      num_samples: lists per context for the fallback.

    Returns:
      ``TrueValue``.

    Example:
      >>> from lnemo.ope.click_models import PositionBased, pbm_power
      >>> true_value(Deterministic(), jnp.array([[1.0, 0.0]]), jnp.array([[0.5, 1.0]]), PositionBased(pbm_power(2)),
      ...            where_CxN=jnp.ones((1, 2), bool), num_slots=2).value  # 0.5 + 1.0 / 2
      Array(1., dtype=float32)
    """
    num_contexts, n = scores_CxN.shape
    probs = (jnp.full(num_contexts, 1.0 / num_contexts) if context_probs_C is None
             else jnp.asarray(context_probs_C) / jnp.sum(jnp.asarray(context_probs_C)))
    gamma = jnp.where(where_CxN, attractiveness_CxN, 0.0)
    zero = jnp.zeros((), jnp.result_type(gamma, jnp.float32))

    def list_value(items_xK: Array) -> Array:
        shown = items_xK >= 0
        g = jnp.where(shown, jnp.take_along_axis(gamma[:, None, :] if items_xK.ndim == 3 else gamma,
                                                 jnp.maximum(items_xK, 0), axis=-1), 0.0)
        return jnp.sum(click_model.expected_clicks(g, where=shown), axis=-1)

    if hasattr(click_model, "item_position_ctr"):
        rho = ranker.marginals(scores_CxN, where=where_CxN, num_slots=num_slots)
        value_C = jnp.sum(rho * click_model.item_position_ctr(gamma), axis=(-2, -1))
        return TrueValue(probs @ value_C, zero, value_C)
    if isinstance(ranker, Deterministic):
        value_C = list_value(ranker.sample(None, scores_CxN, where=where_CxN, num_slots=num_slots))
        return TrueValue(probs @ value_C, zero, value_C)
    if isinstance(ranker, PlackettLuce) and n <= 8:
        perms = jnp.asarray(_prefixes(n, num_slots))
        tempered = jnp.asarray(scores_CxN, jnp.result_type(scores_CxN, jnp.float32)) / ranker.temperature
        p_CxP = jax.vmap(lambda s, v: _prefix_probs(s, v, perms))(tempered, where_CxN)
        valid_perm = jnp.where(where_CxN[:, perms], perms, -1)
        # A prefix's slots past the valid items hold padding; list_value sees them as empty.
        value_C = jnp.sum(p_CxP * list_value(valid_perm), axis=-1)
        return TrueValue(probs @ value_C, zero, value_C)
    if key is None:
        raise ValueError("true_value needs a key for the Monte Carlo fallback (cascade-type model, large N)")
    scores_MxCxN = jnp.broadcast_to(scores_CxN, (num_samples,) + scores_CxN.shape)
    items = ranker.sample(key, scores_MxCxN, where=where_CxN, num_slots=num_slots)
    per_list_MxC = list_value(jnp.moveaxis(items, 0, 1)).T
    value_C = jnp.mean(per_list_MxC, axis=0)
    sd = jnp.std(per_list_MxC @ probs, ddof=1)
    return TrueValue(probs @ value_C, sd / jnp.sqrt(num_samples), value_C)
