"""Memory-bounded evaluation of token losses: chunk by chunk over the sequence, and over the vocabulary.

A per-token loss over ``(..., T, V)`` logits is evaluated on slices of ``chunk_size`` positions along the
sequence axis T (all leading batch axes stay whole, so batch sharding is untouched) inside a ``lax.scan``
whose body is wrapped in ``jax.checkpoint``: the forward pass keeps one chunk of float32 intermediates
alive, and the backward pass recomputes each chunk instead of storing it, so it too holds one chunk.

The ``*_from_hidden`` variants go further: they take final hidden states and the lm_head kernel and form
the logits of one chunk at a time, so the full ``B x T x V`` logits never exist, in the forward or the
backward pass. Log-sum-exp based losses (token log-probs, cross-entropy) can also split the vocabulary
into chunks combined with a running ``logaddexp``, which bounds memory by ``B x chunk_size x
vocab_chunk_size``.

Chunked and unchunked results agree to float32 rounding, gradients included. The price is one extra
forward computation per chunk in the backward pass (the recomputation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from lnemo.losses._numerics import masked, safe_logsumexp, token_ids
from lnemo.losses.distill import Divergence, forward_kl
from lnemo.types import Array

TokenLoss = Callable[..., Array]
"""``(*token_arrays, where=None) -> loss_x``: the first array's last axis is the vocabulary (or width)."""


