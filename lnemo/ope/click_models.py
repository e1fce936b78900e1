"""Click models: exact expected clicks of any shown list, samplers taking a key, and presets.

Every model acts on the attractiveness gamma of the shown items, ``attractiveness_SxK`` in [0, 1] (slot k of session
s; use ``where`` or gamma = 0 for empty slots). The item-position family (``PositionBased``, ``TrustBias``) also
exposes ``item_position_ctr``: u(a, k) = E[click | a shown at k], which makes any ranker's value closed-form via its
marginals. Cascade-type models (``Cascade``, ``DependentClick``, ``UserBrowsing``) give exact expected clicks of a
fixed list by a forward recursion over slots.

Presets follow ``ope-methods.md`` §6 (ULTRA / OBP / Oosterhuis click-simulation settings).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lnemo.ope.marginals import _float
from lnemo.types import Array, PRNGKey

_EYETRACK = np.array([0.68, 0.61, 0.48, 0.34, 0.28, 0.20, 0.11, 0.10, 0.08, 0.06])


def _gamma(attractiveness_SxK: Array, where: Array | None) -> Array:
    gamma = _float(attractiveness_SxK)
    if where is not None:
        gamma = jnp.where(where, gamma, 0.0)
    return gamma


# ----------------------------------------------------------------------------------------------- relevance maps
def attractiveness_noise(labels: Array, *, eps_minus: float = 0.1, eps_plus: float = 1.0, max_grade: int = 4) -> Array:
    """ERR-style noisy map gamma(y) = eps- + (eps+ - eps-) (2^y - 1) / (2^y_max - 1).

    Args:
      labels: graded relevance, any shape, values in 0..max_grade.
      eps_minus: click probability of an irrelevant item (noise).
      eps_plus: click probability of a perfect item.
      max_grade: y_max.

    Returns:
      Attractiveness, same shape, float.

    Example:
      >>> attractiveness_noise(jnp.array([0, 4]))  # [0.1, 1.0]  # doctest: +SKIP

    References:
      ULTRA click-model configs (``pbm_0.1_1.0_4_1.0.json``); Chapelle et al., CIKM 2009 (ERR gain).
    """
    labels = _float(labels)
    return eps_minus + (eps_plus - eps_minus) * (2.0**labels - 1) / (2.0**max_grade - 1)


def attractiveness_linear(labels: Array, *, max_grade: int = 4) -> Array:
    """Linear map gamma(y) = y / y_max (0.25 y for grades 0..4). Oosterhuis' doubly robust LTR code."""
    return _float(labels) / max_grade


def attractiveness_squared(labels: Array, *, max_grade: int = 4) -> Array:
    """Squared map gamma(y) = (y / y_max)^2 (lnemo's reading of the MPL repository's "squared" relevance)."""
    return (_float(labels) / max_grade) ** 2


def attractiveness_binary(labels: Array, *, threshold: int = 3, eps_minus: float = 0.1) -> Array:
    """Binary map with noise: gamma = 1 if y >= threshold else eps_minus (Joachims et al., WSDM 2017 setting)."""
    return jnp.where(_float(labels) >= threshold, 1.0, eps_minus)


# ----------------------------------------------------------------------------------------------- examination presets
def pbm_eyetrack(num_slots: int, *, severity: float = 1.0) -> Array:
    """Eye-tracking examination theta = [0.68, 0.61, ..., 0.06]^eta, the last value repeated beyond rank 10 (ULTRA)."""
    values = np.concatenate([_EYETRACK, np.full(max(0, num_slots - 10), _EYETRACK[-1])])[:num_slots]
    return jnp.asarray(values**severity, jnp.float32)


def pbm_power(num_slots: int, *, severity: float = 1.0) -> Array:
    """Power-law examination theta_k = (1/k)^eta, k = 1..K (OBP ``click_model='pbm'``; Joachims et al.)."""
    return jnp.asarray((1.0 / np.arange(1, num_slots + 1)) ** severity, jnp.float32)


def pbm_dcg(num_slots: int, *, severity: float = 1.0) -> Array:
    """DCG examination theta_k = (1 / log2(k + 1))^eta (MPL repository ``pos_bias='dcg'``)."""
    return jnp.asarray((1.0 / np.log2(np.arange(2, num_slots + 2))) ** severity, jnp.float32)


