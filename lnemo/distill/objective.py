"""The global knowledge-distillation objective: weighted, scheduled logit KL, per-layer hidden and LM terms.

A ``KDObjective`` binds the frozen teacher's parameters and the optimiser step and returns a loss in the
engine's sum contract, ``(params, batch, rng) -> (loss_sum, aux)``, so that ``make_train_step`` handles
gradient accumulation and token normalisation exactly as for pretraining. Binding the teacher at trace
time (instead of closing over arrays or storing it in the train state) keeps it a plain argument of the
jitted step: no optimiser state, no gradient, no constant folded into the program.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from lnemo.losses import (
    chunked_cross_entropy_from_hidden,
    chunked_distill_from_hidden,
    chunked_from_hidden,
    cosine_distance,
    forward_kl,
    layer_pairs_loss,
    token_cross_entropy,
    top_k_distill_from_cache,
)
from lnemo.losses.distill import Divergence
from lnemo.losses.hidden import HiddenLoss
from lnemo.models import ModelConfig, forward, lm_head_kernel
from lnemo.train.step import SumLossFn
from lnemo.types import Array, PyTree
from lnemo.utils import masked_sum

#: A term weight: a constant, or an optax-style schedule ``step -> weight``.
Weight = float | Callable[[Array], Array]

#: ``(teacher_params, step) -> loss_fn`` with ``loss_fn(params, batch, rng) -> (loss_sum, aux)``.
KDObjective = Callable[[PyTree, Array], SumLossFn]


def identity_layer_map(num_layers: int) -> tuple[tuple[int, int], ...]:
    """Pairs ``(l, l)`` for ``l = 1..L``: student layer l's output against the teacher's.

    Indices address ``ModelOutput.hidden``, whose entry 0 is the embeddings, so these are the outputs
    of the L layers. Puzzle children keep the parent's layer count, hence identity by default.

    Example:
      >>> identity_layer_map(3)
      ((1, 1), (2, 2), (3, 3))
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    return tuple((layer, layer) for layer in range(1, num_layers + 1))


def weight_at(weight: Weight, step: Array) -> Array:
    """The float32 value of a constant or scheduled weight at ``step``."""
    value = weight(step) if callable(weight) else weight
    return jnp.asarray(value, jnp.float32)


def _uses(weight: Weight) -> bool:
    return callable(weight) or float(weight) != 0.0


