"""Hidden-state distillation losses per token, and their sum over chosen (student, teacher) layer pairs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from lnemo.losses._numerics import masked
from lnemo.types import Array

HiddenLoss = Callable[..., Array]
"""``(student_hidden_xD, teacher_hidden_xD, *, where=None, axis=-1) -> loss_x``."""


def _prepare(student_xD: Array, teacher_xD: Array, where: Array | None, axis: int) -> tuple[Array, Array]:
    student_xD = jnp.moveaxis(jnp.asarray(student_xD, jnp.float32), axis, -1)
    teacher_xD = jnp.moveaxis(jax.lax.stop_gradient(jnp.asarray(teacher_xD, jnp.float32)), axis, -1)
    if student_xD.shape[-1] != teacher_xD.shape[-1]:
        raise ValueError(
            f"student width {student_xD.shape[-1]} != teacher width {teacher_xD.shape[-1]}; pass a projection"
        )
    if where is not None:
        keep = jnp.asarray(where)[..., None]
        student_xD, teacher_xD = jnp.where(keep, student_xD, 0.0), jnp.where(keep, teacher_xD, 0.0)
    return student_xD, teacher_xD


def cosine_distance(
    student_hidden_xD: Array,
    teacher_hidden_xD: Array,
    *,
    where: Array | None = None,
    axis: int = -1,
    eps: float = 1e-6,
) -> Array:
    """One minus the cosine similarity of student and teacher hidden states, per token.

    $$1 - \\frac{\\langle h_s, h_t \\rangle}{\\max(\\|h_s\\|, \\epsilon)\\,\\max(\\|h_t\\|, \\epsilon)}$$

    Args:
      student_hidden_xD: student hidden states, leading shape ``x``, width on ``axis``.
      teacher_hidden_xD: teacher hidden states, same shape (under ``stop_gradient``).
      where: boolean mask broadcastable to ``x``; True = counts.
      axis: the width axis.
      eps: floor on each norm, so zero vectors give distance 1 and finite gradients.

    Returns:
      Float32 per-token distance in [0, 2], shape ``x``; 0 where masked.

    Example:
      >>> cosine_distance(jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]]))
      Array([1.], dtype=float32)

    References:
      The hidden-state term of Puzzle's global KD, arXiv 2411.19146 (reference sheet §6.8).
    """
    s_xD, t_xD = _prepare(student_hidden_xD, teacher_hidden_xD, where, axis)
    s_norm = jnp.sqrt(jnp.maximum(jnp.sum(s_xD * s_xD, axis=-1), eps * eps))
    t_norm = jnp.sqrt(jnp.maximum(jnp.sum(t_xD * t_xD, axis=-1), eps * eps))
    return masked(1.0 - jnp.sum(s_xD * t_xD, axis=-1) / (s_norm * t_norm), where)


def mse(student_hidden_xD: Array, teacher_hidden_xD: Array, *, where: Array | None = None, axis: int = -1) -> Array:
    """Mean squared error over the width, per token.

    $$\\frac1D \\|h_s - h_t\\|^2$$

    Arguments as in ``cosine_distance`` (without ``eps``).

    Returns:
      Float32 per-token MSE, shape ``x``; 0 where masked.

    Example:
      >>> mse(jnp.array([[1.0, 3.0]]), jnp.array([[0.0, 1.0]]))
      Array([2.5], dtype=float32)

    References:
      FitNets (Romero et al., arXiv 1412.6550); projected MSE in the reference sheet §11.
    """
    s_xD, t_xD = _prepare(student_hidden_xD, teacher_hidden_xD, where, axis)
    return masked(jnp.mean(jnp.square(s_xD - t_xD), axis=-1), where)


def normalized_mse(
    student_hidden_xD: Array,
    teacher_hidden_xD: Array,
    *,
    where: Array | None = None,
    axis: int = -1,
    eps: float = 1e-6,
) -> Array:
    """Squared error normalised by the teacher's energy, per token (Puzzle's blockwise-distillation loss).

    $$\\frac{\\|h_s - h_t\\|^2}{\\|h_t\\|^2 + D\\epsilon}
      = \\frac{\\mathrm{MSE}(h_s, h_t)}{\\mathrm{MSE}(h_t, 0) + \\epsilon}$$

    This normalises each token. Puzzle normalises the whole block output at once; that tensor-level ratio
    is ``masked_sum(mse(s, t)) / (masked_sum(mse(t, 0 * t)) + eps)`` with the same per-token ``mse``.

    Args:
      student_hidden_xD: student hidden states, leading shape ``x``, width on ``axis``.
      teacher_hidden_xD: teacher hidden states (under ``stop_gradient``).
      where: boolean mask broadcastable to ``x``; True = counts.
      axis: the width axis.
      eps: added to the teacher's mean square (1e-6 as in Puzzle's reference implementation).

    Returns:
      Float32 per-token loss, shape ``x``; 0 where masked.

    Example:
      >>> normalized_mse(jnp.array([[0.0, 0.0]]), jnp.array([[3.0, 4.0]]), eps=0.0)
      Array([1.], dtype=float32)

    References:
      Puzzle, arXiv 2411.19146, blockwise local distillation (reference sheet §6.3).
    """
    s_xD, t_xD = _prepare(student_hidden_xD, teacher_hidden_xD, where, axis)
    error = jnp.mean(jnp.square(s_xD - t_xD), axis=-1)
    energy = jnp.mean(jnp.square(t_xD), axis=-1)
    return masked(error / (energy + eps), where)


def project(hidden_xDs: Array, kernel_DsxDt: Array) -> Array:
    """Map hidden states to another width with a matrix, accumulating in float32: ``h @ W``.

    Args:
      hidden_xDs: hidden states, width last.
      kernel_DsxDt: the projection, a parameter owned by the caller.

    Returns:
      Float32 projected states, shape ``x + (Dt,)``.

    Example:
      >>> project(jnp.ones((2, 3)), jnp.ones((3, 4))).shape
      (2, 4)
    """
    if hidden_xDs.shape[-1] != kernel_DsxDt.shape[0]:
        raise ValueError(f"hidden width {hidden_xDs.shape[-1]} != kernel_DsxDt rows {kernel_DsxDt.shape[0]}")
    return jnp.einsum("...d,de->...e", hidden_xDs, kernel_DsxDt, preferred_element_type=jnp.float32)


def layer_pairs_loss(
    student_hiddens: Sequence[Array],
    teacher_hiddens: Sequence[Array],
    *,
    pairs: Sequence[tuple[int, int]],
    loss_fn: HiddenLoss = cosine_distance,
    projections: Sequence[Array | None] | None = None,
    where: Array | None = None,
) -> Array:
    """A hidden-state loss summed over chosen (student layer, teacher layer) pairs, per token.

    $$\\sum_{(i, j) \\in \\text{pairs}} \\ell(h_s^{i} W_{ij}, h_t^{j})$$

    with ``W`` the pair's projection when widths differ (identity when None).

    Args:
      student_hiddens: per-layer student hidden states ``x + (Ds,)``: a sequence, or an array with the
        layer axis first.
      teacher_hiddens: per-layer teacher hidden states ``x + (Dt,)`` (under ``stop_gradient``).
      pairs: ``(student_index, teacher_index)`` pairs; e.g. ``[(i, i) for i in range(L)]`` for Puzzle
        children, which keep the parent's layer count.
      loss_fn: a per-token hidden loss (``cosine_distance``, ``mse``, ``normalized_mse``, or a partial).
      projections: None, or one ``Ds x Dt`` kernel (or None) per pair, applied to the student side.
      where: boolean mask broadcastable to ``x``; True = counts.

    Returns:
      Float32 per-token sum over pairs, shape ``x``; 0 where masked.

    Example:
      >>> pairs = [(i, i) for i in range(len(student_hiddens))]
      >>> layer_pairs_loss(student_hiddens, teacher_hiddens, pairs=pairs, where=mask_BxT).shape
      (B, T)

    References:
      Puzzle global KD, arXiv 2411.19146 (reference sheet §6.8):
      $\\sum_l (1 - \\cos(h_c^l, h_p^l)) + \\mathrm{KL}(p\\|q)$.
    """
    pairs = [tuple(pair) for pair in pairs]
    if not pairs:
        raise ValueError("pairs must name at least one (student_index, teacher_index) pair, got []")
    for i, j in pairs:
        if not (
            -len(student_hiddens) <= i < len(student_hiddens) and -len(teacher_hiddens) <= j < len(teacher_hiddens)
        ):
            raise ValueError(
                f"pairs entry {(i, j)} out of range for {len(student_hiddens)} student and "
                f"{len(teacher_hiddens)} teacher layers"
            )
    if projections is not None and len(projections) != len(pairs):
        raise ValueError(f"projections has {len(projections)} entries, pairs has {len(pairs)}")
    total = None
    for n, (i, j) in enumerate(pairs):
        student = student_hiddens[i]
        if projections is not None and projections[n] is not None:
            student = project(student, projections[n])
        term = loss_fn(student, teacher_hiddens[j], where=where)
        total = term if total is None else total + term
    return total
