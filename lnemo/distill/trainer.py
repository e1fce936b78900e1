"""Teacher and student on one mesh: a jitted distillation step with the frozen teacher as a plain argument.

The student's train state (params, optimiser state, rng) is laid out exactly as for pretraining
(``lnemo.train.model_setup``). The teacher's parameters get their own shardings from the teacher config's
logical axes on the same mesh and are passed to the jitted step as a separate, non-donated argument: they
hold no optimiser state, receive no gradient, and the same compiled step serves every call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lnemo.checkpoint import Checkpointer
from lnemo.distill.objective import KDObjective
from lnemo.models import ModelConfig, abstract_params, init, param_logical_axes
from lnemo.models.surgery import check_params
from lnemo.sharding import DEFAULT_RULES, Rules, batch_sharding, param_shardings
from lnemo.train.loop import global_batch
from lnemo.train.state import (
    TrainState,
    abstract_train_state,
    create_train_state,
    train_state_shardings,
)
from lnemo.train.step import TrainStep, make_train_step
from lnemo.types import Array, PRNGKey, PyTree

#: ``(state, batch, teacher_params) -> (state, metrics)``.
DistillStep = Callable[[TrainState, PyTree, PyTree], tuple[TrainState, dict[str, Array]]]


class DistillTraining(NamedTuple):
    """Everything a host loop needs to distil a teacher into a student.

    Attributes:
      state: the student's step-0 ``TrainState`` laid out in ``shardings``.
      step: ``(state, batch) -> (state, metrics)`` for ``lnemo.train.fit``; it calls ``distill_step`` with
        ``teacher_params`` (and donates ``state``).
      distill_step: the jitted ``(state, batch, teacher_params) -> (state, metrics)``.
      shardings: ``TrainState`` of ``NamedSharding`` of the student.
      batch_sharding: sharding of every batch leaf.
      abstract_state: restore target of the student's checkpoints.
      teacher_params: the teacher's parameters, laid out in ``teacher_shardings``.
      teacher_shardings: the teacher's parameter shardings on the same mesh.
    """

    state: TrainState
    step: TrainStep
    distill_step: DistillStep
    shardings: TrainState
    batch_sharding: NamedSharding
    abstract_state: TrainState
    teacher_params: PyTree
    teacher_shardings: PyTree


def model_param_shardings(config: ModelConfig, mesh: Mesh, *, rules: Rules = DEFAULT_RULES) -> PyTree:
    """``NamedSharding`` of every parameter of ``config``'s model on ``mesh``, from its logical axes."""
    return param_shardings(abstract_params(config), param_logical_axes(config), mesh, rules)


def place_params(config: ModelConfig, params: PyTree, mesh: Mesh, *, rules: Rules = DEFAULT_RULES) -> PyTree:
    """``params`` checked against ``config`` and laid out in the model's shardings on ``mesh``.

    Args:
      config: the model the parameters belong to.
      params: its parameter pytree (host numpy or device arrays, in any layout).
      mesh: the device mesh.
      rules: logical -> mesh axis rules.

    Returns:
      The parameters as ``jax.Array`` in ``model_param_shardings(config, mesh)``.
    """
    check_params(config, params)
    shardings = model_param_shardings(config, mesh, rules=rules)
    return jax.jit(lambda p: p, out_shardings=shardings)(params)


def params_from_checkpoint(config: ModelConfig, directory: str, optimizer: optax.GradientTransformation,
                           mesh: Mesh, *, step: int | None = None, rules: Rules = DEFAULT_RULES) -> PyTree:
    """The parameters of a ``TrainState`` checkpoint (e.g. ``examples/pretrain.py``'s), laid out on ``mesh``.

    Args:
      config: the checkpointed model.
      directory: the ``Checkpointer`` directory (``<out>/checkpoints`` of the pretraining run).
      optimizer: an optimiser with the same state structure as the run's (e.g. ``lnemo.train.adamw`` of
        a schedule); only the structure matters.
      mesh: where to place the parameters (need not be the mesh of the run).
      step: which step; the latest by default.
      rules: logical -> mesh axis rules.

    Returns:
      The parameter pytree, sharded like ``place_params`` would.
    """
    shardings = train_state_shardings(optimizer, abstract_params(config), model_param_shardings(config, mesh,
                                                                                                 rules=rules))
    target = abstract_train_state(lambda k: init(config, k), optimizer, jax.random.key(0), shardings=shardings)
    with Checkpointer(directory) as checkpointer:
        return checkpointer.restore(target, step=step, ignore_data_state=True).state.params


def make_distill_step(objective: KDObjective, optimizer: optax.GradientTransformation, *, accum_steps: int = 1,
                      learning_rate_fn: optax.Schedule | None = None) -> DistillStep:
    """A pure ``(state, batch, teacher_params) -> (state, metrics)`` distillation step.

    It is ``lnemo.train.make_train_step`` of ``objective(teacher_params, state.step)``: the same exact
    token-normalised accumulation, metrics ``loss``, ``grad_norm``, ``tokens`` and the objective's term
    sums (``kl_sum``, ``hidden_sum``, ``lm_sum``). Only the student's parameters are differentiated.

    Args:
      objective: from ``kd_objective`` (or any ``(teacher_params, step) -> loss_fn``).
      optimizer: optax transformation of the student.
      accum_steps: micro-batches per update (the teacher runs per micro-batch too).
      learning_rate_fn: schedule reported as ``learning_rate``.

    Returns:
      The step function (not jitted; see ``setup_distillation``).
    """

    def step(state: TrainState, batch: PyTree, teacher_params: PyTree) -> tuple[TrainState, dict[str, Array]]:
        inner = make_train_step(objective(teacher_params, state.step), optimizer, accum_steps=accum_steps,
                                learning_rate_fn=learning_rate_fn)
        return inner(state, batch)

    return step


