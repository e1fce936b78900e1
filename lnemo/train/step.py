"""The pure training step: token-normalised gradient accumulation, optimiser update, metrics."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec

from lnemo.train.state import TrainState
from lnemo.types import Array, PRNGKey, PyTree

#: ``(params, batch, rng) -> (loss_sum, aux)``; ``aux["tokens"]`` counts the tokens in ``loss_sum``.
SumLossFn = Callable[[PyTree, PyTree, PRNGKey], tuple[Array, dict[str, Array]]]
TrainStep = Callable[[TrainState, PyTree], tuple[TrainState, dict[str, Array]]]

_RESERVED = ("loss", "grad_norm", "learning_rate")


def _split_micro(x: Array, accum_steps: int) -> Array:
    if x.ndim == 0 or x.shape[0] % accum_steps:
        raise ValueError(
            f"make_train_step: batch leaf of shape {x.shape} cannot be split into accum_steps={accum_steps} "
            "micro-batches along its leading dimension"
        )
    # Micro-batch i takes rows i, i+k, i+2k, ...: the reshape keeps the (sharded) leading dim outermost.
    x = x.reshape(x.shape[0] // accum_steps, accum_steps, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)


def make_train_step(
    loss_fn: SumLossFn,
    optimizer: optax.GradientTransformation,
    *,
    accum_steps: int = 1,
    learning_rate_fn: optax.Schedule | None = None,
) -> TrainStep:
    """Build a pure ``(state, batch) -> (state, metrics)`` step with gradient accumulation.

    The loss contract makes accumulation exact. ``loss_fn`` returns the **sum** of per-token
    losses of its (micro-)batch and ``aux["tokens"]``, the number of tokens in that sum. Over the
    ``k = accum_steps`` micro-batches of a window the step applies

    $$ g = \\frac{\\sum_{i=1}^{k} \\nabla_\\theta \\, \\mathrm{loss\\_sum}_i}
                {\\max(1, \\sum_{i=1}^{k} \\mathrm{tokens}_i)}, $$

    the gradient of the token mean over the whole window, whatever the padding per micro-batch.
    Every ``aux`` entry is summed over the window (so return sums, e.g. ``z_loss_sum``,
    ``correct``). Clipping, weight decay and the schedule live in ``optimizer``
    (``lnemo.train.optim.adamw``); ``grad_norm`` is reported before clipping.

    Micro-batch ``i`` holds rows ``i, i+k, i+2k, ...`` of the batch, and gets the PRNG key
    ``fold_in(step_key, i)``, where ``step_key`` is split from ``state.rng`` every step.

    Args:
      loss_fn: ``(params, batch, rng) -> (loss_sum, aux)`` with ``aux["tokens"]``.
      optimizer: optax transformation applied to the normalised gradient.
      accum_steps: micro-batches per update; the batch's leading dimension must divide by it.
      learning_rate_fn: optional schedule; its value at ``state.step`` is reported as
        ``metrics["learning_rate"]``.

    Returns:
      ``step(state, batch) -> (new_state, metrics)`` with metrics ``loss`` (window token mean),
      ``grad_norm``, ``tokens``, the other ``aux`` sums and optionally ``learning_rate``.

    Example:
      >>> step = make_train_step(loss_fn, adamw(warmup_cosine(3e-4, warmup_steps=100, total_steps=1000)))
      >>> state, metrics = step(state, {"tokens": tokens_BxT})
    """
    if not isinstance(accum_steps, int) or accum_steps < 1:
        raise ValueError(f"make_train_step: accum_steps must be a positive int, got {accum_steps!r}")
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def micro_step(params: PyTree, batch: PyTree, rng: PRNGKey) -> tuple[Array, dict[str, Array], PyTree]:
        (loss_sum, aux), grads = grad_fn(params, batch, rng)
        if not isinstance(aux, dict) or "tokens" not in aux:
            raise ValueError(
                f"make_train_step: loss_fn must return (loss_sum, aux) with aux['tokens']; got aux={aux!r}"
            )
        clash = [k for k in _RESERVED if k in aux]
        if clash:
            raise ValueError(f"make_train_step: aux keys {clash} are reserved for the step's own metrics")
        return loss_sum, aux, grads

    def step(state: TrainState, batch: PyTree) -> tuple[TrainState, dict[str, Array]]:
        rng, step_rng = jax.random.split(state.rng)
        if accum_steps == 1:
            loss_sum, aux, grads = micro_step(state.params, batch, jax.random.fold_in(step_rng, 0))
        else:
            micro = jax.tree.map(lambda x: _split_micro(x, accum_steps), batch)

            def body(carry: tuple, xs: tuple) -> tuple[tuple, None]:
                i, micro_batch = xs
                out = micro_step(state.params, micro_batch, jax.random.fold_in(step_rng, i))
                return jax.tree.map(jnp.add, carry, out), None

            first = jax.tree.map(lambda x: x[0], micro)
            shapes = jax.eval_shape(micro_step, state.params, first, step_rng)
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            (loss_sum, aux, grads), _ = jax.lax.scan(body, zeros, (jnp.arange(accum_steps), micro))
        denom = jnp.maximum(aux["tokens"], 1).astype(jnp.float32)
        grads = jax.tree.map(lambda g: (g / denom).astype(g.dtype), grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss_sum.astype(jnp.float32) / denom, "grad_norm": optax.tree.norm(grads), **aux}
        if learning_rate_fn is not None:
            metrics["learning_rate"] = jnp.asarray(learning_rate_fn(state.step), jnp.float32)
        return TrainState(state.step + 1, params, opt_state, rng), metrics

    return step


def jit_train_step(
    step_fn: TrainStep, state_shardings: TrainState, batch_sharding: PyTree, *, donate: bool = True
) -> TrainStep:
    """``jax.jit`` a step with fixed in/out shardings (the pjit pattern); it compiles once.

    The state keeps ``state_shardings`` across steps, so every call after the first reuses the
    compiled program. With ``donate`` the input state's buffers are reused for the output: do
    not touch the old state after the call.

    Args:
      step_fn: from ``make_train_step``.
      state_shardings: ``TrainState`` of ``NamedSharding`` (``train_state_shardings``).
      batch_sharding: a sharding for every batch leaf (``lnemo.sharding.batch_sharding``) or a
        matching tree.
      donate: donate the state argument's buffers.

    Returns:
      The jitted step; metrics come back replicated.
    """
    mesh = jax.tree.leaves(state_shardings, is_leaf=lambda x: isinstance(x, NamedSharding))[0].mesh
    return jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, NamedSharding(mesh, PartitionSpec())),
        donate_argnums=(0,) if donate else (),
    )
