"""The training state pytree and its construction with target shardings."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lnemo.sharding.shardings import opt_state_shardings, with_shardings
from lnemo.types import Array, PRNGKey, PyTree


class TrainState(NamedTuple):
    """Everything a training step reads and writes; a plain pytree (checkpointable as is).

    Attributes:
      step: int32 scalar, number of optimiser updates applied so far.
      params: the parameter pytree (float32 master weights).
      opt_state: the optax state for ``params``.
      rng: raw ``uint32`` PRNG key data; each step splits it into the next key and the step key.
    """

    step: Array
    params: PyTree
    opt_state: PyTree
    rng: Array


def init_train_state(params: PyTree, optimizer: optax.GradientTransformation, rng: PRNGKey) -> TrainState:
    """A step-0 ``TrainState``: ``optimizer.init(params)`` and ``rng`` stored as raw key data.

    Args:
      params: parameter pytree.
      optimizer: optax transformation.
      rng: a PRNG key (typed ``jax.random.key`` or raw ``jax.random.PRNGKey``).

    Returns:
      ``TrainState(step=0, params, optimizer.init(params), rng)``.
    """
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.key_data(rng)
    return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), rng)


def train_state_shardings(
    optimizer: optax.GradientTransformation, abstract_params: PyTree, param_shardings: PyTree
) -> TrainState:
    """``TrainState`` of shardings: params as given, optimiser state following params, rest replicated.

    Args:
      optimizer: optax transformation.
      abstract_params: pytree of arrays or ``jax.ShapeDtypeStruct``.
      param_shardings: matching pytree of ``NamedSharding`` (``lnemo.sharding.param_shardings``).

    Returns:
      A ``TrainState`` whose leaves are ``NamedSharding``.
    """
    opt = opt_state_shardings(optimizer, abstract_params, param_shardings)
    first = jax.tree.leaves(param_shardings, is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding))[0]
    replicated = jax.sharding.NamedSharding(first.mesh, jax.sharding.PartitionSpec())
    return TrainState(replicated, param_shardings, opt, replicated)


def _state_fn(init_params: Callable[[PRNGKey], PyTree], optimizer: optax.GradientTransformation):
    def make(key: PRNGKey) -> TrainState:
        params_key, rng = jax.random.split(key)
        return init_train_state(init_params(params_key), optimizer, rng)

    return make


def create_train_state(
    init_params: Callable[[PRNGKey], PyTree],
    optimizer: optax.GradientTransformation,
    key: PRNGKey,
    *,
    shardings: TrainState | None = None,
) -> TrainState:
    """Initialise params and optimiser state directly in their target shardings (one jitted call).

    Parameters are never materialised on a single device first, so a model that fits only
    when sharded still initialises.

    Args:
      init_params: ``key -> params``, e.g. ``lambda k: lnemo.models.init(config, k)``.
      optimizer: optax transformation.
      key: PRNG key; split into the params key and the state's ``rng``.
      shardings: ``TrainState`` of shardings (``train_state_shardings``); ``None`` lets JAX place it.

    Returns:
      The step-0 ``TrainState``.

    Example:
      >>> shardings = train_state_shardings(tx, abstract_params, param_shardings(...))
      >>> state = create_train_state(lambda k: init(config, k), tx, jax.random.key(0), shardings=shardings)
    """
    return jax.jit(_state_fn(init_params, optimizer), out_shardings=shardings)(key)


def abstract_train_state(
    init_params: Callable[[PRNGKey], PyTree],
    optimizer: optax.GradientTransformation,
    key: PRNGKey,
    *,
    shardings: TrainState,
) -> TrainState:
    """Shapes, dtypes and target shardings of ``create_train_state``'s result, computing nothing.

    This is the target for ``lnemo.checkpoint.Checkpointer.restore``, including onto a mesh
    different from the one the checkpoint was saved on.

    Args:
      init_params: ``key -> params``.
      optimizer: optax transformation.
      key: PRNG key (only its shape and dtype matter).
      shardings: ``TrainState`` of shardings.

    Returns:
      A ``TrainState`` of ``jax.ShapeDtypeStruct`` carrying ``shardings``.
    """
    return with_shardings(jax.eval_shape(_state_fn(init_params, optimizer), key), shardings)