def setup_distillation(student: ModelConfig, teacher: ModelConfig, teacher_params: PyTree, objective: KDObjective,
                       optimizer: optax.GradientTransformation, mesh: Mesh, key: PRNGKey, *,
                       init_params: Callable[[PRNGKey], PyTree] | None = None, accum_steps: int = 1,
                       learning_rate_fn: optax.Schedule | None = None,
                       rules: Rules = DEFAULT_RULES) -> DistillTraining:
    """Sharded student state, placed teacher and the jitted distillation step, in one call.

    Args:
      student: the student model.
      teacher: the teacher model.
      teacher_params: the teacher's parameters (any layout; placed on ``mesh`` here).
      objective: ``kd_objective(student, teacher, ...)``.
      optimizer: the student's optax transformation.
      mesh: the device mesh both models live on.
      key: PRNG key of the student's initial parameters and rng.
      init_params: ``key -> params`` to start from given weights (e.g. a child sliced from the parent);
        ``lnemo.models.init`` by default.
      accum_steps: gradient-accumulation micro-batches per step.
      learning_rate_fn: schedule reported in the metrics.
      rules: logical -> mesh axis rules.

    Returns:
      ``DistillTraining``; pass ``.step`` and ``.state`` to ``lnemo.train.fit``.

    Example:
      >>> run = setup_distillation(child, parent, parent_params, kd_objective(child, parent), adamw(1e-3),
      ...                          mesh, jax.random.key(0), init_params=lambda k: child_params)
      >>> state = fit(run.step, run.state, data, num_steps=200, batch_sharding=run.batch_sharding)
    """
    init_params = init_params or (lambda k: init(student, k))
    teacher_shardings = model_param_shardings(teacher, mesh, rules=rules)
    placed_teacher = place_params(teacher, teacher_params, mesh, rules=rules)
    shardings = train_state_shardings(optimizer, abstract_params(student),
                                      model_param_shardings(student, mesh, rules=rules))
    state = create_train_state(init_params, optimizer, key, shardings=shardings)
    data_sharding = batch_sharding(mesh, rules)
    distill_step = jax.jit(
        make_distill_step(objective, optimizer, accum_steps=accum_steps, learning_rate_fn=learning_rate_fn),
        in_shardings=(shardings, data_sharding, teacher_shardings),
        out_shardings=(shardings, NamedSharding(mesh, PartitionSpec())),
        donate_argnums=(0,),
    )

    def step(state: TrainState, batch: PyTree) -> tuple[TrainState, dict[str, Array]]:
        return distill_step(state, batch, placed_teacher)

    abstract = abstract_train_state(init_params, optimizer, key, shardings=shardings)
    return DistillTraining(state, step, distill_step, shardings, data_sharding, abstract, placed_teacher,
                           teacher_shardings)


def make_distill_eval_fn(objective: KDObjective, teacher_params: PyTree,
                         batches: Sequence[Mapping[str, np.ndarray]], *, batch_sharding: jax.sharding.Sharding,
                         seed: int = 0) -> Callable[[TrainState], dict[str, float]]:
    """An ``eval_fn`` for ``fit``: token means of the objective and of each of its terms on fixed batches.

    Args:
      objective: e.g. ``kd_objective(student, teacher, hidden_weight=0.0)`` to report the held-out KL.
      teacher_params: the teacher's parameters (as placed by ``setup_distillation``).
      batches: held-out batches, process-local numpy dicts.
      batch_sharding: sharding of each batch leaf.
      seed: PRNG seed of the ``rng`` passed to the loss (the same every call).

    Returns:
      ``state -> {"loss", "tokens", "kl", "hidden", "lm"}`` (the terms the objective uses) as floats;
      ``loss`` is weighted with the weights at ``state.step``.

    Example:
      >>> eval_fn = make_distill_eval_fn(kd_objective(child, parent, hidden_weight=0.0), run.teacher_params,
      ...                                held_out, batch_sharding=run.batch_sharding)
      >>> eval_fn(state)["kl"]
    """
    if not batches:
        raise ValueError("make_distill_eval_fn: batches is empty; give at least one held-out batch")
    placed = [global_batch(batch, batch_sharding) for batch in batches]
    rng = jax.random.key_data(jax.random.key(seed))
    sums = jax.jit(lambda params, teacher, batch, step: objective(teacher, step)(params, batch, rng))

    def eval_fn(state: TrainState) -> dict[str, float]:
        outs = jax.device_get([sums(state.params, teacher_params, batch, state.step) for batch in placed])
        totals = {k: float(np.sum([aux[k] for _, aux in outs])) for k in outs[0][1]}
        tokens = max(totals["tokens"], 1.0)
        result = {"loss": float(np.sum([loss for loss, _ in outs])) / tokens, "tokens": totals["tokens"]}
        result.update({k[: -len("_sum")]: v / tokens for k, v in totals.items() if k.endswith("_sum")})
        return result

    return eval_fn
