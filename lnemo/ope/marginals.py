"""Marginal rank propensities of a Plackett-Luce ranker: rho(a, k) = P(item a is shown at slot k).

Four ways to compute the same ``...xNxK`` table from scores ``...xN``: quadrature (default; deterministic, near
exact, differentiable), Monte Carlo over Gumbel top-K samples, Rao-Blackwellised Monte Carlo (never exactly zero) and
exact enumeration of all prefixes (test oracle, n <= 8). Padded items (``where`` False) get rho = 0 and are never
drawn; when fewer than K items are valid, slots past the last valid one are empty.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lnemo.types import Array, PRNGKey


def _float(x: Array) -> Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _valid(scores: Array, where: Array | None) -> Array:
    if where is None:
        return jnp.ones(scores.shape, bool)
    return jnp.broadcast_to(jnp.asarray(where, bool), scores.shape)


def _check_slots(num_slots: int) -> None:
    if num_slots < 1:
        raise ValueError(f"num_slots must be >= 1, got {num_slots}")


def _over_batch(fn, *arrays: Array, batch_size: int | None = None) -> Array:
    """Applies ``fn`` (one list: ``N`` -> ``NxK``) over arbitrary leading dims: vmapped, or with ``batch_size`` a
    sequential map over chunks of that many lists (keeps large intermediates in cache)."""
    n = arrays[0].shape[-1]
    batch = arrays[0].shape[:-1]
    flat = [a.reshape((-1, n)) for a in arrays]
    if batch_size is None:
        out = jax.vmap(fn)(*flat)
    else:
        out = jax.lax.map(lambda xs: fn(*xs), tuple(flat), batch_size=batch_size)
    return out.reshape(batch + out.shape[1:])


def pl_marginals_quadrature(
    scores_N: Array,
    *,
    where: Array | None = None,
    num_slots: int,
    num_nodes: int = 128,
    tail: float = 1e-6,
    batch_size: int = 1,
) -> Array:
    """Plackett-Luce marginal rank propensities by Gauss-Legendre quadrature.

    With G_j ~ Gumbel(s_j, 1) independent, item a is at slot k iff exactly k-1 other items have G_j > G_a. Given
    G_a = x these events are independent Bernoulli(p_j(x)), so

        rho(a, k) = ∫ f_a(x) PB_{k-1}({p_j(x)}_{j != a}) dx,
        f_a(x) = exp(s_a - x - e^{s_a - x}),   p_j(x) = 1 - exp(-e^{s_j - x}),

    with PB_m the Poisson-binomial probability of exactly m successes. The integral uses ``num_nodes`` Gauss-Legendre
    nodes on [min s - log(-log tail), max s - log(-log(1 - tail))]; the leave-one-out Poisson-binomial is a prefix
    DP times a suffix DP truncated at K, O(num_nodes * N * K^2) per list. The slot-1 column (touched by the upper
    cut-off) is replaced by the exact softmax; when all valid items are shown, the last slot (touched by the lower
    cut-off) is replaced by one minus the row's other slots. Measured in float64 against enumeration (N <= 8,
    score sd <= 3): max abs error ~1e-10. For N ~ 50, K = 10 the column sums are off by ~1e-6; raise ``num_nodes``
    for wider score spreads (check with ``lnemo.ope.column_sum_error``).

    Args:
      scores_N: PL scores (log-weights, already divided by any temperature), shape ``[..., N]``.
      where: valid items, bool, broadcastable to ``scores_N``; None means all valid.
      num_slots: K, number of slots (static).
      num_nodes: quadrature nodes (static).
      tail: Gumbel tail mass cut off at each end of the integration interval.
      batch_size: lists computed together per step of a sequential map over the leading dims (static); the
        per-list intermediates are ``num_nodes x N x K``, so small chunks stay in cache (1 is fastest on CPU).

    Returns:
      Marginals ``[..., N, K]``; rows of padded items are 0.

    Example:
      >>> pl_marginals_quadrature(jnp.zeros(3), num_slots=2)  # doctest: +SKIP
      Array([[0.333, 0.333], [0.333, 0.333], [0.333, 0.333]])

    References:
      Knyazev & Oosterhuis, ECIR 2026 (marginal PL propensities by quadrature); lnemo ``ope-methods.md`` §5.
    """
    scores_N = _float(scores_N)
    valid = _valid(scores_N, where)
    _check_slots(num_slots)
    nodes, weights = np.polynomial.legendre.leggauss(num_nodes)

    def one(s: Array, v: Array) -> Array:
        dtype = s.dtype
        big = jnp.asarray(jnp.finfo(dtype).max, dtype)
        s_lo = jnp.min(jnp.where(v, s, big))
        s_hi = jnp.max(jnp.where(v, s, -big))
        s_lo, s_hi = jnp.where(jnp.any(v), s_lo, 0.0), jnp.where(jnp.any(v), s_hi, 0.0)
        lo = s_lo - math.log(-math.log(tail))
        hi = s_hi - math.log(-math.log1p(-tail))
        half = (hi - lo) / 2
        x_T = half * jnp.asarray(nodes, dtype) + (hi + lo) / 2
        w_T = half * jnp.asarray(weights, dtype)
        s_safe = jnp.where(v, s, 0.0)
        z_TxN = s_safe[None, :] - x_T[:, None]
        e_TxN = jnp.exp(z_TxN)
        density_TxN = jnp.where(v, jnp.exp(z_TxN - e_TxN), 0.0)
        beat_TxN = jnp.where(v, -jnp.expm1(-e_TxN), 0.0)
        stay_TxN = jnp.where(v, jnp.exp(-e_TxN), 1.0)
        start_TxK = jnp.zeros((num_nodes, num_slots), dtype).at[:, 0].set(1.0)

        def step(dist_TxK, pq):
            p_T, q_T = pq
            shifted = jnp.pad(dist_TxK[:, :-1], ((0, 0), (1, 0)))
            return dist_TxK * q_T[:, None] + shifted * p_T[:, None], dist_TxK

        pq = (beat_TxN.T, stay_TxN.T)
        _, prefix_NxTxK = jax.lax.scan(step, start_TxK, pq)
        _, suffix_NxTxK = jax.lax.scan(step, start_TxK, pq, reverse=True)
        loo_NxTxK = jnp.zeros_like(prefix_NxTxK)
        for i in range(num_slots):
            term = prefix_NxTxK[..., i : i + 1] * suffix_NxTxK[..., : num_slots - i]
            loo_NxTxK = loo_NxTxK.at[..., i:].add(term)
        rho_NxK = jnp.einsum("t,tn,ntk->nk", w_T, density_TxN, loo_NxTxK)
        first_N = jax.nn.softmax(jnp.where(v, s, -jnp.inf))
        first_N = jnp.where(v, first_N, 0.0)
        rho_NxK = rho_NxK.at[:, 0].set(first_N)
        # When every valid item is shown, its row sums to one; the last occupied slot (the only one the lower tail
        # cut-off touches) is then exactly 1 minus the other slots.
        last = jnp.sum(v) - 1
        is_last_K = jnp.arange(num_slots) == last
        rest_N = jnp.sum(jnp.where(is_last_K, 0.0, rho_NxK), axis=-1)
        rho_NxK = jnp.where(is_last_K & (last > 0), jnp.clip(1.0 - rest_N, 0.0, 1.0)[:, None], rho_NxK)
        return jnp.where(v[:, None], rho_NxK, 0.0)

    return _over_batch(one, scores_N, valid, batch_size=batch_size)


def gumbel_top_k(key: PRNGKey, scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array:
    """Samples top-K lists from a Plackett-Luce ranker by the Gumbel-max trick.

    Ranking by s_a + g_a with g_a iid Gumbel(0, 1) and keeping the first K gives an exact PL top-K sample.

    Args:
      key: PRNG key.
      scores_N: PL scores ``[..., N]``.
      where: valid items, broadcastable to ``scores_N``.
      num_slots: K <= N (static).

    Returns:
      Item indices ``[..., K]`` int32, -1 for slots past the last valid item.

    Example:
      >>> gumbel_top_k(jax.random.key(0), jnp.zeros(5), num_slots=2).shape
      (2,)

    References:
      Yellott 1977 (Gumbel-max); Kool et al., ICML 2019 (Gumbel top-k).
    """
    scores_N = _float(scores_N)
    if num_slots > scores_N.shape[-1]:
        raise ValueError(f"num_slots={num_slots} exceeds the number of items {scores_N.shape[-1]}")
    valid = _valid(scores_N, where)
    perturbed = jnp.where(valid, scores_N + jax.random.gumbel(key, scores_N.shape, scores_N.dtype), -jnp.inf)
    values, items = jax.lax.top_k(perturbed, num_slots)
    return jnp.where(values > -jnp.inf, items, -1).astype(jnp.int32)


def pl_marginals_mc(
    key: PRNGKey, scores_N: Array, *, where: Array | None = None, num_slots: int, num_samples: int
) -> Array:
    """Plackett-Luce marginals by Monte Carlo: the frequency of (a, k) over Gumbel top-K samples.

    Absolute error ~ sqrt(p(1-p)/M) and exact zeros for rare pairs; use as a check, not for IPS weights.

    Args:
      key: PRNG key.
      scores_N: PL scores ``[..., N]``.
      where: valid items, broadcastable to ``scores_N``.
      num_slots: K (static).
      num_samples: M, samples per list (static).

    Returns:
      Marginals ``[..., N, K]``.

    Example:
      >>> pl_marginals_mc(jax.random.key(0), jnp.zeros(4), num_slots=2, num_samples=100).shape
      (4, 2)

    References:
      lnemo ``ope-methods.md`` §5.
    """
    scores_N = _float(scores_N)
    valid = _valid(scores_N, where)
    n = scores_N.shape[-1]
    keys = jax.random.split(key, num_samples)
    items_MxBxK = jax.vmap(lambda k: gumbel_top_k(k, scores_N, where=valid, num_slots=num_slots))(keys)
    hits = jax.nn.one_hot(items_MxBxK, n, dtype=scores_N.dtype)
    return jnp.swapaxes(jnp.mean(hits, axis=0), -1, -2)


def pl_marginals_rb_mc(
    key: PRNGKey, scores_N: Array, *, where: Array | None = None, num_slots: int, num_samples: int
) -> Array:
    """Plackett-Luce marginals by Rao-Blackwellised Monte Carlo.

    rho(a, k) ~= mean over sampled prefixes y_1..y_{k-1} of 1[a not in prefix] e^{s_a} / sum_{j not in prefix} e^{s_j}:
    unbiased, lower variance than plain MC and never exactly zero for a valid item.

    Args:
      key: PRNG key.
      scores_N: PL scores ``[..., N]``.
      where: valid items, broadcastable to ``scores_N``.
      num_slots: K (static).
      num_samples: M, samples per list (static).

    Returns:
      Marginals ``[..., N, K]``.

    Example:
      >>> pl_marginals_rb_mc(jax.random.key(0), jnp.zeros(4), num_slots=2, num_samples=10).shape
      (4, 2)

    References:
      lnemo ``ope-methods.md`` §5 (Rao-Blackwellisation over the next choice).
    """
    scores_N = _float(scores_N)
    valid = _valid(scores_N, where)
    n = scores_N.shape[-1]
    keys = jax.random.split(key, num_samples)
    items_MxBxK = jax.vmap(lambda k: gumbel_top_k(k, scores_N, where=valid, num_slots=num_slots))(keys)
    chosen = jax.nn.one_hot(items_MxBxK, n, dtype=bool)
    taken_before = (jnp.cumsum(chosen, axis=-2) - chosen) > 0
    remaining = valid[..., None, :] & ~taken_before
    logits = jnp.where(remaining, scores_N[..., None, :], -jnp.inf)
    has_any = jnp.any(remaining, axis=-1, keepdims=True)
    probs = jnp.where(remaining, jax.nn.softmax(jnp.where(has_any, logits, 0.0), axis=-1), 0.0)
    return jnp.swapaxes(jnp.mean(probs, axis=0), -1, -2)


def _prefixes(num_items: int, num_slots: int) -> np.ndarray:
    if num_items > 8:
        raise ValueError(f"exact enumeration supports at most 8 items, got {num_items}")
    return np.array(list(itertools.permutations(range(num_items), num_slots)), np.int32)


def _prefix_probs(s: Array, v: Array, perms_PxK: Array) -> Array:
    """Probability of each ordered prefix under PL over valid items (padding slots fill with masked items)."""
    n = s.shape[-1]
    chosen = jax.nn.one_hot(perms_PxK, n, dtype=bool)
    before = (jnp.cumsum(chosen, axis=-2) - chosen) > 0
    remaining_valid = v & ~before
    any_valid = jnp.any(remaining_valid, axis=-1)
    logits = jnp.where(remaining_valid, s, -jnp.inf)
    lse = jax.nn.logsumexp(jnp.where(any_valid[..., None], logits, 0.0), axis=-1)
    picked_valid = v[perms_PxK]
    prob_valid = jnp.where(picked_valid, jnp.exp(s[perms_PxK] - lse), 0.0)
    first_remaining = jnp.argmax(~before, axis=-1)
    prob_pad = (perms_PxK == first_remaining).astype(s.dtype)
    return jnp.prod(jnp.where(any_valid, prob_valid, prob_pad), axis=-1)


def pl_marginals_exact(scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array:
    """Plackett-Luce marginals by exact enumeration of all N!/(N-K)! ordered prefixes (N <= 8).

    rho(a, k) = sum_y P(y) 1[y_k = a], P(y) = prod_k e^{s_{y_k}} / sum_{j not in y_<k} e^{s_j}.

    Args:
      scores_N: PL scores ``[..., N]`` with N <= 8.
      where: valid items, broadcastable to ``scores_N``.
      num_slots: K <= N (static).

    Returns:
      Marginals ``[..., N, K]``.

    Example:
      >>> pl_marginals_exact(jnp.array([0.0, 1.0]), num_slots=1)  # doctest: +SKIP
      Array([[0.269], [0.731]])

    References:
      lnemo ``ope-methods.md`` §5 (what OBP does; test oracle only).
    """
    scores_N = _float(scores_N)
    valid = _valid(scores_N, where)
    n = scores_N.shape[-1]
    perms = jnp.asarray(_prefixes(n, num_slots))

    def one(s: Array, v: Array) -> Array:
        probs_P = _prefix_probs(s, v, perms)
        hits_PxKxN = jax.nn.one_hot(perms, n, dtype=s.dtype)
        rho_KxN = jnp.einsum("p,pkn->kn", probs_P, hits_PxKxN)
        return jnp.where(v[:, None], rho_KxN.T, 0.0)

    return _over_batch(one, scores_N, valid)


def pl_pair_marginals_exact(scores_N: Array, *, where: Array | None = None, num_slots: int) -> Array:
    """Pairwise marginals Gamma[(a,k),(b,l)] = P(y_k = a, y_l = b) of a Plackett-Luce ranker, by enumeration.

    Flattened index of (item a, slot k) is ``a * K + k``. The diagonal holds the single marginals. Needed by the
    pseudoinverse estimator; N <= 8.

    Args:
      scores_N: PL scores ``[..., N]``.
      where: valid items, broadcastable to ``scores_N``.
      num_slots: K (static).

    Returns:
      ``[..., N*K, N*K]`` pairwise marginals.

    Example:
      >>> pl_pair_marginals_exact(jnp.zeros(3), num_slots=2).shape
      (6, 6)

    References:
      Swaminathan et al., NeurIPS 2017, §3 (the matrix Gamma of the pseudoinverse estimator).
    """
    scores_N = _float(scores_N)
    valid = _valid(scores_N, where)
    n = scores_N.shape[-1]
    perms = jnp.asarray(_prefixes(n, num_slots))

    def one(s: Array, v: Array) -> Array:
        probs_P = _prefix_probs(s, v, perms)
        hits_PxKxN = jax.nn.one_hot(perms, n, dtype=s.dtype) * v.astype(s.dtype)
        x_PxM = jnp.swapaxes(hits_PxKxN, -1, -2).reshape(perms.shape[0], n * num_slots)
        return jnp.einsum("p,pm,pq->mq", probs_P, x_PxM, x_PxM)

    return _over_batch(one, scores_N, valid)
