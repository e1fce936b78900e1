"""Wiring a model into the engine: sharded train state, jitted step and checkpoint target in one call.

Pretraining, distillation, SFT and RL all start the same way: derive parameter shardings from the model's
logical axis names, derive the optimiser-state shardings, initialise directly into them, and jit the step
with those shardings. ``setup_model_training`` does exactly that, once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import optax
from jax.sharding import Mesh, NamedSharding

from lnemo.models import ModelConfig, abstract_params, init, param_logical_axes
from lnemo.sharding import DEFAULT_RULES, Rules
from lnemo.sharding.shardings import batch_sharding, param_shardings
from lnemo.train.state import TrainState, abstract_train_state, create_train_state, train_state_shardings
from lnemo.train.step import SumLossFn, TrainStep, jit_train_step, make_train_step
from lnemo.types import PRNGKey, PyTree


class ModelTraining(NamedTuple):
    """Everything a host loop needs for one model.

    Attributes:
      state: the step-0 ``TrainState`` laid out in ``shardings``.
      step: the jitted ``(state, batch) -> (state, metrics)`` (donates ``state``).
      shardings: ``TrainState`` of ``NamedSharding``.
      batch_sharding: sharding of every batch leaf.
      abstract_state: restore target for ``Checkpointer.restore`` (shapes, dtypes, shardings).
    """

    state: TrainState
    step: TrainStep
    shardings: TrainState
    batch_sharding: NamedSharding
    abstract_state: TrainState


def setup_model_training(config: ModelConfig, loss_fn: SumLossFn, optimizer: optax.GradientTransformation,
                         mesh: Mesh, key: PRNGKey, *, init_params: Callable[[PRNGKey], PyTree] | None = None,
                         accum_steps: int = 1, learning_rate_fn: optax.Schedule | None = None,
                         rules: Rules = DEFAULT_RULES) -> ModelTraining:
    """Sharded state + jitted step for ``config``'s model trained with ``loss_fn`` and ``optimizer``.

    Args:
      config: the model; its logical axis names decide the parameter layout through ``rules``.
      loss_fn: ``(params, batch, rng) -> (loss_sum, aux)`` (e.g. ``lnemo.train.objectives.lm_objective``).
      optimizer: optax transformation (e.g. ``lnemo.train.adamw``).
      mesh: device mesh (``lnemo.sharding.make_mesh``).
      key: PRNG key for the initial parameters and the state's rng.
      init_params: ``key -> params`` to start from other weights (e.g. ``lambda k: parent_params``);
        ``lnemo.models.init`` by default.
      accum_steps: gradient-accumulation micro-batches per step.
      learning_rate_fn: schedule reported in the metrics.
      rules: logical -> mesh axis rules.

    Returns:
      ``ModelTraining(state, step, shardings, batch_sharding, abstract_state)``.
    """
    init_params = init_params or (lambda k: init(config, k))
    p_shardings = param_shardings(abstract_params(config), param_logical_axes(config), mesh, rules)
    shardings = train_state_shardings(optimizer, abstract_params(config), p_shardings)
    state = create_train_state(init_params, optimizer, key, shardings=shardings)
    data_sharding = batch_sharding(mesh, rules)
    step = jit_train_step(make_train_step(loss_fn, optimizer, accum_steps=accum_steps,
                                          learning_rate_fn=learning_rate_fn), shardings, data_sharding)
    abstract = abstract_train_state(init_params, optimizer, key, shardings=shardings)
    return ModelTraining(state, step, shardings, data_sharding, abstract)

