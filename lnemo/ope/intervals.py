"""Confidence intervals for estimates: analytic (normal), vectorised bootstrap, and the paired difference of two
target rankers evaluated on the same logs (the offline A/B decision).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from lnemo.ope.estimators import Estimate, _finish
from lnemo.types import Array, PRNGKey


class Interval(NamedTuple):
    """A two-sided confidence interval."""

    lower: Array
    upper: Array


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def normal_interval(estimate: Estimate, *, level: float = 0.95) -> Interval:
    """Analytic interval value +- z_{(1+level)/2} * stderr.

    Example:
      >>> normal_interval(Estimate(jnp.array(1.0), jnp.array(0.1), jnp.zeros(3))).lower
      Array(0.80400366, dtype=float32)
    """
    _check_level(level)
    z = ndtri(jnp.asarray((1 + level) / 2, jnp.result_type(estimate.stderr, jnp.float32)))
    return Interval(estimate.value - z * estimate.stderr, estimate.value + z * estimate.stderr)


def bootstrap_interval(
    key: PRNGKey, contributions_S: Array, *, where: Array | None = None, num_replicates: int = 1000,
    level: float = 0.95, batch_size: int = 50,
) -> Interval:
    """Percentile bootstrap of the mean of per-session contributions, with Poisson(1) resampling weights.

    Replicate r's value is sum_i b_ri x_i / sum_i b_ri with b_ri ~ Poisson(1); replicates run in batches of
    ``batch_size`` (``lax.map``), so memory is O(batch_size * S) and there is no Python loop over sessions.

    Args:
      key: PRNG key.
      contributions_S: pseudo-values ``[S]`` (an ``Estimate``'s ``contributions_S``).
      where: counted sessions ``[S]``.
      num_replicates: B (static).
      level: coverage level.
      batch_size: replicates per batch (static).

    Returns:
      ``Interval``.

    Example:
      >>> bootstrap_interval(jax.random.key(0), jnp.arange(10.0), num_replicates=100).lower.shape
      ()

    References:
      Hanley & MacGibbon 2006 (Poisson bootstrap); Efron & Tibshirani 1993, §13 (percentile interval).
    """
    _check_level(level)
    x = jnp.asarray(contributions_S)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    on = jnp.ones(x.shape, bool) if where is None else jnp.asarray(where, bool)
    num_batches = -(-num_replicates // batch_size)
    keys = jax.random.split(key, num_batches)

    def batch(k: PRNGKey) -> Array:
        b_RxS = jnp.where(on, jax.random.poisson(k, 1.0, (batch_size,) + x.shape), 0).astype(x.dtype)
        return (b_RxS @ jnp.where(on, x, 0.0)) / jnp.maximum(jnp.sum(b_RxS, axis=-1), 1.0)

    reps = jax.lax.map(batch, keys).reshape(-1)[:num_replicates]
    lo, hi = jnp.quantile(reps, jnp.asarray([(1 - level) / 2, (1 + level) / 2], x.dtype))
    return Interval(lo, hi)


def paired_difference(a: Estimate, b: Estimate, *, where: Array | None = None) -> Estimate:
    """V-hat(A) - V-hat(B) from two estimates on the same sessions, with the paired standard error.

    The two estimates share the logs, so the difference's standard error comes from the per-session differences of
    their contributions, not from combining the two standard errors (which would ignore their strong correlation).

    Example:
      >>> e = Estimate(jnp.array(1.0), jnp.array(0.1), jnp.array([1.0, 1.0]))
      >>> paired_difference(e, e).stderr
      Array(0., dtype=float32)
    """
    if a.contributions_S.shape != b.contributions_S.shape:
        raise ValueError(f"contributions_S shapes differ: {a.contributions_S.shape} vs {b.contributions_S.shape}; "
                         "a paired difference needs estimates on the same sessions")
    on = jnp.ones(a.contributions_S.shape, bool) if where is None else jnp.asarray(where, bool)
    return _finish(a.contributions_S - b.contributions_S, on)