# ----------------------------------------------------------------------------------------------- models
class PositionBased(NamedTuple):
    """Position-based model: P(click at k) = theta_k * gamma(y_k).

    Attributes:
      theta: examination probabilities ``[K]``.

    Example:
      >>> PositionBased(pbm_power(2)).expected_clicks(jnp.array([[1.0, 0.5]]))  # [[1.0, 0.25]]  # doctest: +SKIP

    References:
      Craswell et al., WSDM 2008; Joachims et al., WSDM 2017.
    """

    theta: Array

    def expected_clicks(self, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Expected clicks per slot ``[..., K]``."""
        return _gamma(attractiveness_SxK, where) * self.theta

    def sample(self, key: PRNGKey, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Clicks ``[..., K]`` in {0, 1}."""
        p = self.expected_clicks(attractiveness_SxK, where=where)
        return (jax.random.uniform(key, p.shape, p.dtype) < p).astype(p.dtype)

    def item_position_ctr(self, attractiveness_N: Array) -> Array:
        """u(a, k) = theta_k gamma_a, ``[..., N, K]``."""
        return _float(attractiveness_N)[..., None] * self.theta


class TrustBias(NamedTuple):
    """Trust-bias model: P(click at k) = theta_k (eps+_k gamma + eps-_k (1 - gamma)).

    Attributes:
      theta: examination ``[K]``.
      eps_plus: click probability of an examined attractive item per slot ``[K]``.
      eps_minus: click probability of an examined unattractive item per slot ``[K]``.

    References:
      Agarwal et al., WWW 2019 (trust bias); ULTRA and Oosterhuis presets (``ope-methods.md`` §6).
    """

    theta: Array
    eps_plus: Array
    eps_minus: Array

    @classmethod
    def oosterhuis_default(cls, num_slots: int) -> "TrustBias":
        """k 0-based: theta = 0.35/(k+1) + 0.65/(1 + 0.05k), eps+ = 1/(1 + 0.005k), eps- = 0.65/(k+1)."""
        k = np.arange(num_slots)
        return cls(*(jnp.asarray(a, jnp.float32) for a in (0.35 / (k + 1) + 0.65 / (1 + 0.05 * k),
                                                           1 / (1 + 0.005 * k), 0.65 / (k + 1))))

    @classmethod
    def oosterhuis_long(cls, num_slots: int) -> "TrustBias":
        """k 0-based: theta = (1 + k/5)^-2, eps+ = 1, eps- = 0.1 + 0.6 / ((k+1)/20 + 1)."""
        k = np.arange(num_slots)
        return cls(*(jnp.asarray(a, jnp.float32) for a in ((1 + k / 5) ** -2.0, np.ones(num_slots),
                                                           0.1 + 0.6 / ((k + 1) / 20 + 1))))

    @classmethod
    def ultra(cls, num_slots: int, *, eps_minus_1: float = 0.65, severity: float = 1.0) -> "TrustBias":
        """k 1-based: theta = eye-tracking^eta, eps+_k = 1 - (k+2)/100, eps-_k = eps-_1 / (k+1)."""
        k = np.arange(1, num_slots + 1)
        eps_plus = jnp.asarray(1 - (k + 2) / 100, jnp.float32)
        eps_minus = jnp.asarray(eps_minus_1 / (k + 1), jnp.float32)
        return cls(pbm_eyetrack(num_slots, severity=severity), eps_plus, eps_minus)

    def expected_clicks(self, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Expected clicks per slot ``[..., K]`` (0 at empty slots)."""
        gamma = _float(attractiveness_SxK)
        p = self.theta * (self.eps_plus * gamma + self.eps_minus * (1 - gamma))
        return p if where is None else jnp.where(where, p, 0.0)

    def sample(self, key: PRNGKey, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Clicks ``[..., K]`` in {0, 1}."""
        p = self.expected_clicks(attractiveness_SxK, where=where)
        return (jax.random.uniform(key, p.shape, p.dtype) < p).astype(p.dtype)

    def item_position_ctr(self, attractiveness_N: Array) -> Array:
        """u(a, k) ``[..., N, K]``."""
        gamma = _float(attractiveness_N)[..., None]
        return self.theta * (self.eps_plus * gamma + self.eps_minus * (1 - gamma))


class DependentClick(NamedTuple):
    """Dependent click model: examine top-down; click with probability gamma; after a click at k continue with
    probability lambda_k (without a click always continue). ``lambda = 0`` is the cascade model.

    E[c_k] = gamma_k P(E_k), P(E_{k+1}) = P(E_k) (1 - gamma_k (1 - lambda_k)).

    Attributes:
      continuation: lambda ``[K]``.

    References:
      Guo et al., WSDM 2009 (DCM); OBP ``click_model='cascade'`` uses lambda_k = (1/k)^eta.
    """

    continuation: Array

    @classmethod
    def power(cls, num_slots: int, *, severity: float = 1.0) -> "DependentClick":
        """lambda_k = (1/k)^eta, k = 1..K (lnemo's DCM preset in the spirit of OBP)."""
        return cls(pbm_power(num_slots, severity=severity))

    def expected_clicks(self, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Exact expected clicks per slot ``[..., K]``."""
        gamma = _gamma(attractiveness_SxK, where)
        keep = 1 - gamma * (1 - self.continuation)
        examine = jnp.cumprod(jnp.concatenate([jnp.ones_like(keep[..., :1]), keep[..., :-1]], axis=-1), axis=-1)
        return gamma * examine

    def sample(self, key: PRNGKey, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Clicks ``[..., K]`` in {0, 1}."""
        gamma = _gamma(attractiveness_SxK, where)
        k_attr, k_cont = jax.random.split(key)
        attract = jax.random.uniform(k_attr, gamma.shape, gamma.dtype) < gamma
        cont = jax.random.uniform(k_cont, gamma.shape, gamma.dtype) < self.continuation
        stop = attract & ~cont
        stopped_before = (jnp.cumsum(stop, axis=-1) - stop) > 0
        return (attract & ~stopped_before).astype(gamma.dtype)


class Cascade(NamedTuple):
    """Cascade model: examine top-down and stop after the first click. E[c_k] = gamma_k prod_{j<k} (1 - gamma_j).

    References:
      Craswell et al., WSDM 2008.
    """

    def expected_clicks(self, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Exact expected clicks per slot ``[..., K]``."""
        gamma = _gamma(attractiveness_SxK, where)
        return DependentClick(jnp.zeros(gamma.shape[-1], gamma.dtype)).expected_clicks(gamma)

    def sample(self, key: PRNGKey, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Clicks ``[..., K]`` (at most one)."""
        gamma = _gamma(attractiveness_SxK, where)
        return DependentClick(jnp.zeros(gamma.shape[-1], gamma.dtype)).sample(key, gamma)


class UserBrowsing(NamedTuple):
    """User browsing model: P(examine k) = theta[k, d] with d the distance to the last click (k itself if none).

    Expected clicks of a fixed list by a forward DP over the last-click position, O(K^2).

    Attributes:
      theta: ``[K, K]``; ``theta[k, d - 1]`` for 0-based slot k and distance d in 1..k+1.

    References:
      Dupret & Piwowarski, SIGIR 2008.
    """

    theta: Array

    @classmethod
    def distance_power(cls, num_slots: int, *, severity: float = 1.0) -> "UserBrowsing":
        """theta[k, d] = (1/d)^eta: lnemo's own preset (not ULTRA's fitted table); no clicks reduce to ``pbm_power``."""
        d = np.arange(1, num_slots + 1)
        return cls(jnp.asarray(np.tile((1.0 / d) ** severity, (num_slots, 1)), jnp.float32))

    def _exam(self, k: int, last_R: Array) -> Array:
        return self.theta[k, k - last_R]

    def expected_clicks(self, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Exact expected clicks per slot ``[..., K]``."""
        gamma = _gamma(attractiveness_SxK, where)
        num_slots = gamma.shape[-1]
        # state[r] = P(last click at 0-based slot r - 1), r = 0 means no click yet.
        state = jnp.zeros(gamma.shape[:-1] + (num_slots + 1,), gamma.dtype).at[..., 0].set(1.0)
        out = []
        for k in range(num_slots):
            r = jnp.arange(k + 1)
            p_click_R = self.theta[k, k - r] * gamma[..., k : k + 1]
            click_k = jnp.sum(state[..., : k + 1] * p_click_R, axis=-1)
            state = state.at[..., : k + 1].multiply(1 - p_click_R).at[..., k + 1].set(click_k)
            out.append(click_k)
        return jnp.stack(out, axis=-1)

    def sample(self, key: PRNGKey, attractiveness_SxK: Array, *, where: Array | None = None) -> Array:
        """Clicks ``[..., K]`` in {0, 1}."""
        gamma = _gamma(attractiveness_SxK, where)
        u = jax.random.uniform(key, gamma.shape, gamma.dtype)
        last = jnp.zeros(gamma.shape[:-1], jnp.int32)
        clicks = []
        for k in range(gamma.shape[-1]):
            c = u[..., k] < self.theta[k, k - last] * gamma[..., k]
            last = jnp.where(c, k + 1, last)
            clicks.append(c.astype(gamma.dtype))
        return jnp.stack(clicks, axis=-1)
