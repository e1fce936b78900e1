"""Diagnostics for importance weights and propensities: effective sample size, weight quantiles and maximum, share
of tiny propensities, per-slot mean weight, target mass outside the logging support, clipping bias, marginal column
sums.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from lnemo.ope.marginals import _float
from lnemo.types import Array


class WeightDiagnostics(NamedTuple):
    """Summary of importance weights over counted slots.

    Attributes:
      ess: Kish effective sample size of all counted weights, (sum w)^2 / sum w^2.
      ess_per_slot_K: Kish ESS per slot ``[K]``.
      mean_weight_K: mean weight per slot ``[K]``; with the true logging propensities its expectation is
        1 - (target mass outside the logging support at slot k), so values well below 1 flag missing support.
      max_weight: largest weight.
      quantiles: weight quantiles at ``levels``.
      levels: the quantile levels.
      tiny_share: share of counted logging propensities below the ``tiny`` threshold (nan if not given).
    """

    ess: Array
    ess_per_slot_K: Array
    mean_weight_K: Array
    max_weight: Array
    quantiles: Array
    levels: Array
    tiny_share: Array


def kish_ess(weights: Array, *, where: Array | None = None, axis: int | tuple[int, ...] | None = None) -> Array:
    """Kish effective sample size (sum w)^2 / sum w^2 over ``axis`` (0 when everything is masked).

    Example:
      >>> kish_ess(jnp.array([1.0, 1.0, 2.0]))
      Array(2.6666667, dtype=float32)
    """
    w = _float(weights)
    if where is not None:
        w = jnp.where(where, w, 0.0)
    sq = jnp.sum(w**2, axis=axis)
    return jnp.where(sq > 0, jnp.sum(w, axis=axis) ** 2 / jnp.where(sq > 0, sq, 1.0), 0.0)


def weight_diagnostics(
    weights_SxK: Array, *, where: Array | None = None, logging_SxK: Array | None = None, tiny: float = 1e-3,
    levels: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999),
) -> WeightDiagnostics:
    """Diagnostics of item-position (or prefix) weights ``[S, K]``.

    Args:
      weights_SxK: importance weights.
      where: counted slots.
      logging_SxK: logging propensities at the logged pairs, for the tiny-propensity share.
      tiny: threshold for "tiny" propensities.
      levels: quantile levels.

    Returns:
      ``WeightDiagnostics``.

    Example:
      >>> weight_diagnostics(jnp.array([[1.0, 2.0], [1.0, 0.0]])).max_weight
      Array(2., dtype=float32)

    References:
      Kish, *Survey Sampling* (1965); lnemo ``ope-methods.md`` §8.
    """
    w = _float(weights_SxK)
    where = jnp.ones(w.shape, bool) if where is None else jnp.broadcast_to(jnp.asarray(where, bool), w.shape)
    count_K = jnp.sum(where, axis=0)
    mean_K = jnp.sum(jnp.where(where, w, 0.0), axis=0) / jnp.maximum(count_K, 1)
    flat = jnp.where(where, w, jnp.nan).reshape(-1)
    levels_arr = jnp.asarray(levels, w.dtype)
    if logging_SxK is None:
        tiny_share = jnp.asarray(jnp.nan, w.dtype)
    else:
        tiny_share = jnp.sum(where & (_float(logging_SxK) < tiny)) / jnp.maximum(jnp.sum(where), 1)
    return WeightDiagnostics(
        ess=kish_ess(w, where=where),
        ess_per_slot_K=kish_ess(w, where=where, axis=0),
        mean_weight_K=mean_K,
        max_weight=jnp.max(jnp.where(where, w, -jnp.inf)),
        quantiles=jnp.nanquantile(flat, levels_arr),
        levels=levels_arr,
        tiny_share=tiny_share,
    )


def off_support_mass(target_CxNxK: Array, logging_CxNxK: Array, *, threshold: float = 0.0) -> Array:
    """Target mass outside the logging support per context: sum_{(a,k): rho_0(a,k) <= threshold} rho_e(a,k) ``[C]``.

    This is what IP-IPS silently misses (per list, summed over slots); average over logged sessions with
    ``off_support_mass(...)[context_S]``.

    Example:
      >>> off_support_mass(jnp.array([[[0.5], [0.5]]]), jnp.array([[[1.0], [0.0]]]))
      Array([0.5], dtype=float32)
    """
    outside = _float(logging_CxNxK) <= threshold
    return jnp.sum(jnp.where(outside, _float(target_CxNxK), 0.0), axis=(-2, -1))


def clipping_bias_bound(weights_SxK: Array, clip: float, *, where: Array | None = None) -> Array:
    """Per-session bound on the downward bias of clipping at lambda: sum_k (w_ik - lambda)_+ ``[S]``.

    With clicks in [0, 1] the clipped estimator's bias is at most the mean of this over sessions.

    Example:
      >>> clipping_bias_bound(jnp.array([[3.0, 0.5]]), 2.0)
      Array([1.], dtype=float32)
    """
    excess = jnp.maximum(_float(weights_SxK) - clip, 0.0)
    if where is not None:
        excess = jnp.where(where, excess, 0.0)
    return jnp.sum(excess, axis=-1)


def column_sum_error(marginals_CxNxK: Array, *, where: Array | None = None) -> Array:
    """max_k |sum_a rho(a, k) - 1| over the slots that must be filled (k <= number of valid items), ``[C]``.

    An a-posteriori accuracy check for approximate marginals (quadrature, Monte Carlo).

    Example:
      >>> column_sum_error(jnp.array([[[0.5, 0.4], [0.5, 0.5]]]))
      Array([0.1], dtype=float32)
    """
    rho = _float(marginals_CxNxK)
    n_valid = rho.shape[-2] if where is None else jnp.sum(jnp.asarray(where), axis=-1, keepdims=True)
    filled = jnp.arange(rho.shape[-1]) < n_valid
    return jnp.max(jnp.where(filled, jnp.abs(jnp.sum(rho, axis=-2) - 1.0), 0.0), axis=-1)


def marginal_dispersion(predicted_CxNxK: Array, empirical_CxNxK: Array, counts_C: Array, *,
                        where: Array | None = None) -> Array:
    """Calibration of fitted marginals against (held-out) empirical frequencies: Pearson dispersion per slot ``[K]``.

    D_k = sum_x n_x sum_a (f(a,k|x) - rho(a,k|x))^2 / rho(a,k|x)  /  sum_x (n_valid(x) - 1), over contexts with
    n_x > 0. Each context-slot term is a Pearson chi-square with n_valid - 1 degrees of freedom when the log was drawn
    from rho, so D_k ~ 1 for a calibrated model and D_k >> 1 for a misspecified one (e.g. a Plackett-Luce fit of an
    epsilon-greedy logger).

    Args:
      predicted_CxNxK: fitted marginals rho (> 0 on valid items).
      empirical_CxNxK: frequencies f (``propensities.empirical_marginals`` of a held-out log).
      counts_C: impressions per context n_x in that log.
      where: valid candidates ``[C, N]``.

    Returns:
      ``[K]`` dispersion ratios.

    Example:
      >>> rho = jnp.full((1, 2, 1), 0.5)
      >>> marginal_dispersion(rho, jnp.array([[[0.6], [0.4]]]), jnp.array([100.0]))  # 100 * 0.04 / 1
      Array([4.], dtype=float32)

    References:
      Pearson's chi-square goodness of fit; lnemo ``ope-methods.md`` §4 (calibration check of the fitted logger).
    """
    rho = _float(predicted_CxNxK)
    valid = jnp.ones(rho.shape[:-1], bool) if where is None else jnp.asarray(where, bool)
    n_C = _float(counts_C)
    safe = jnp.where(valid[..., None], rho, 1.0)
    terms = jnp.where(valid[..., None], (_float(empirical_CxNxK) - rho) ** 2 / safe, 0.0)
    chi2_K = jnp.sum(n_C[:, None] * jnp.sum(terms, axis=-2), axis=0)
    dof = jnp.sum(jnp.where(n_C > 0, jnp.sum(valid, axis=-1) - 1, 0))
    return chi2_K / jnp.maximum(dof, 1)