def kd_objective(
    student: ModelConfig,
    teacher: ModelConfig,
    *,
    kl_weight: Weight = 1.0,
    hidden_weight: Weight = 1.0,
    lm_weight: Weight = 0.0,
    divergence: Divergence = forward_kl,
    hidden_loss: HiddenLoss = cosine_distance,
    layer_map: Sequence[tuple[int, int]] | None = None,
    chunk_size: int | None = None,
) -> KDObjective:
    """Puzzle's global KD loss, generalised: weighted logit divergence + per-layer hidden loss + LM loss.

    Per valid token t (``loss_mask``), with teacher p and student q,

    $$\\ell_t = w_{kl}(s)\\, D(p_t \\| q_t) + w_h(s) \\sum_{(i, j) \\in M} d(h_s^{i}, h_t^{j})
              + w_{lm}(s)\\, (-\\log q_t(y_t))$$

    summed over tokens (the step divides by their count: token-averaged). ``s`` is the optimiser step,
    so any weight may follow a schedule. Puzzle's GKD is the default: ``D`` = forward KL, ``d`` = cosine
    distance, ``M`` = identity over the L layer outputs, weights 1, 1, 0 (no LM loss). The teacher runs
    with ``return_hidden`` only when a hidden term is used, under ``stop_gradient``, and nothing of it is
    differentiated: it depends only on ``teacher_params``, which are not an argument of ``value_and_grad``.

    Args:
      student: the student model.
      teacher: the teacher model (same vocabulary; same width for hidden terms).
      kl_weight: weight of the logit divergence (constant or ``step -> weight``).
      hidden_weight: weight of the summed hidden-state loss.
      lm_weight: weight of the next-token cross-entropy on the data.
      divergence: a divergence of ``lnemo.losses`` (``forward_kl``, ``with_temperature(...)``, a partial
        of ``generalized_jsd`` ...).
      hidden_loss: a per-token hidden loss (``cosine_distance``, ``normalized_mse``, ``mse``).
      layer_map: ``(student_index, teacher_index)`` pairs into ``ModelOutput.hidden`` (0 = embeddings);
        default ``identity_layer_map(L)``, which needs equal layer counts.
      chunk_size: form logits (teacher and student) and their losses in sequence chunks of this many
        tokens from the final hidden states, never materialising ``[B, T, V]``.

    Returns:
      ``objective(teacher_params, step) -> loss_fn``; ``loss_fn(params, batch, rng)`` returns
      ``(loss_sum, aux)`` with ``aux["tokens"]`` and the unweighted sums ``kl_sum``, ``hidden_sum``,
      ``lm_sum`` of the terms in use.

    Example:
      >>> objective = kd_objective(child_cfg, parent_cfg)          # cosine + KL, Puzzle's GKD
      >>> loss_sum, aux = objective(parent_params, step)(child_params, batch, rng)

    References:
      Bercovich et al., "Puzzle: Distillation-Based NAS for Inference-Optimized LLMs", arXiv 2411.19146,
      global knowledge distillation (reference sheet §6.8); loss family in reference sheet §11.
    """
    if student.vocab_size != teacher.vocab_size:
        raise ValueError(f"student vocab_size {student.vocab_size} != teacher vocab_size {teacher.vocab_size}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    use_kl, use_hidden, use_lm = _uses(kl_weight), _uses(hidden_weight), _uses(lm_weight)
    if not (use_kl or use_hidden or use_lm):
        raise ValueError("kd_objective: kl_weight, hidden_weight and lm_weight are all 0; nothing to train")
    pairs: tuple[tuple[int, int], ...] = ()
    if use_hidden:
        if layer_map is None:
            if student.num_layers != teacher.num_layers:
                raise ValueError(
                    f"student has {student.num_layers} layers, teacher {teacher.num_layers}: give a layer_map"
                )
            layer_map = identity_layer_map(student.num_layers)
        pairs = tuple((int(i), int(j)) for i, j in layer_map)
        for i, j in pairs:
            if not (0 <= i <= student.num_layers and 0 <= j <= teacher.num_layers):
                raise ValueError(
                    f"layer_map entry {(i, j)} is outside [0, {student.num_layers}] x [0, {teacher.num_layers}]"
                )
        if student.hidden_size != teacher.hidden_size:
            raise ValueError(
                f"hidden terms need equal widths: student hidden_size {student.hidden_size}, teacher "
                f"{teacher.hidden_size}"
            )
    needs_teacher = use_kl or use_hidden
    chunked = chunk_size is not None

    def bind(teacher_params: PyTree, step: Array) -> SumLossFn:
        def loss_fn(params: PyTree, batch: PyTree, rng: Array) -> tuple[Array, dict[str, Array]]:
            del rng
            mask = batch["loss_mask"].astype(bool)
            inputs = {"positions": batch.get("positions"), "segment_ids": batch.get("segment_ids")}
            out = forward(student, params, batch["tokens"], return_hidden=use_hidden,
                          skip_logits=chunked or not (use_kl or use_lm), **inputs)
            aux: dict[str, Array] = {"tokens": jnp.sum(mask).astype(jnp.float32)}
            total = jnp.zeros((), jnp.float32)
            if needs_teacher:
                frozen = jax.lax.stop_gradient(teacher_params)
                t_out = jax.lax.stop_gradient(forward(teacher, frozen, batch["tokens"], return_hidden=use_hidden,
                                                      skip_logits=chunked or not use_kl, **inputs))
            if use_kl:
                if chunked:
                    kl = chunked_distill_from_hidden(out.final_hidden, lm_head_kernel(student, params),
                                                     t_out.final_hidden, lm_head_kernel(teacher, frozen),
                                                     divergence=divergence, where=mask, chunk_size=chunk_size)
                else:
                    kl = divergence(out.logits, t_out.logits, where=mask)
                aux["kl_sum"] = masked_sum(kl, where=mask)
                total = total + weight_at(kl_weight, step) * aux["kl_sum"]
            if use_hidden:
                hidden = layer_pairs_loss(out.hidden, t_out.hidden, pairs=pairs, loss_fn=hidden_loss, where=mask)
                aux["hidden_sum"] = masked_sum(hidden, where=mask)
                total = total + weight_at(hidden_weight, step) * aux["hidden_sum"]
            if use_lm:
                if chunked:
                    ce = chunked_cross_entropy_from_hidden(out.final_hidden, lm_head_kernel(student, params),
                                                           batch["targets"], where=mask, chunk_size=chunk_size)
                else:
                    ce = token_cross_entropy(out.logits, batch["targets"], where=mask)
                aux["lm_sum"] = masked_sum(ce, where=mask)
                total = total + weight_at(lm_weight, step) * aux["lm_sum"]
            return total, aux

        return loss_fn

    return bind


def offline_kd_objective(
    student: ModelConfig,
    *,
    kl_weight: float = 1.0,
    lm_weight: float = 0.0,
    divergence: Divergence = forward_kl,
    tail: bool = False,
    chunk_size: int | None = None,
) -> SumLossFn:
    """Distillation from a teacher top-k cache (``TopKCache`` batches), without the teacher.

    Per valid token, with the cached teacher ids ``K`` and log-probs,

    $$\\ell_t = w_{kl}\\, D(\\tilde p_t \\| \\tilde q_t) + w_{lm} (-\\log q_t(y_t))$$

    where ``D`` runs over the k cached ids (student and teacher renormalised over them) or, with
    ``tail``, over those plus one bin for the remaining mass (``top_k_distill_from_cache``).

    Args:
      student: the student model.
      kl_weight: weight of the top-k divergence.
      lm_weight: weight of the next-token cross-entropy.
      divergence: the divergence on the k (or k + 1) bins.
      tail: add the tail-mass bin.
      chunk_size: form the student logits in sequence chunks of this many tokens.

    Returns:
      ``loss_fn(params, batch, rng) -> (loss_sum, aux)`` for ``lnemo.train.setup_model_training``; the
      batch needs ``teacher_ids`` and ``teacher_logprobs`` ``[B, T, k]``; ``aux`` holds ``kl_sum`` and
      (with an LM term) ``lm_sum``.

    Example:
      >>> run = setup_model_training(child, offline_kd_objective(child), adamw(1e-3), mesh, key)
      >>> state = fit(run.step, run.state, TopKCache("cache").batches(num_epochs=None), num_steps=100,
      ...             batch_sharding=run.batch_sharding)

    References:
      Top-k logit KD (reference sheet §11).
    """
    if kl_weight == 0.0 and lm_weight == 0.0:
        raise ValueError("offline_kd_objective: kl_weight and lm_weight are both 0; nothing to train")
    top_k = functools.partial(top_k_distill_from_cache, divergence=divergence, tail=tail)
    chunked = chunk_size is not None

    def loss_fn(params: PyTree, batch: PyTree, rng: Array) -> tuple[Array, dict[str, Array]]:
        del rng
        mask = batch["loss_mask"].astype(bool)
        out = forward(student, params, batch["tokens"], positions=batch.get("positions"),
                      segment_ids=batch.get("segment_ids"), skip_logits=chunked)
        ids, logprobs = batch["teacher_ids"], batch["teacher_logprobs"]
        aux: dict[str, Array] = {"tokens": jnp.sum(mask).astype(jnp.float32)}
        if chunked:
            kernel = lm_head_kernel(student, params)
            kl = chunked_from_hidden(out.final_hidden, kernel, ids, logprobs, loss_fn=top_k, where=mask,
                                     chunk_size=chunk_size)
        else:
            kl = top_k(out.logits, ids, logprobs, where=mask)
        aux["kl_sum"] = masked_sum(kl, where=mask)
        total = kl_weight * aux["kl_sum"]
        if lm_weight:
            if chunked:
                ce = chunked_cross_entropy_from_hidden(out.final_hidden, kernel, batch["targets"], where=mask,
                                                       chunk_size=chunk_size)
            else:
                ce = token_cross_entropy(out.logits, batch["targets"], where=mask)
            aux["lm_sum"] = masked_sum(ce, where=mask)
            total = total + lm_weight * aux["lm_sum"]
        return total, aux

    return loss_fn
