import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lnemo.distill import (
    identity_layer_map,
    kd_objective,
    offline_kd_objective,
    weight_at,
)
from lnemo.losses import (
    cosine_distance,
    forward_kl,
    normalized_mse,
    teacher_top_k,
    with_temperature,
)
from lnemo.models import ModelConfig, cost, forward
from lnemo.train.objectives import lm_objective
from lnemo.utils import masked_sum

RNG = jax.random.key(0)


def test_identity_layer_map_and_weights():
    assert identity_layer_map(3) == ((1, 1), (2, 2), (3, 3))
    with pytest.raises(ValueError, match="num_layers"):
        identity_layer_map(0)
    assert float(weight_at(0.5, jnp.int32(3))) == 0.5
    assert float(weight_at(optax.linear_schedule(0.0, 1.0, 10), jnp.int32(5))) == pytest.approx(0.5)


def test_terms_equal_hand_computed_losses(teacher, student, batch):
    (t_cfg, t_params), (s_cfg, s_params) = teacher, student
    mask = jnp.asarray(batch["loss_mask"])
    kw = {"positions": batch["positions"], "segment_ids": batch["segment_ids"]}
    s_out = forward(s_cfg, s_params, batch["tokens"], return_hidden=True, **kw)
    t_out = forward(t_cfg, t_params, batch["tokens"], return_hidden=True, **kw)
    kl = masked_sum(forward_kl(s_out.logits, t_out.logits, where=mask), where=mask)
    hidden = sum(masked_sum(cosine_distance(s_out.hidden[i], t_out.hidden[i], where=mask), where=mask)
                 for i in (1, 2, 3))
    lm, _ = lm_objective(s_cfg)(s_params, batch, RNG)
    schedule = optax.linear_schedule(0.0, 2.0, 10)
    objective = kd_objective(s_cfg, t_cfg, kl_weight=0.5, hidden_weight=schedule, lm_weight=0.25)
    total, aux = objective(t_params, jnp.int32(5))(s_params, batch, RNG)
    np.testing.assert_allclose(aux["kl_sum"], kl, rtol=1e-5)
    np.testing.assert_allclose(aux["hidden_sum"], hidden, rtol=1e-5)
    np.testing.assert_allclose(aux["lm_sum"], lm, rtol=1e-5)
    np.testing.assert_allclose(total, 0.5 * kl + 1.0 * hidden + 0.25 * lm, rtol=1e-5)
    assert aux["tokens"] == mask.sum()


def test_student_equal_to_teacher_has_zero_kd_loss(teacher, batch):
    config, params = teacher
    _total, aux = kd_objective(config, config)(params, jnp.int32(0))(params, batch, RNG)
    assert abs(float(aux["kl_sum"])) < 1e-3 and abs(float(aux["hidden_sum"])) < 1e-3
    assert "lm_sum" not in aux


def test_layer_map_and_hidden_loss_are_used(teacher, student, batch):
    (t_cfg, t_params), (s_cfg, s_params) = teacher, student
    objective = kd_objective(s_cfg, t_cfg, kl_weight=0.0, hidden_loss=normalized_mse, layer_map=[(3, 2)])
    _, aux = objective(t_params, jnp.int32(0))(s_params, batch, RNG)
    mask = jnp.asarray(batch["loss_mask"])
    s_h = forward(s_cfg, s_params, batch["tokens"], positions=batch["positions"],
                  segment_ids=batch["segment_ids"], return_hidden=True).hidden[3]
    t_h = forward(t_cfg, t_params, batch["tokens"], positions=batch["positions"],
                  segment_ids=batch["segment_ids"], return_hidden=True).hidden[2]
    np.testing.assert_allclose(aux["hidden_sum"], masked_sum(normalized_mse(s_h, t_h, where=mask), where=mask),
                               rtol=1e-5)
    assert set(aux) == {"tokens", "hidden_sum"}


def test_chunked_equals_unchunked_with_gradients(teacher, student, batch):
    (t_cfg, t_params), (s_cfg, s_params) = teacher, student
    divergence = with_temperature(forward_kl, 2.0)

    def loss(chunk_size):
        objective = kd_objective(s_cfg, t_cfg, divergence=divergence, lm_weight=1.0, chunk_size=chunk_size)
        return jax.jit(jax.value_and_grad(lambda p: objective(t_params, jnp.int32(0))(p, batch, RNG)[0]))(s_params)

    (full, g_full), (chunked, g_chunked) = loss(None), loss(8)
    np.testing.assert_allclose(chunked, full, rtol=2e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5), g_chunked, g_full)


