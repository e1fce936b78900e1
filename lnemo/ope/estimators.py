"""Off-policy estimators of a target ranker's expected clicks from logs of a stochastic logging ranker.

Every estimator returns an ``Estimate``: the value, its standard error and per-session contributions (pseudo-values
whose mean is the value and whose standard deviation / sqrt(S) is the standard error; for self-normalised
estimators they are the delta-method linearisation). Propensities arrive as arrays gathered at the logged
(context, item, slot) — ``target_SxK`` = rho_e(y_ik, k | x_i), ``logging_SxK`` = rho_0-hat(y_ik, k | x_i) — or as
prefix log-probabilities ``log pi(y_i1..y_ik | x_i)`` for list estimators. ``where`` marks the slots that count
(default: all); a session with no counted slot is left out of the mean (padding sessions).

References:
  Li et al., KDD 2018 (item-position IPS); McInerney et al., KDD 2020 (SIPS, RIPS); Kiyohara et al., WSDM 2022
  (Cascade-DR); Oosterhuis & de Rijke, SIGIR 2020 (policy-aware); Swaminathan et al., NeurIPS 2017 (pseudoinverse);
  arXiv 2210.09512 (INTERPOL). Formulas in ``ope-methods.md`` §3.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lnemo.ope.marginals import _float
from lnemo.types import Array


class Estimate(NamedTuple):
    """An estimate of a ranker's value.

    Attributes:
      value: point estimate, scalar.
      stderr: standard error, scalar.
      contributions_S: per-session pseudo-values ``[S]`` (0 for sessions left out).
    """

    value: Array
    stderr: Array
    contributions_S: Array


def _concrete(*xs: object) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _slot_mask(clicks_SxK: Array, where: Array | None) -> Array:
    clicks_SxK = jnp.asarray(clicks_SxK)
    if clicks_SxK.ndim < 2:
        raise ValueError(f"clicks_SxK must be [..., S, K], got shape {clicks_SxK.shape}")
    if where is None:
        return jnp.ones(clicks_SxK.shape, bool)
    return jnp.broadcast_to(jnp.asarray(where, bool), clicks_SxK.shape)


def _check_shape(name: str, x: Array, shape: tuple[int, ...]) -> None:
    if jnp.shape(x) != shape:
        raise ValueError(f"{name} has shape {jnp.shape(x)}, expected {shape}")


def _check_positive(name: str, x: Array, where: Array) -> None:
    if _concrete(x, where):
        bad = np.asarray(where) & ~(np.asarray(x) > 0)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} must be > 0 on counted slots; got {np.asarray(x)[idx]} at index {idx}")


def _check_finite_logp(name: str, x: Array, where: Array) -> None:
    if _concrete(x, where):
        bad = np.asarray(where) & ~np.isfinite(np.asarray(x))
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} must be finite (probability > 0) on counted slots; got {np.asarray(x)[idx]} "
                             f"at index {idx}")


def _check_clip(clip: float | None) -> None:
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip}")


def _ratio(num: Array, den: Array, where: Array) -> Array:
    safe = jnp.where(where, den, 1.0)
    return jnp.where(where, num / safe, 0.0)


def _clip(w: Array, clip: float | None) -> Array:
    return w if clip is None else jnp.minimum(w, clip)


def _finish(contributions_S: Array, session_S: Array) -> Estimate:
    n = jnp.sum(session_S, axis=-1).astype(contributions_S.dtype)
    contributions_S = jnp.where(session_S, contributions_S, 0.0)
    value = jnp.sum(contributions_S, axis=-1) / jnp.maximum(n, 1.0)
    dev = jnp.where(session_S, contributions_S - value[..., None], 0.0)
    var = jnp.sum(dev**2, axis=-1) / jnp.maximum(n - 1, 1.0)
    return Estimate(value, jnp.sqrt(var / jnp.maximum(n, 1.0)), contributions_S)


def _self_normalised(num_SxK: Array, den_SxK: Array, where: Array) -> Estimate:
    """sum_k (sum_i num_ik) / (sum_i den_ik) with delta-method pseudo-values."""
    session_S = jnp.any(where, axis=-1)
    n = jnp.maximum(jnp.sum(session_S, axis=-1), 1).astype(num_SxK.dtype)[..., None, None]
    num = jnp.where(where, num_SxK, 0.0)
    den = jnp.where(where, den_SxK, 0.0)
    mean_den_K = jnp.sum(den, axis=-2, keepdims=True) / n
    has = mean_den_K > 0
    v_K = _ratio(jnp.sum(num, axis=-2, keepdims=True), jnp.sum(den, axis=-2, keepdims=True), has)
    pseudo = v_K + _ratio(num - v_K * den, mean_den_K, has)
    return _finish(jnp.sum(jnp.where(has, pseudo, 0.0), axis=-1), session_S)


def item_position_weights(target_SxK: Array, logging_SxK: Array, *, where: Array | None = None) -> Array:
    """Item-position weights w_ik = rho_e(y_ik, k) / rho_0(y_ik, k) ``[..., S, K]`` (0 where not counted)."""
    where = _slot_mask(target_SxK, where)
    _check_shape("logging_SxK", logging_SxK, jnp.shape(target_SxK))
    _check_positive("logging_SxK", logging_SxK, where)
    return _ratio(_float(target_SxK), _float(logging_SxK), where)


def naive(clicks_SxK: Array, *, where: Array | None = None) -> Estimate:
    """Logged click-through: contribution sum_k c_ik, the value of the logging ranker itself.

    Example:
      >>> naive(jnp.array([[1.0, 0.0], [0.0, 0.0]])).value
      Array(0.5, dtype=float32)
    """
    where = _slot_mask(clicks_SxK, where)
    return _finish(jnp.sum(jnp.where(where, _float(clicks_SxK), 0.0), axis=-1), jnp.any(where, axis=-1))


def ip_ips(
    clicks_SxK: Array, target_SxK: Array, logging_SxK: Array, *, where: Array | None = None, clip: float | None = None
) -> Estimate:
    """Item-position IPS: contribution sum_k min(w_ik, clip) c_ik with w_ik = rho_e(y_ik, k) / rho_0(y_ik, k).

    Unbiased under the item-position click model when rho_0 > 0 wherever rho_e > 0 (pairwise support).

    Args:
      clicks_SxK: clicks ``[..., S, K]``.
      target_SxK: target marginals at the logged (item, slot) ``[..., S, K]``.
      logging_SxK: logging propensities at the logged (item, slot), > 0 on counted slots.
      where: counted slots, bool, broadcastable.
      clip: optional weight cap lambda (biases down by at most E[(w - lambda)_+] per slot, see
        ``diagnostics.clipping_bias_bound``).

    Returns:
      ``Estimate`` (scalar value and stderr over leading dims, contributions ``[..., S]``).

    Example:
      >>> ip_ips(jnp.array([[1.0, 0.0]]), jnp.array([[0.5, 0.5]]), jnp.array([[0.25, 1.0]])).value
      Array(2., dtype=float32)

    References:
      Li et al., KDD 2018; OBP ``SlateIndependentIPS``.
    """
    _check_clip(clip)
    where = _slot_mask(clicks_SxK, where)
    _check_shape("target_SxK", target_SxK, jnp.shape(clicks_SxK))
    w = _clip(item_position_weights(target_SxK, logging_SxK, where=where), clip)
    contrib = jnp.sum(jnp.where(where, w * _float(clicks_SxK), 0.0), axis=-1)
    return _finish(contrib, jnp.any(where, axis=-1))


def sn_ip_ips(
    clicks_SxK: Array, target_SxK: Array, logging_SxK: Array, *, where: Array | None = None, clip: float | None = None
) -> Estimate:
    """Self-normalised item-position IPS: sum_k (sum_i w_ik c_ik) / (sum_i w_ik).

    Args/Returns as ``ip_ips``.

    Example:
      >>> sn_ip_ips(jnp.array([[1.0], [0.0]]), jnp.array([[0.5], [0.5]]), jnp.array([[0.25], [1.0]])).value
      Array(0.8, dtype=float32)

    References:
      Swaminathan & Joachims, NeurIPS 2015 (self-normalisation); OBP ``SelfNormalizedSlateIndependentIPS``.
    """
    _check_clip(clip)
    where = _slot_mask(clicks_SxK, where)
    _check_shape("target_SxK", target_SxK, jnp.shape(clicks_SxK))
    w = _clip(item_position_weights(target_SxK, logging_SxK, where=where), clip)
    return _self_normalised(w * _float(clicks_SxK), w, where)


def _list_weights(target_logp_SxK: Array, logging_logp_SxK: Array, where: Array) -> Array:
    _check_finite_logp("logging log-probabilities", logging_logp_SxK, where)
    diff = jnp.where(where, _float(target_logp_SxK) - _float(logging_logp_SxK), 0.0)
    return jnp.where(where, jnp.exp(diff), 0.0)


def _last(x_SxK: Array, where: Array) -> Array:
    last = jnp.maximum(jnp.sum(where, axis=-1) - 1, 0)
    return jnp.take_along_axis(x_SxK, last[..., None], axis=-1)[..., 0]


def sips(
    clicks_SxK: Array, target_logp_SxK: Array, logging_logp_SxK: Array, *, where: Array | None = None,
    clip: float | None = None,
) -> Estimate:
    """Standard (list) IPS: contribution W_i sum_k c_ik with W_i = pi_e(y_i) / pi_0(y_i) the whole-list ratio.

    Unbiased without any click-model assumption given list support; its variance explodes with K.

    Args:
      clicks_SxK: clicks ``[..., S, K]``.
      target_logp_SxK: target prefix log-probabilities log pi_e(y_i1..y_ik) ``[..., S, K]`` (the last counted slot
        is the list's).
      logging_logp_SxK: logging prefix log-probabilities, finite on counted slots.
      where: counted slots (a prefix of each list).
      clip: optional cap on W.

    Returns:
      ``Estimate``.

    Example:
      >>> lp = jnp.log(jnp.array([[0.5, 0.25]]))
      >>> sips(jnp.array([[1.0, 1.0]]), lp, lp - jnp.log(2.0)).value
      Array(4., dtype=float32)

    References:
      McInerney et al., KDD 2020, Eq. 1; OBP ``SlateStandardIPS``.
    """
    _check_clip(clip)
    where = _slot_mask(clicks_SxK, where)
    for name, x in (("target_logp_SxK", target_logp_SxK), ("logging_logp_SxK", logging_logp_SxK)):
        _check_shape(name, x, jnp.shape(clicks_SxK))
    w_S = _clip(_last(_list_weights(target_logp_SxK, logging_logp_SxK, where), where), clip)
    contrib = w_S * jnp.sum(jnp.where(where, _float(clicks_SxK), 0.0), axis=-1)
    return _finish(contrib, jnp.any(where, axis=-1))


def sn_sips(
    clicks_SxK: Array, target_logp_SxK: Array, logging_logp_SxK: Array, *, where: Array | None = None,
    clip: float | None = None,
) -> Estimate:
    """Self-normalised list IPS: sum_i W_i R_i / sum_i W_i. Args/Returns as ``sips``.

    References:
      OBP ``SelfNormalizedSlateStandardIPS``.
    """
    _check_clip(clip)
    where = _slot_mask(clicks_SxK, where)
    w_S = _clip(_last(_list_weights(target_logp_SxK, logging_logp_SxK, where), where), clip)
    reward_S = jnp.sum(jnp.where(where, _float(clicks_SxK), 0.0), axis=-1)
    session = jnp.any(where, axis=-1, keepdims=True)
    return _self_normalised((w_S * reward_S)[..., None], w_S[..., None], session)


def rips(
    clicks_SxK: Array, target_logp_SxK: Array, logging_logp_SxK: Array, *, where: Array | None = None,
    clip: float | None = None,
) -> Estimate:
    """Reward-interaction IPS: contribution sum_k W_i^{1:k} c_ik with prefix ratios W^{1:k} = pi_e(y_1:k)/pi_0(y_1:k).

    Unbiased when the click at k depends only on the prefix (cascade-like models). Args as ``sips``.

    Example:
      >>> lp = jnp.log(jnp.array([[0.5, 0.25]]))
      >>> rips(jnp.array([[1.0, 1.0]]), lp, lp - jnp.log(2.0)).value
      Array(4., dtype=float32)

    References:
      McInerney et al., KDD 2020, Eq. 3-4; OBP ``SlateRewardInteractionIPS``.
    """
    _check_clip(clip)
    where = _slot_mask(clicks_SxK, where)
    for name, x in (("target_logp_SxK", target_logp_SxK), ("logging_logp_SxK", logging_logp_SxK)):
        _check_shape(name, x, jnp.shape(clicks_SxK))
    w = _clip(_list_weights(target_logp_SxK, logging_logp_SxK, where), clip)
    return _finish(jnp.sum(w * jnp.where(where, _float(clicks_SxK), 0.0), axis=-1), jnp.any(where, axis=-1))


def sn_rips(
    clicks_SxK: Array, target_logp_SxK: Array, logging_logp_SxK: Array, *, where: Array | None = None,
    clip: float | None = None,
) -> Estimate:
    """Self-normalised RIPS: sum_k (sum_i W_i^{1:k} c_ik) / (sum_i W_i^{1:k}). Args/Returns as ``rips``.

    References:
      OBP ``SelfNormalizedSlateRewardInteractionIPS``.
    """
    _check_clip(clip)
    where = _slot_mask(clicks_SxK, where)
    w = _clip(_list_weights(target_logp_SxK, logging_logp_SxK, where), clip)
    return _self_normalised(w * _float(clicks_SxK), w, where)


def interpol_ips(
    clicks_SxK: Array, target_SxKxK: Array, logging_SxKxK: Array, theta_K: Array, *, window: int,
    where: Array | None = None, clip: float | None = None,
) -> Estimate:
    """INTERPOL: a click on item a at slot k weighted by sum_{|k'-k|<=w} rho_e(a,k') theta_k' / the same for rho_0.

    ``window=0`` is item-position IPS; ``window >= K`` is PBM / policy-aware IPS (one item-level weight).

    Args:
      clicks_SxK: clicks ``[..., S, K]``.
      target_SxKxK: rho_e(y_ik, k' | x_i) for every slot k' ``[..., S, K, K']``.
      logging_SxKxK: rho_0-hat(y_ik, k' | x_i) ``[..., S, K, K']``.
      theta_K: examination probabilities ``[K']``.
      window: w >= 0 (static).
      where: counted slots ``[..., S, K]``.
      clip: optional weight cap.

    Returns:
      ``Estimate``.

    Example:
      >>> rho_e = jnp.array([[[0.0, 1.0]]]); rho_0 = jnp.array([[[1.0, 0.0]]])
      >>> interpol_ips(jnp.array([[1.0]]), rho_e[:, :1], rho_0[:, :1], jnp.array([1.0, 0.5]), window=2).value
      Array(0.5, dtype=float32)

    References:
      arXiv 2210.09512 (windowed theta-weighting; normalisation reconstructed); Oosterhuis & de Rijke, SIGIR 2020.
    """
    _check_clip(clip)
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    where = _slot_mask(clicks_SxK, where)
    _check_shape("logging_SxKxK", logging_SxKxK, jnp.shape(target_SxKxK))
    slots, slots_all = jnp.shape(target_SxKxK)[-2], jnp.shape(target_SxKxK)[-1]
    if jnp.shape(theta_K) != (slots_all,):
        raise ValueError(f"theta_K has shape {jnp.shape(theta_K)}, expected ({slots_all},)")
    k, k2 = np.arange(slots)[:, None], np.arange(slots_all)[None, :]
    band_KxK = jnp.asarray((np.abs(k - k2) <= window), jnp.float32) * _float(theta_K)
    num = jnp.sum(_float(target_SxKxK) * band_KxK, axis=-1)
    den = jnp.sum(_float(logging_SxKxK) * band_KxK, axis=-1)
    _check_positive("logging_SxKxK (theta-weighted over the window)", den, where)
    w = _clip(_ratio(num, den, where), clip)
    contrib = jnp.sum(jnp.where(where, w * _float(clicks_SxK), 0.0), axis=-1)
    return _finish(contrib, jnp.any(where, axis=-1))


def pbm_ips(
    clicks_SxK: Array, target_SxKxK: Array, logging_SxKxK: Array, theta_K: Array, *, where: Array | None = None,
    clip: float | None = None,
) -> Estimate:
    """PBM / policy-aware IPS: weight sum_k' rho_e(a,k') theta_k' / sum_k' rho_0(a,k') theta_k' for a click on a.

    Unbiased under the position-based model with known theta. ``interpol_ips`` with the full window.

    Example:
      >>> rho_e = jnp.array([[[0.0, 1.0]]]); rho_0 = jnp.array([[[1.0, 0.0]]])
      >>> pbm_ips(jnp.array([[1.0]]), rho_e, rho_0, jnp.array([1.0, 0.5])).value
      Array(0.5, dtype=float32)

    References:
      Oosterhuis & de Rijke, SIGIR 2020; Li et al., KDD 2018.
    """
    window = jnp.shape(theta_K)[0]
    return interpol_ips(clicks_SxK, target_SxKxK, logging_SxKxK, theta_K, window=window, where=where, clip=clip)


def pseudoinverse_ips(
    clicks_SxK: Array, items_SxK: Array, context_S: Array, target_CxNxK: Array, logging_pairs_CxMxM: Array, *,
    where: Array | None = None,
) -> Estimate:
    """Pseudoinverse estimator: contribution r_i q_e(x_i)^T Gamma_0(x_i)^+ 1_{y_i}, r_i = sum_k c_ik.

    q_e = rho_e flattened (index ``a * K + k``); Gamma_0 = E_{pi_0}[1_y 1_y^T] the logging ranker's pairwise
    marginals (``marginals.pl_pair_marginals_exact``). Unbiased when the list reward is additive over (item, slot).

    Args:
      clicks_SxK: clicks ``[S, K]``.
      items_SxK: logged items ``[S, K]`` (-1 = empty).
      context_S: context ids ``[S]``.
      target_CxNxK: target marginals per context.
      logging_pairs_CxMxM: logging pairwise marginals, M = N*K.
      where: counted slots.

    Returns:
      ``Estimate``.

    Example:
      >>> from lnemo.ope.marginals import pl_pair_marginals_exact, pl_marginals_exact
      >>> g = pl_pair_marginals_exact(jnp.zeros((1, 2)), num_slots=1)
      >>> pseudoinverse_ips(jnp.array([[1.0]]), jnp.array([[0]]), jnp.array([0]), jnp.array([[[1.0], [0.0]]]), g).value
      Array(2., dtype=float32)

    References:
      Swaminathan et al., NeurIPS 2017, §3.
    """
    where = _slot_mask(clicks_SxK, where) & (jnp.asarray(items_SxK) >= 0)
    c, n, k = jnp.shape(target_CxNxK)
    _check_shape("logging_pairs_CxMxM", logging_pairs_CxMxM, (c, n * k, n * k))
    _check_shape("items_SxK", items_SxK, jnp.shape(clicks_SxK))
    q_CxM = _float(target_CxNxK).reshape(c, n * k)
    beta_CxM = jnp.einsum("cmq,cq->cm", jnp.linalg.pinv(_float(logging_pairs_CxMxM), hermitian=True), q_CxM)
    beta_CxNxK = beta_CxM.reshape(c, n, k)
    slot = jnp.arange(jnp.shape(items_SxK)[-1])
    coef = beta_CxNxK[jnp.asarray(context_S)[:, None], jnp.maximum(items_SxK, 0), slot]
    reward_S = jnp.sum(jnp.where(where, _float(clicks_SxK), 0.0), axis=-1)
    return _finish(reward_S * jnp.sum(jnp.where(where, coef, 0.0), axis=-1), jnp.any(where, axis=-1))


def direct_method(
    target_CxNxK: Array, click_rates_CxNxK: Array, context_S: Array, *, where: Array | None = None
) -> Estimate:
    """Direct method: contribution sum_k sum_a rho_e(a, k | x_i) u-hat(a, k | x_i) from a fitted click model.

    The standard error reflects only the spread over logged contexts, not the click model's error.

    Args:
      target_CxNxK: target marginals per context.
      click_rates_CxNxK: fitted u-hat(a, k | x) (e.g. ``click_fit.PositionBasedEM``).
      context_S: context ids of the logged sessions ``[S]``.
      where: counted sessions ``[S]``.

    Returns:
      ``Estimate``.

    Example:
      >>> direct_method(jnp.ones((1, 1, 1)), jnp.full((1, 1, 1), 0.3), jnp.array([0, 0])).value
      Array(0.3, dtype=float32)

    References:
      lnemo ``ope-methods.md`` §3 (DM with a fitted PBM / cascade / UBM).
    """
    _check_shape("click_rates_CxNxK", click_rates_CxNxK, jnp.shape(target_CxNxK))
    value_C = jnp.sum(_float(target_CxNxK) * _float(click_rates_CxNxK), axis=(-2, -1))
    session = jnp.ones(jnp.shape(context_S), bool) if where is None else jnp.asarray(where, bool)
    return _finish(value_C[jnp.asarray(context_S)], session)


def cascade_dr(
    clicks_SxK: Array, target_logp_SxK: Array, logging_logp_SxK: Array, q_logged_SxK: Array, q_target_SxK: Array,
    *, where: Array | None = None, clip: float | None = None,
) -> Estimate:
    """Cascade doubly robust: sum_k [W^{1:k} (c_k - Q_k(y_1:k)) + W^{1:k-1} E_{a~pi_e(.|y_1:k-1)} Q_k(y_1:k-1, a)].

    Unbiased for any baseline Q under the cascade assumption when the prefix ratios are correct; a good Q lowers
    the variance (``cascade_dr_baselines`` builds one from a fitted click model).

    Args:
      clicks_SxK: clicks ``[..., S, K]``.
      target_logp_SxK: target prefix log-probabilities.
      logging_logp_SxK: logging prefix log-probabilities (finite on counted slots).
      q_logged_SxK: Q_k at the logged prefix y_1:k.
      q_target_SxK: E_{a ~ pi_e(.|y_1:k-1)} Q_k(y_1:k-1, a).
      where: counted slots (a prefix of each list).
      clip: optional cap on the prefix ratios.

    Returns:
      ``Estimate``.

    Example:
      >>> z = jnp.zeros((1, 2))
      >>> cascade_dr(jnp.array([[1.0, 0.0]]), z, z, jnp.array([[0.4, 0.1]]), jnp.array([[0.5, 0.1]])).value
      Array(1.1, dtype=float32)

    References:
      Kiyohara et al., WSDM 2022; OBP ``SlateCascadeDoublyRobust``.
    """
    _check_clip(clip)
    where = _slot_mask(clicks_SxK, where)
    for name, x in (("target_logp_SxK", target_logp_SxK), ("logging_logp_SxK", logging_logp_SxK),
                    ("q_logged_SxK", q_logged_SxK), ("q_target_SxK", q_target_SxK)):
        _check_shape(name, x, jnp.shape(clicks_SxK))
    w = _clip(_list_weights(target_logp_SxK, logging_logp_SxK, where), clip)
    w_prev = jnp.concatenate([jnp.ones_like(w[..., :1]), w[..., :-1]], axis=-1)
    terms = w * (_float(clicks_SxK) - _float(q_logged_SxK)) + w_prev * _float(q_target_SxK)
    return _finish(jnp.sum(jnp.where(where, terms, 0.0), axis=-1), jnp.any(where, axis=-1))
