"""Token-level distillation divergences between a teacher distribution p and a student distribution q.

Every divergence has the signature ``(student_logits_xV, teacher_logits_xV, *, where=None, axis=-1)``,
returns the unreduced float32 per-token value and puts the teacher under ``stop_gradient``. They compose:
``with_temperature`` wraps any of them, the top-k functions take one as ``divergence=``, and
``lnemo.losses.chunked`` evaluates any of them chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from lnemo.losses._numerics import (
    check_unit_interval,
    kl_from_logprobs,
    log1mexp,
    log_mixture,
    masked,
    safe_logsumexp,
    token_ids,
    vocab_last,
)
from lnemo.types import Array

Divergence = Callable[..., Array]
"""``(student_logits_xV, teacher_logits_xV, *, where=None, axis=-1) -> loss_x``."""


def _logprobs(student_logits_xV: Array, teacher_logits_xV: Array, where: Array | None, axis: int):
    student_xV = vocab_last(student_logits_xV, where=where, axis=axis)
    teacher_xV = vocab_last(jax.lax.stop_gradient(teacher_logits_xV), where=where, axis=axis)
    return jax.nn.log_softmax(student_xV, axis=-1), jax.nn.log_softmax(teacher_xV, axis=-1)


def forward_kl(
    student_logits_xV: Array, teacher_logits_xV: Array, *, where: Array | None = None, axis: int = -1
) -> Array:
    """Forward KL divergence from the teacher to the student, per token (mode-covering).

    $$\\mathrm{KL}(p\\,\\|\\,q) = \\sum_v p_v (\\log p_v - \\log q_v)$$

    Args:
      student_logits_xV: student logits, leading shape ``x``, vocabulary on ``axis``.
      teacher_logits_xV: teacher logits, same shape (under ``stop_gradient``).
      where: boolean mask broadcastable to ``x``; True = counts.
      axis: the vocabulary axis.

    Returns:
      Float32 per-token KL, shape ``x``, >= 0; 0 where masked.

    Example:
      >>> forward_kl(jnp.log(jnp.array([0.25, 0.75])), jnp.log(jnp.array([0.5, 0.5])))
      Array(0.14384..., dtype=float32)

    References:
      Hinton et al., "Distilling the Knowledge in a Neural Network", arXiv 1503.02531, §2; the logit term
      of Puzzle's global KD (arXiv 2411.19146; reference sheet §6.8).
    """
    logq, logp = _logprobs(student_logits_xV, teacher_logits_xV, where, axis)
    return masked(kl_from_logprobs(logp, logq), where)


def reverse_kl(
    student_logits_xV: Array, teacher_logits_xV: Array, *, where: Array | None = None, axis: int = -1
) -> Array:
    """Reverse KL divergence from the student to the teacher, per token (mode-seeking).

    $$\\mathrm{KL}(q\\,\\|\\,p) = \\sum_v q_v (\\log q_v - \\log p_v)$$

    On student-generated tokens this is on-policy distillation. Arguments and return as in ``forward_kl``.

    Example:
      >>> reverse_kl(jnp.log(jnp.array([0.25, 0.75])), jnp.log(jnp.array([0.5, 0.5])))
      Array(0.13081..., dtype=float32)

    References:
      Gu et al., "MiniLLM", arXiv 2306.08543; reference sheet §11.
    """
    logq, logp = _logprobs(student_logits_xV, teacher_logits_xV, where, axis)
    return masked(kl_from_logprobs(logq, logp), where)


def generalized_jsd(
    student_logits_xV: Array,
    teacher_logits_xV: Array,
    *,
    beta: float = 0.5,
    where: Array | None = None,
    axis: int = -1,
) -> Array:
    """Generalised Jensen-Shannon divergence with interpolation weight ``beta``, per token.

    $$m = \\beta p + (1-\\beta) q, \\qquad
      \\mathrm{JSD}_\\beta = \\beta\\,\\mathrm{KL}(p\\,\\|\\,m) + (1-\\beta)\\,\\mathrm{KL}(q\\,\\|\\,m)$$

    with ``log m = logaddexp(log p + log beta, log q + log(1 - beta))``. By the GKD/TRL convention the
    endpoints are special-cased: ``beta = 0`` is the forward KL and ``beta = 1`` the reverse KL (the
    formula itself tends to 0 at both ends, so the family is discontinuous there). ``beta = 0.5`` is the
    symmetric Jensen-Shannon divergence, bounded by ``log 2``.

    Args:
      student_logits_xV: student logits, leading shape ``x``, vocabulary on ``axis``.
      teacher_logits_xV: teacher logits, same shape (under ``stop_gradient``).
      beta: interpolation weight in [0, 1], a Python float.
      where: boolean mask broadcastable to ``x``; True = counts.
      axis: the vocabulary axis.

    Returns:
      Float32 per-token divergence, shape ``x``; 0 where masked.

    Example:
      >>> generalized_jsd(jnp.log(jnp.array([0.0, 1.0])), jnp.log(jnp.array([1.0, 0.0])), beta=0.5)
      Array(0.6931472, dtype=float32)

    References:
      Agarwal et al., "On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes"
      (GKD), arXiv 2306.13649; TRL ``GKDTrainer.generalized_jsd_loss``.
    """
    check_unit_interval("beta", beta)
    if beta == 0.0:
        return forward_kl(student_logits_xV, teacher_logits_xV, where=where, axis=axis)
    if beta == 1.0:
        return reverse_kl(student_logits_xV, teacher_logits_xV, where=where, axis=axis)
    logq, logp = _logprobs(student_logits_xV, teacher_logits_xV, where, axis)
    logm = log_mixture(logp, logq, beta)
    return masked(beta * kl_from_logprobs(logp, logm) + (1.0 - beta) * kl_from_logprobs(logq, logm), where)


def skew_kl(
    student_logits_xV: Array,
    teacher_logits_xV: Array,
    *,
    alpha: float = 0.1,
    where: Array | None = None,
    axis: int = -1,
) -> Array:
    """Skew KL divergence: forward KL against a student mixed with a little teacher, per token.

    $$\\mathrm{SKL}_\\alpha = \\mathrm{KL}(p\\,\\|\\,\\alpha p + (1-\\alpha) q)$$

    Mixing bounds the gradient where ``q`` is tiny; ``alpha = 0`` is the forward KL.

    Args:
      student_logits_xV: student logits, leading shape ``x``, vocabulary on ``axis``.
      teacher_logits_xV: teacher logits, same shape (under ``stop_gradient``).
      alpha: skew in [0, 1], a Python float (DistiLLM uses 0.1).
      where: boolean mask broadcastable to ``x``; True = counts.
      axis: the vocabulary axis.

    Returns:
      Float32 per-token divergence, shape ``x``, at most ``-log alpha``; 0 where masked.

    Example:
      >>> skew_kl(jnp.log(jnp.array([0.25, 0.75])), jnp.log(jnp.array([0.5, 0.5])), alpha=0.0)
      Array(0.14384..., dtype=float32)

    References:
      Ko et al., "DistiLLM: Towards Streamlined Distillation for Large Language Models", arXiv 2402.03898.
    """
    check_unit_interval("alpha", alpha)
    logq, logp = _logprobs(student_logits_xV, teacher_logits_xV, where, axis)
    return masked(kl_from_logprobs(logp, log_mixture(logp, logq, alpha)), where)


def skew_reverse_kl(
    student_logits_xV: Array,
    teacher_logits_xV: Array,
    *,
    alpha: float = 0.1,
    where: Array | None = None,
    axis: int = -1,
) -> Array:
    """Skew reverse KL divergence: reverse KL against a teacher mixed with a little student, per token.

    $$\\mathrm{SRKL}_\\alpha = \\mathrm{KL}(q\\,\\|\\,\\alpha q + (1-\\alpha) p)$$

    ``alpha = 0`` is the reverse KL. Arguments and return as in ``skew_kl``.

    Example:
      >>> skew_reverse_kl(jnp.log(jnp.array([0.25, 0.75])), jnp.log(jnp.array([0.5, 0.5])), alpha=0.0)
      Array(0.13081..., dtype=float32)

    References:
      Ko et al., "DistiLLM", arXiv 2402.03898; reference sheet §11.
    """
    check_unit_interval("alpha", alpha)
    logq, logp = _logprobs(student_logits_xV, teacher_logits_xV, where, axis)
    return masked(kl_from_logprobs(logq, log_mixture(logq, logp, alpha)), where)


def total_variation(
    student_logits_xV: Array, teacher_logits_xV: Array, *, where: Array | None = None, axis: int = -1
) -> Array:
    """Total variation distance between teacher and student, per token (bounded in [0, 1]).

    $$\\mathrm{TV}(p, q) = \\tfrac12 \\sum_v |p_v - q_v|$$

    Arguments and return as in ``forward_kl``.

    Example:
      >>> total_variation(jnp.log(jnp.array([0.25, 0.75])), jnp.log(jnp.array([0.5, 0.5])))
      Array(0.25, dtype=float32)

    References:
      Wen et al., "f-Divergence Minimization for Sequence-Level Knowledge Distillation", arXiv 2307.15190.
    """
    logq, logp = _logprobs(student_logits_xV, teacher_logits_xV, where, axis)
    return masked(0.5 * jnp.sum(jnp.abs(jnp.exp(logp) - jnp.exp(logq)), axis=-1), where)


def with_temperature(divergence: Divergence, temperature: float, *, rescale: bool = True) -> Divergence:
    """Wrap a divergence so that both distributions are softened by ``temperature``.

    $$p_T = \\mathrm{softmax}(z_t / T), \\quad q_T = \\mathrm{softmax}(z_s / T), \\quad
      \\mathcal{L}_T = T^2 \\, D(p_T, q_T)$$

    The ``T^2`` factor (``rescale=True``) keeps gradient magnitudes comparable across temperatures.

    Args:
      divergence: any function with the divergence signature of this module (use ``functools.partial``
        to fix options such as ``beta`` or ``k``).
      temperature: T > 0.
      rescale: multiply the loss by ``T**2``.

    Returns:
      A divergence with the same signature.

    Example:
      >>> kd = with_temperature(forward_kl, 2.0)
      >>> kd(student_logits_BxTxV, teacher_logits_BxTxV, where=mask_BxT).shape
      (B, T)

    References:
      Hinton et al., arXiv 1503.02531, §2 (the ``T^2`` factor).
    """
    if not float(temperature) > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    factor = float(temperature) ** 2 if rescale else 1.0

    def tempered(student_logits_xV: Array, teacher_logits_xV: Array, *, where: Array | None = None, axis: int = -1):
        student = jnp.asarray(student_logits_xV, jnp.float32) / temperature
        teacher = jnp.asarray(teacher_logits_xV, jnp.float32) / temperature
        return factor * divergence(student, teacher, where=where, axis=axis)

    return tempered


def teacher_top_k(teacher_logits_xV: Array, *, k: int, axis: int = -1) -> tuple[Array, Array]:
    """The teacher's k most likely token ids and their full-softmax log-probs, for caching to disk.

    Args:
      teacher_logits_xV: teacher logits, leading shape ``x``, vocabulary on ``axis``.
      k: how many tokens to keep, ``1 <= k <= V``.
      axis: the vocabulary axis.

    Returns:
      ``(ids_xK, logprobs_xK)``: int32 ids sorted by decreasing probability and their float32
      log-probs under the full softmax, each with the k axis last.

    Example:
      >>> ids_BxTxK, logprobs_BxTxK = teacher_top_k(teacher_logits_BxTxV, k=64)

    References:
      Top-k logit KD: storage falls by about V / k (reference sheet §11).
    """
    logits_xV = vocab_last(jax.lax.stop_gradient(teacher_logits_xV), where=None, axis=axis)
    vocab = logits_xV.shape[-1]
    if not 1 <= k <= vocab:
        raise ValueError(f"k must lie in [1, {vocab}] (the vocabulary size), got {k}")
    top_xK, ids_xK = jax.lax.top_k(logits_xV, k)
    return ids_xK.astype(jnp.int32), top_xK - safe_logsumexp(logits_xV)[..., None]


def top_k_distill_from_cache(
    student_logits_xV: Array,
    teacher_ids_xK: Array,
    teacher_logprobs_xK: Array,
    *,
    divergence: Divergence = forward_kl,
    tail: bool = False,
    where: Array | None = None,
    axis: int = -1,
) -> Array:
    """Divergence on the teacher's cached top-k tokens, with the student renormalised over them.

    Without ``tail`` both distributions are restricted to the k ids and renormalised:
    $\\tilde p_i = p_i / \\sum_{j \\in K} p_j$, $\\tilde q_i = q_i / \\sum_{j \\in K} q_j$, and the loss is
    $D(\\tilde p, \\tilde q)$ over k bins. With ``tail`` a (k+1)-th bin holds the remaining mass,
    $1 - \\sum_{j \\in K} p_j$ for the teacher and $\\sum_{v \\notin K} q_v$ for the student (computed by a
    log-sum-exp over the other ids, not by subtraction), so nothing is renormalised. The cached teacher
    tail is only as accurate as the cached log-probs (their rounding is about ``1e-7 * |logit|`` each); a
    student with no mass outside the k ids (a -inf-masked vocabulary) then faces a rounding-sized teacher
    tail, which the forward KL punishes without bound. ``top_k_distill`` has the exact teacher tail.

    Args:
      student_logits_xV: student logits, leading shape ``x``, vocabulary on ``axis``.
      teacher_ids_xK: the teacher's top-k ids (distinct), integer, k axis last (see ``teacher_top_k``).
      teacher_logprobs_xK: their teacher log-probs under the full softmax, k axis last.
      divergence: the divergence applied to the k (or k+1) bins; any function of this module.
      tail: add the tail-mass bin; needs ``k < V``.
      where: boolean mask broadcastable to ``x``; True = counts.
      axis: the vocabulary axis of ``student_logits_xV``.

    Returns:
      Float32 per-token loss, shape ``x``; 0 where masked.

    Example:
      >>> ids, logprobs = teacher_top_k(teacher_logits_BxTxV, k=64)
      >>> top_k_distill_from_cache(student_logits_BxTxV, ids, logprobs, where=mask_BxT).shape
      (B, T)

    References:
      Top-k logit KD, restricted and renormalised or with k teacher log-probs plus tail mass (reference
      sheet §11).
    """
    student_xV = vocab_last(student_logits_xV, where=where, axis=axis)
    ids_xK = token_ids(teacher_ids_xK, where=None if where is None else jnp.asarray(where)[..., None])
    teacher_xK = jax.lax.stop_gradient(jnp.asarray(teacher_logprobs_xK, jnp.float32))
    if ids_xK.shape != teacher_xK.shape:
        raise ValueError(f"teacher_ids_xK shape {ids_xK.shape} != teacher_logprobs_xK shape {teacher_xK.shape}")
    if where is not None:
        teacher_xK = jnp.where(jnp.asarray(where)[..., None], teacher_xK, 0.0)
    teacher_tail_x = log1mexp(safe_logsumexp(teacher_xK)) if tail else None
    return _top_k_divergence(student_xV, ids_xK, teacher_xK, teacher_tail_x, divergence, where)


def top_k_distill(
    student_logits_xV: Array,
    teacher_logits_xV: Array,
    *,
    k: int,
    divergence: Divergence = forward_kl,
    tail: bool = False,
    where: Array | None = None,
    axis: int = -1,
) -> Array:
    """Online top-k distillation: ``top_k_distill_from_cache`` on the teacher's top-k of these logits.

    The one difference: with ``tail`` the teacher's tail mass is a log-sum-exp over its other logits
    (exact), where the cached variant can only take ``1 - sum(top-k probs)``.

    Args:
      student_logits_xV: student logits, leading shape ``x``, vocabulary on ``axis``.
      teacher_logits_xV: teacher logits, same shape (under ``stop_gradient``).
      k: how many teacher tokens to keep.
      divergence: the divergence on the restricted distributions.
      tail: add the tail-mass bin.
      where: boolean mask broadcastable to ``x``; True = counts.
      axis: the vocabulary axis.

    Returns:
      Float32 per-token loss, shape ``x``; 0 where masked. With ``k = V`` and no tail it equals
      ``divergence`` on the full logits.

    Example:
      >>> top_k_distill(student_logits_BxTxV, teacher_logits_BxTxV, k=64, where=mask_BxT).shape
      (B, T)

    References:
      See ``top_k_distill_from_cache``.
    """
    student_xV = vocab_last(student_logits_xV, where=where, axis=axis)
    teacher_xV = vocab_last(jax.lax.stop_gradient(teacher_logits_xV), where=where, axis=axis)
    ids_xK, logprobs_xK = teacher_top_k(teacher_xV, k=k)
    teacher_tail_x = _tail_logprob(teacher_xV, ids_xK) if tail else None
    return _top_k_divergence(student_xV, ids_xK, logprobs_xK, teacher_tail_x, divergence, where)


def _top_k_divergence(
    student_xV: Array,
    ids_xK: Array,
    teacher_xK: Array,
    teacher_tail_x: Array | None,
    divergence: Divergence,
    where: Array | None,
) -> Array:
    """The divergence on the k teacher ids, plus the tail bin when ``teacher_tail_x`` is given."""
    if ids_xK.shape[:-1] != student_xV.shape[:-1]:
        raise ValueError(
            f"teacher_ids_xK leading shape {ids_xK.shape[:-1]} != student logits leading shape {student_xV.shape[:-1]}"
        )
    chosen_xK = jnp.take_along_axis(student_xV, ids_xK, axis=-1)
    if teacher_tail_x is None:
        return divergence(chosen_xK, teacher_xK, where=where)
    student_kept_xK = chosen_xK - safe_logsumexp(student_xV)[..., None]
    student_bins = jnp.concatenate([student_kept_xK, _tail_logprob(student_xV, ids_xK)[..., None]], axis=-1)
    teacher_bins = jnp.concatenate([teacher_xK, teacher_tail_x[..., None]], axis=-1)
    return divergence(student_bins, teacher_bins, where=where)


def _tail_logprob(logits_xV: Array, ids_xK: Array) -> Array:
    """Log of the softmax mass outside ``ids_xK``, by a log-sum-exp over the other ids (no cancellation)."""
    k, vocab = ids_xK.shape[-1], logits_xV.shape[-1]
    if k >= vocab:
        raise ValueError(f"tail=True needs k < V, got k={k} and V={vocab}")
    return safe_logsumexp(_drop_ids(logits_xV, ids_xK)) - safe_logsumexp(logits_xV)


def _drop_ids(logits_xV: Array, ids_xK: Array) -> Array:
    """``logits_xV`` with the listed ids of each row set to -inf."""
    lead, vocab, k = logits_xV.shape[:-1], logits_xV.shape[-1], ids_xK.shape[-1]
    logits_NxV = logits_xV.reshape(-1, vocab)
    rows_Nx1 = jnp.arange(logits_NxV.shape[0])[:, None]
    dropped_NxV = logits_NxV.at[rows_Nx1, ids_xK.reshape(-1, k)].set(-jnp.inf)
    return dropped_NxV.reshape(*lead, vocab)