def _check_chunk(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _token_aligned(arrays: Sequence[Array], lead: tuple[int, ...]) -> list[Array]:
    """Check that every array starts with the token shape ``lead`` (``(..., T)``) and return them."""
    checked = []
    for n, array in enumerate(arrays):
        array = jnp.asarray(array)
        if array.shape[: len(lead)] != lead:
            raise ValueError(f"token argument {n} has shape {array.shape}; expected it to start with {lead}")
        checked.append(array)
    return checked


def _scan_sequence_chunks(
    chunk_loss: Callable[..., Array],
    sliced: Sequence[Array],
    shared: Sequence[Array],
    lead: tuple[int, ...],
    chunk_size: int,
) -> Array:
    """Evaluate ``chunk_loss(*sliced_chunks, *shared) -> (..., C)`` over sequence chunks; returns ``lead``.

    The sequence axis is the last axis of ``lead``. When ``chunk_size`` does not divide T the last chunk
    is shifted back to end at T; it recomputes a few positions and overwrites them with equal values.
    """
    _check_chunk("chunk_size", chunk_size)
    if not lead:
        lead = (1,)
        sliced = [a[None] for a in sliced]
        return _scan_sequence_chunks(chunk_loss, sliced, shared, lead, chunk_size)[0]
    axis, length = len(lead) - 1, lead[-1]
    size = min(chunk_size, length)
    if size == 0:
        return jnp.zeros(lead, jnp.float32)
    count = -(-length // size)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def one_chunk(sliced, shared, start):
        parts = [lax.dynamic_slice_in_dim(a, start, size, axis=axis) for a in sliced]
        return chunk_loss(*parts, *shared).astype(jnp.float32)

    def step(out_x, index):
        start = jnp.minimum(index * size, length - size)
        return lax.dynamic_update_slice_in_dim(out_x, one_chunk(sliced, shared, start), start, axis=axis), None

    out_x, _ = lax.scan(step, jnp.zeros(lead, jnp.float32), jnp.arange(count))
    return out_x


def _mask_x(where: Array | None, lead: tuple[int, ...]) -> Array:
    return jnp.ones(lead, bool) if where is None else jnp.broadcast_to(jnp.asarray(where, bool), lead)


def chunked_loss(loss_fn: TokenLoss, *, chunk_size: int) -> TokenLoss:
    """Turn a per-token loss into one evaluated ``chunk_size`` sequence positions at a time.

    Works for every loss of ``lnemo.losses`` whose first argument has the vocabulary (or width) last:
    ``token_cross_entropy``, ``token_logprobs``, ``z_loss``, every divergence, ``top_k_distill``,
    ``top_k_distill_from_cache``, the hidden-state losses. All positional arguments must start with the
    same token shape ``(..., T)``; fix options with ``functools.partial``.

    Args:
      loss_fn: ``(*token_arrays, where=None) -> loss_x`` with ``x = (..., T)`` the first array's shape
        without its last axis.
      chunk_size: sequence positions per chunk; a chunk holds ``prod(...) * chunk_size`` tokens.

    Returns:
      A function with the same call signature and result as ``loss_fn``, to float32 rounding.

    Example:
      >>> kd = chunked_loss(functools.partial(generalized_jsd, beta=0.5), chunk_size=256)
      >>> kd(student_logits_BxTxV, teacher_logits_BxTxV, where=mask_BxT).shape
      (B, T)

    References:
      Gradient checkpointing: Chen et al., "Training Deep Nets with Sublinear Memory Cost",
      arXiv 1604.06174.
    """
    _check_chunk("chunk_size", chunk_size)

    def loss(*token_arrays: Array, where: Array | None = None) -> Array:
        if not token_arrays:
            raise ValueError("chunked loss needs at least one token array")
        lead = tuple(jnp.shape(token_arrays[0])[:-1])
        arrays = _token_aligned(token_arrays, lead)

        def chunk_loss(*parts):
            *chunks, where_chunk = parts
            return loss_fn(*chunks, where=where_chunk)

        return _scan_sequence_chunks(chunk_loss, [*arrays, _mask_x(where, lead)], [], lead, chunk_size)

    return loss


def _logits(hidden_xD: Array, kernel_DxV: Array) -> Array:
    return jnp.einsum("...d,dv->...v", hidden_xD, kernel_DxV, preferred_element_type=jnp.float32)


def _zero_masked(hidden_xD: Array, where_x: Array) -> Array:
    """Masked rows set to 0, so garbage padding states give finite kernel gradients (0 * NaN is NaN)."""
    return jnp.where(where_x[..., None], hidden_xD, 0)


def _check_kernel(hidden_xD: Array, kernel_DxV: Array, name: str) -> None:
    if kernel_DxV.ndim != 2 or kernel_DxV.shape[0] != hidden_xD.shape[-1]:
        raise ValueError(f"{name} has shape {kernel_DxV.shape}; expected (D, V) with D = {hidden_xD.shape[-1]}")


def chunked_from_hidden(
    hidden_xD: Array,
    kernel_DxV: Array,
    *token_arrays: Array,
    loss_fn: TokenLoss,
    where: Array | None = None,
    chunk_size: int,
) -> Array:
    """Any logit loss of ``hidden @ kernel`` evaluated chunk by chunk, never forming the full logits.

    $$\\ell\\big(h_{[c]} W, a_{[c]}\\big) \\text{ for each sequence chunk } c$$

    Args:
      hidden_xD: final hidden states (after the final norm), shape ``(..., T, D)``.
      kernel_DxV: the lm_head kernel, shape ``(D, V)``; gradients flow to it.
      *token_arrays: further token-aligned arguments of ``loss_fn`` (labels ``(..., T)``, cached teacher
        top-k ids and log-probs ``(..., T, K)``, ...).
      loss_fn: a loss whose first argument is logits, e.g. ``token_cross_entropy`` or
        ``top_k_distill_from_cache``.
      where: boolean mask broadcastable to ``(..., T)``; True = counts.
      chunk_size: sequence positions per chunk.

    Returns:
      Float32 per-token loss, shape ``(..., T)``.

    Example:
      >>> chunked_from_hidden(hidden_BxTxD, kernel_DxV, ids_BxTxK, logprobs_BxTxK,
      ...                     loss_fn=top_k_distill_from_cache, where=mask_BxT, chunk_size=128).shape
      (B, T)
    """
    _check_kernel(hidden_xD, kernel_DxV, "kernel_DxV")
    lead = tuple(jnp.shape(hidden_xD)[:-1])
    arrays = _token_aligned([hidden_xD, *token_arrays], lead)

    def chunk_loss(hidden_chunk, *parts):
        *chunks, where_chunk, kernel = parts
        return loss_fn(_logits(_zero_masked(hidden_chunk, where_chunk), kernel), *chunks, where=where_chunk)

    return _scan_sequence_chunks(chunk_loss, [*arrays, _mask_x(where, lead)], [kernel_DxV], lead, chunk_size)


def chunked_distill_from_hidden(
    student_hidden_xD: Array,
    student_kernel_DxV: Array,
    teacher_hidden_xD: Array,
    teacher_kernel_DxV: Array,
    *,
    divergence: Divergence = forward_kl,
    where: Array | None = None,
    chunk_size: int,
) -> Array:
    """A divergence between teacher and student logits formed chunk by chunk from hidden states.

    Student logits are ``h_s W_s``, teacher logits ``h_t W_t`` (both under ``stop_gradient``); per sequence
    chunk both are formed in float32, the divergence is taken, and they are freed.

    Args:
      student_hidden_xD: student final hidden states, shape ``(..., T, Ds)``.
      student_kernel_DxV: student lm_head kernel ``(Ds, V)``.
      teacher_hidden_xD: teacher final hidden states, shape ``(..., T, Dt)``.
      teacher_kernel_DxV: teacher lm_head kernel ``(Dt, V)``.
      divergence: any divergence of ``lnemo.losses.distill`` (or a ``with_temperature`` / partial of one).
      where: boolean mask broadcastable to ``(..., T)``; True = counts.
      chunk_size: sequence positions per chunk.

    Returns:
      Float32 per-token divergence, shape ``(..., T)``.

    Example:
      >>> kl_BxT = chunked_distill_from_hidden(h_s, w_s, h_t, w_t, where=mask_BxT, chunk_size=128)

    References:
      Puzzle global KD logit term, arXiv 2411.19146 (reference sheet §6.8); the materialised
      full-vocabulary softmax is the usual KD memory bug (reference sheet §13).
    """
    _check_kernel(student_hidden_xD, student_kernel_DxV, "student_kernel_DxV")
    _check_kernel(teacher_hidden_xD, teacher_kernel_DxV, "teacher_kernel_DxV")
    if student_kernel_DxV.shape[1] != teacher_kernel_DxV.shape[1]:
        raise ValueError(
            f"student vocabulary {student_kernel_DxV.shape[1]} != teacher vocabulary {teacher_kernel_DxV.shape[1]}"
        )
    lead = tuple(jnp.shape(student_hidden_xD)[:-1])
    teacher_hidden_xD = lax.stop_gradient(teacher_hidden_xD)
    arrays = _token_aligned([student_hidden_xD, teacher_hidden_xD], lead)

    def chunk_loss(student_chunk, teacher_chunk, where_chunk, student_kernel, teacher_kernel):
        student_logits = _logits(_zero_masked(student_chunk, where_chunk), student_kernel)
        teacher_logits = _logits(_zero_masked(teacher_chunk, where_chunk), teacher_kernel)
        return divergence(student_logits, teacher_logits, where=where_chunk)

    shared = [student_kernel_DxV, lax.stop_gradient(teacher_kernel_DxV)]
    return _scan_sequence_chunks(chunk_loss, [*arrays, _mask_x(where, lead)], shared, lead, chunk_size)


def _vocab_chunked_logsumexp(hidden_xD: Array, kernel_DxV: Array, vocab_chunk_size: int) -> Array:
    """``logsumexp(hidden @ kernel)`` over the vocabulary, ``vocab_chunk_size`` columns at a time."""
    vocab = kernel_DxV.shape[1]
    size = min(vocab_chunk_size, vocab)
    count = -(-vocab // size)

    @functools.partial(jax.checkpoint, prevent_cse=False)
    def piece(hidden_xD, kernel_DxV, index):
        start = jnp.minimum(index * size, vocab - size)
        logits_xC = _logits(hidden_xD, lax.dynamic_slice_in_dim(kernel_DxV, start, size, axis=1))
        # The last chunk is shifted back to end at V; columns an earlier chunk already counted are dropped.
        fresh_C = start + jnp.arange(size) >= index * size
        return safe_logsumexp(jnp.where(fresh_C, logits_xC, -jnp.inf))

    def step(total_x, index):
        return safe_logsumexp(jnp.stack([total_x, piece(hidden_xD, kernel_DxV, index)]), axis=0), None

    total_x, _ = lax.scan(step, jnp.full(hidden_xD.shape[:-1], -jnp.inf), jnp.arange(count))
    return total_x


def chunked_logsumexp_from_hidden(
    hidden_xD: Array,
    kernel_DxV: Array,
    *,
    where: Array | None = None,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
) -> Array:
    """Log-partition ``logsumexp_v (h W)_v`` per token, chunked over the sequence and the vocabulary.

    $$\\log Z = \\operatorname{logaddexp}_{c}\\ \\log \\sum_{v \\in c} e^{(hW)_v}$$

    Squared, it is the z-loss (``z_loss``) without materialising the logits.

    Args:
      hidden_xD: final hidden states, shape ``(..., T, D)``.
      kernel_DxV: lm_head kernel ``(D, V)``.
      where: boolean mask broadcastable to ``(..., T)``; True = counts.
      chunk_size: sequence positions per chunk.
      vocab_chunk_size: vocabulary columns per chunk; None takes the whole vocabulary at once.

    Returns:
      Float32 log-partition per token, shape ``(..., T)``; 0 where masked.

    Example:
      >>> z_BxT = chunked_logsumexp_from_hidden(h, w, chunk_size=128, vocab_chunk_size=8192) ** 2
    """
    return _lse_and_chosen(hidden_xD, kernel_DxV, None, where, chunk_size, vocab_chunk_size)


def chunked_token_logprobs_from_hidden(
    hidden_xD: Array,
    kernel_DxV: Array,
    tokens_x: Array,
    *,
    where: Array | None = None,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
) -> Array:
    """Log-probs of given tokens under ``softmax(h W)``, chunked over the sequence and the vocabulary.

    $$\\log q(y) = h \\cdot W_{:, y} - \\log \\sum_v e^{(hW)_v}$$

    Args:
      hidden_xD: final hidden states, shape ``(..., T, D)``.
      kernel_DxV: lm_head kernel ``(D, V)``.
      tokens_x: integer token ids, shape ``(..., T)``.
      where: boolean mask broadcastable to ``(..., T)``; True = counts.
      chunk_size: sequence positions per chunk.
      vocab_chunk_size: vocabulary columns per chunk; None takes the whole vocabulary at once.

    Returns:
      Float32 log-probs, shape ``(..., T)``; 0 where masked.

    Example:
      >>> logp_BxT = chunked_token_logprobs_from_hidden(h, w, tokens_BxT, chunk_size=128)

    References:
      The per-token log-probs of GRPO (arXiv 2402.03300; reference sheet §10) without the B x T x V logits.
    """
    return _lse_and_chosen(hidden_xD, kernel_DxV, tokens_x, where, chunk_size, vocab_chunk_size)


def chunked_cross_entropy_from_hidden(
    hidden_xD: Array,
    kernel_DxV: Array,
    labels_x: Array,
    *,
    where: Array | None = None,
    chunk_size: int,
    vocab_chunk_size: int | None = None,
) -> Array:
    """Token cross-entropy of ``softmax(h W)``, chunked over the sequence and the vocabulary.

    $$\\mathrm{CE} = \\log \\sum_v e^{(hW)_v} - h \\cdot W_{:, y}$$

    Arguments as in ``chunked_token_logprobs_from_hidden`` with labels for tokens.

    Returns:
      Float32 per-token cross-entropy, shape ``(..., T)``; 0 where masked.

    Example:
      >>> ce_BxT = chunked_cross_entropy_from_hidden(h, w, labels_BxT, where=mask_BxT, chunk_size=128)
    """
    return -_lse_and_chosen(hidden_xD, kernel_DxV, labels_x, where, chunk_size, vocab_chunk_size)


def _lse_and_chosen(
    hidden_xD: Array,
    kernel_DxV: Array,
    tokens_x: Array | None,
    where: Array | None,
    chunk_size: int,
    vocab_chunk_size: int | None,
) -> Array:
    """``h.W[:, y] - lse(hW)`` per token, or ``lse(hW)`` when ``tokens_x`` is None."""
    _check_kernel(hidden_xD, kernel_DxV, "kernel_DxV")
    vocab_chunk_size = kernel_DxV.shape[1] if vocab_chunk_size is None else vocab_chunk_size
    _check_chunk("vocab_chunk_size", vocab_chunk_size)
    lead = tuple(jnp.shape(hidden_xD)[:-1])
    where_x = _mask_x(where, lead)
    sliced = [hidden_xD, where_x]
    if tokens_x is not None:
        sliced.append(token_ids(jnp.broadcast_to(tokens_x, lead), where=where_x))
    sliced = _token_aligned(sliced, lead)

    def chunk_loss(hidden_chunk, where_chunk, *rest):
        *tokens_chunk, kernel = rest
        hidden_chunk = _zero_masked(hidden_chunk, where_chunk)
        lse = _vocab_chunked_logsumexp(hidden_chunk, kernel, vocab_chunk_size)
        if not tokens_chunk:
            return masked(lse, where_chunk)
        columns_xD = jnp.moveaxis(jnp.take(kernel, tokens_chunk[0], axis=1), 0, -1)
        chosen = jnp.sum(hidden_chunk.astype(jnp.float32) * columns_xD.astype(jnp.float32), axis=-1)
        return masked(chosen - lse, where_chunk)

    return _scan_sequence_chunks(chunk_loss, sliced, [kernel_DxV], lead, chunk_size)