def test_teacher_gets_no_gradient_and_is_not_differentiated(teacher, student, batch):
    (t_cfg, t_params), (s_cfg, s_params) = teacher, student
    objective = kd_objective(s_cfg, t_cfg)
    grads = jax.grad(lambda tp: objective(tp, jnp.int32(0))(s_params, batch, RNG)[0])(t_params)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))
    # FLOPs of the compiled KD gradient = student fwd+bwd + one teacher forward (not its backward).
    kd = jax.jit(jax.grad(lambda p, tp: objective(tp, jnp.int32(0))(p, batch, RNG)[0]))
    lm = jax.jit(jax.grad(lambda p: lm_objective(s_cfg)(p, batch, RNG)[0]))
    flops_kd = kd.lower(s_params, t_params).compile().cost_analysis()["flops"]
    flops_lm = lm.lower(s_params).compile().cost_analysis()["flops"]
    tokens = batch["tokens"].size
    teacher_forward = cost.forward_flops_per_token(t_cfg, batch["tokens"].shape[1]) * tokens
    assert flops_kd - flops_lm < 1.5 * teacher_forward  # a differentiated teacher would add ~3x


def test_bad_configurations_are_named(teacher, student):
    t_cfg, s_cfg = teacher[0], student[0]
    with pytest.raises(ValueError, match="vocab_size"):
        kd_objective(s_cfg.replace(vocab_size=300), t_cfg)
    with pytest.raises(ValueError, match="all 0"):
        kd_objective(s_cfg, t_cfg, kl_weight=0.0, hidden_weight=0.0)
    with pytest.raises(ValueError, match="layer_map entry"):
        kd_objective(s_cfg, t_cfg, layer_map=[(4, 1)])
    with pytest.raises(ValueError, match="give a layer_map"):
        kd_objective(ModelConfig.tiny(num_layers=2), t_cfg)
    with pytest.raises(ValueError, match="hidden_size"):
        kd_objective(ModelConfig.homogeneous(vocab_size=t_cfg.vocab_size, hidden_size=32, num_layers=3, num_heads=4,
                                             num_kv_heads=2, intermediate_size=64), t_cfg)
    with pytest.raises(ValueError, match="chunk_size"):
        kd_objective(s_cfg, t_cfg, chunk_size=0)


def test_offline_full_vocab_cache_equals_online_kl(teacher, student, batch):
    (t_cfg, t_params), (s_cfg, s_params) = teacher, student
    logits = forward(t_cfg, t_params, batch["tokens"], positions=batch["positions"],
                     segment_ids=batch["segment_ids"]).logits
    ids, logprobs = teacher_top_k(logits, k=t_cfg.vocab_size)
    cached = {**batch, "teacher_ids": ids, "teacher_logprobs": logprobs}
    _, online = kd_objective(s_cfg, t_cfg, hidden_weight=0.0)(t_params, jnp.int32(0))(s_params, batch, RNG)
    _, offline = offline_kd_objective(s_cfg)(s_params, cached, RNG)
    np.testing.assert_allclose(offline["kl_sum"], online["kl_sum"], rtol=1e-4)
    chunked = functools.partial(offline_kd_objective(s_cfg, lm_weight=1.0, chunk_size=8), s_params, cached, RNG)
    plain = functools.partial(offline_kd_objective(s_cfg, lm_weight=1.0), s_params, cached, RNG)
    np.testing.assert_allclose(chunked()[0], plain()[0], rtol=1e-5)
    with pytest.raises(ValueError, match="both 0"):
        offline_kd_objective(s_cfg, kl_weight=0.0)


def test_all_masked_batch_gives_zero_loss_and_finite_grads(teacher, student, batch):
    (t_cfg, t_params), (s_cfg, s_params) = teacher, student
    empty = {**batch, "loss_mask": np.zeros_like(batch["loss_mask"])}
    objective = kd_objective(s_cfg, t_cfg, lm_weight=1.0)
    (loss, aux), grads = jax.jit(jax.value_and_grad(lambda p: objective(t_params, jnp.int32(0))(p, empty, RNG),
                                                    has_aux=True))(s_params)
    assert float(loss) == 0.0 and float(aux["tokens"]) == 0.0
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))



def test_masked_rows_equal_sliced_rows(teacher, student, batch):
    (t_cfg, t_params), (s_cfg, s_params) = teacher, student
    objective = jax.jit(lambda p, b: kd_objective(s_cfg, t_cfg, lm_weight=1.0)(t_params, jnp.int32(0))(p, b, RNG))
    masked = {**batch, "loss_mask": batch["loss_mask"] & (np.arange(4) < 2)[:, None]}
    sliced = {k: v[:2] for k, v in batch.items()}
    (loss_m, aux_m), (loss_s, aux_s) = objective(s_params, masked), objective(s_params, sliced)
    np.testing.assert_allclose(loss_m, loss_s, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), aux_m, aux_s)
