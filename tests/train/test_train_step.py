import functools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings

from lnemo.sharding import batch_sharding, make_mesh, param_shardings
from lnemo.testing import count_compiles
from lnemo.train import (
    adamw,
    create_train_state,
    init_train_state,
    jit_train_step,
    make_train_step,
    train_state_shardings,
    warmup_cosine,
)

from . import tiny_mlp_lm as lm

SGD_STEP = jax.jit(make_train_step(lm.loss_fn, optax.sgd(1.0)))


def _state(tx=None, seed=0):
    return init_train_state(lm.init(jax.random.key(seed)), tx or optax.sgd(1.0), jax.random.key(1))


def _batch(batch=8, index=0):
    data = lm.MarkovData(batch=batch)
    data.set_state({"index": index})
    return jax.tree.map(jnp.asarray, next(data))


def test_step_applies_gradient_of_token_mean():
    state, batch = _state(), _batch()
    new, metrics = SGD_STEP(state, batch)

    def mean_loss(params):
        loss_sum, aux = lm.loss_fn(params, batch, None)
        return loss_sum / aux["tokens"]

    loss, grads = jax.jit(jax.value_and_grad(mean_loss))(state.params)
    expected = jax.tree.map(lambda p, g: p - g, state.params, grads)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new.params, expected)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    assert int(metrics["tokens"]) == int(batch["mask"][:, 1:].sum())
    np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-5)
    assert int(new.step) == 1
    assert not np.array_equal(new.rng, state.rng)


@pytest.mark.parametrize("accum_steps", [4])
def test_accumulation_equals_one_big_batch(accum_steps):
    tx = adamw(1e-2)
    state, batch = _state(tx), _batch()
    # Rows have different padding, so micro-batch token counts differ: the mean must use the window total.
    counts = batch["mask"][:, 1:].sum(axis=1)
    assert len(set(np.asarray(counts).tolist())) > 1
    big, big_metrics = jax.jit(make_train_step(lm.loss_fn, tx))(state, batch)
    acc, acc_metrics = jax.jit(make_train_step(lm.loss_fn, tx, accum_steps=accum_steps))(state, batch)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), acc.params, big.params)
    np.testing.assert_allclose(acc_metrics["loss"], big_metrics["loss"], rtol=1e-6)
    np.testing.assert_allclose(acc_metrics["grad_norm"], big_metrics["grad_norm"], rtol=1e-5)
    assert int(acc_metrics["tokens"]) == int(big_metrics["tokens"])


_sgd_state = functools.cache(_state)
SGD_ACCUM4_STEP = jax.jit(make_train_step(lm.loss_fn, optax.sgd(1.0), accum_steps=4))


@settings(max_examples=15, deadline=None)
@given(mask=hnp.arrays(np.bool_, (8, 9)))
def test_accumulation_equals_big_batch_for_any_padding(mask):
    """Any mask, including micro-batches with no tokens at all, gives the big batch's update."""
    state, batch = _sgd_state(), {**_batch(), "mask": jnp.asarray(mask)}
    big, big_metrics = SGD_STEP(state, batch)
    acc, acc_metrics = SGD_ACCUM4_STEP(state, batch)
    assert int(acc_metrics["tokens"]) == int(mask[:, 1:].sum())
    for a, b in zip(jax.tree.leaves(acc), jax.tree.leaves(big), strict=True):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acc_metrics["loss"], big_metrics["loss"], rtol=1e-5)


def test_accumulation_micro_batches_and_keys():
    seen = []

    def loss_fn(params, batch, rng):
        seen.append(batch["x"].shape)
        return jnp.sum(params["w"] * batch["x"]) + 0.0 * jax.random.uniform(rng), {"tokens": jnp.int32(1)}

    state = init_train_state({"w": jnp.ones(())}, optax.sgd(1.0), jax.random.key(0))
    _, metrics = make_train_step(loss_fn, optax.sgd(1.0), accum_steps=3)(state, {"x": jnp.arange(6.0)})
    assert seen[-1] == (2,)
    assert int(metrics["tokens"]) == 3
    np.testing.assert_allclose(metrics["loss"], 15.0 / 3)


