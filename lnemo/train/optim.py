"""Optimiser presets: AdamW with linear warmup and cosine decay, decay mask, global-norm clipping."""

from __future__ import annotations

import jax
import optax

from lnemo.types import PyTree


def warmup_cosine(
    peak_lr: float, *, warmup_steps: int, total_steps: int, final_lr_ratio: float = 0.1
) -> optax.Schedule:
    """Linear warmup from 0 to ``peak_lr``, then cosine decay to ``final_lr_ratio * peak_lr``.

    $$ \\eta_t = \\eta_{max} \\frac{t}{W} \\ (t < W), \\qquad
       \\eta_t = \\eta_{min} + \\tfrac12 (\\eta_{max} - \\eta_{min})
       \\left(1 + \\cos \\pi \\frac{t - W}{T - W}\\right) \\ (W \\le t \\le T). $$

    Args:
      peak_lr: learning rate at the end of warmup.
      warmup_steps: ``W``, steps of linear warmup (0 allowed).
      total_steps: ``T``, step at which the decay ends (constant afterwards); ``> warmup_steps``.
      final_lr_ratio: ``eta_min / eta_max``.

    Returns:
      An optax schedule ``step -> learning rate``.

    References:
      Llama-Nemotron (arXiv 2505.00949), SFT recipes: Adam, cosine schedule with ~10 % linear warmup.
    """
    if warmup_steps < 0 or total_steps <= warmup_steps:
        raise ValueError(
            f"warmup_cosine: need 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps}, "
            f"total_steps={total_steps}"
        )
    return optax.warmup_cosine_decay_schedule(
        0.0, peak_lr, warmup_steps, total_steps, end_value=final_lr_ratio * peak_lr
    )


def decay_mask(params: PyTree) -> PyTree:
    """``True`` for parameters that get weight decay: matrices (ndim >= 2), not norms or biases.

    Args:
      params: parameter pytree.

    Returns:
      A pytree of bools with the structure of ``params``.
    """
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def adamw(
    learning_rate: float | optax.Schedule,
    *,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    clip_norm: float | None = 1.0,
    mask: PyTree = decay_mask,
) -> optax.GradientTransformation:
    """AdamW after global-norm clipping, decaying only the parameters selected by ``mask``.

    Args:
      learning_rate: constant or schedule (``warmup_cosine``).
      b1: first-moment decay.
      b2: second-moment decay.
      eps: denominator epsilon.
      weight_decay: decoupled weight-decay coefficient.
      clip_norm: global gradient-norm bound; ``None`` disables clipping.
      mask: pytree of bools or ``params -> pytree of bools`` choosing the decayed params.

    Returns:
      An optax transformation.

    Example:
      >>> tx = adamw(warmup_cosine(3e-4, warmup_steps=100, total_steps=1000))
    """
    tx = optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=mask)
    return tx if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), tx)