def test_all_masked_batch_gives_finite_zero_update():
    state, batch = _state(), _batch()
    batch = {**batch, "mask": jnp.zeros_like(batch["mask"])}
    new, metrics = SGD_STEP(state, batch)
    assert int(metrics["tokens"]) == 0
    assert float(metrics["loss"]) == 0.0
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), new.params, state.params)


def test_jit_equals_no_jit():
    state, batch = _state(), _batch()
    eager, m_eager = make_train_step(lm.loss_fn, optax.sgd(1.0))(state, batch)
    jitted, m_jit = SGD_STEP(state, batch)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), eager, jitted)
    np.testing.assert_allclose(m_eager["loss"], m_jit["loss"], rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "aux", "message"),
    [
        ({"accum_steps": 0}, {"tokens": 1}, "accum_steps must be a positive int"),
        ({"accum_steps": 3}, {"tokens": 1}, r"shape \(8, 9\) cannot be split into accum_steps=3"),
        ({}, {"count": 1}, r"aux\['tokens'\]"),
        ({}, {"tokens": 1, "loss": 0.0}, r"\['loss'\] are reserved"),
    ],
)
def test_step_errors(kwargs, aux, message):
    def loss_fn(params, batch, rng):
        return jnp.sum(params["w"]) * 0.0, aux

    with pytest.raises(ValueError, match=message):
        step = make_train_step(loss_fn, optax.sgd(1.0), **kwargs)
        step(init_train_state({"w": jnp.ones(2)}, optax.sgd(1.0), jax.random.key(0)), _batch())


def _sharded_losses(mesh, *, check=False):
    tx = adamw(1e-2)
    abstract = jax.eval_shape(lm.init, jax.random.key(0))
    shardings = train_state_shardings(tx, abstract, param_shardings(abstract, lm.logical_axes(abstract), mesh))
    state = create_train_state(lm.init, tx, jax.random.key(0), shardings=shardings)
    step = jit_train_step(make_train_step(lm.loss_fn, tx, accum_steps=2), shardings, batch_sharding(mesh))
    batches = [jax.device_put(_batch(index=i), batch_sharding(mesh)) for i in range(4)]
    old, losses = state, []
    with count_compiles() as compiles:
        for batch in batches:
            state, metrics = step(state, batch)
            losses.append(metrics["loss"])
        jax.block_until_ready(metrics)
    if check:
        assert compiles.count == 1
        assert old.params["embed"].is_deleted()
        w_in = state.params["layers"]["0"]["w_in"]
        assert w_in.sharding == shardings.params["layers"]["0"]["w_in"]
        assert w_in.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
        assert state.opt_state[1][0].mu["embed"].sharding == shardings.params["embed"]
        assert int(state.step) == 4
    return [float(x) for x in losses]


def test_jit_train_step_compiles_once_donates_and_matches_single_device():
    sharded = _sharded_losses(make_mesh({"data": 2, "fsdp": 2, "tensor": 2}), check=True)
    single = _sharded_losses(make_mesh({"data": 1}, devices=jax.devices()[:1]))
    np.testing.assert_allclose(sharded, single, rtol=1e-5)


def test_loss_falls_with_adamw_preset_and_reports_learning_rate():
    schedule = warmup_cosine(3e-2, warmup_steps=4, total_steps=60)
    tx = adamw(schedule, weight_decay=0.01)
    state = _state(tx)
    step = jax.jit(make_train_step(lm.loss_fn, tx, learning_rate_fn=schedule))
    losses, lrs = [], []
    for i in range(60):
        state, metrics = step(state, _batch(index=i))
        losses.append(float(metrics["loss"]))
        lrs.append(float(metrics["learning_rate"]))
    np.testing.assert_allclose(lrs[:5], [0.0, 0.0075, 0.015, 0.0225, 0.03], rtol=1e-6)
    # The chain has two successors per token: the best achievable loss is about log 2 = 0.69.
    assert np.mean(losses[:5]) > 3.0
    assert np.mean(losses[-5:]) < 1.2
