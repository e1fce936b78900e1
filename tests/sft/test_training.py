import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo.data import ByteTokenizer, ProblemSource
from lnemo.models import ModelConfig, forward, init
from lnemo.sft import Stage, final_losses, paired_examples, reasoning_then_mixed, sft_loss, train_sft

TOK = ByteTokenizer()
CFG = ModelConfig.tiny()


def _batch():
    tokens = jnp.array([[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]])
    return {"tokens": tokens, "targets": jnp.roll(tokens, -1, axis=1),
            "loss_mask": jnp.array([[0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 0]], bool),
            "segment_ids": jnp.ones((2, 6), jnp.int32), "positions": jnp.broadcast_to(jnp.arange(6), (2, 6)),
            "mode": jnp.array([[1] * 6, [0, 0, 0, 0, -1, -1]], jnp.int32)}


@pytest.fixture(scope="module")
def params():
    return jax.jit(init, static_argnums=0)(CFG, jax.random.key(0))


def test_sft_loss_sums_cross_entropy_on_trained_tokens_per_mode(params):
    batch = _batch()
    logp = jax.nn.log_softmax(jax.jit(forward, static_argnums=0)(CFG, params, batch["tokens"]).logits)
    nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
    loss, aux = jax.jit(sft_loss(CFG))(params, batch, jax.random.key(0))
    np.testing.assert_allclose(loss, nll[batch["loss_mask"]].sum(), rtol=1e-5)
    assert int(aux["tokens"]) == 5 and int(aux["tokens_on"]) == 2 and int(aux["tokens_off"]) == 2
    np.testing.assert_allclose(aux["loss_sum_on"], nll[0, 1:3].sum(), rtol=1e-5)
    np.testing.assert_allclose(aux["loss_sum_off"], nll[1, 2:4].sum(), rtol=1e-5)
    no_jit = jax.tree.map(lambda x: x[:1], batch)  # the unjitted loss on one row equals the jitted one's row sum
    np.testing.assert_allclose(sft_loss(CFG)(params, no_jit, jax.random.key(0))[0], nll[0, 1:3].sum(), rtol=1e-5)


def test_all_masked_gives_zero_loss_and_finite_grads(params):
    batch = dict(_batch(), loss_mask=jnp.zeros((2, 6), bool))
    (loss, aux), grads = jax.jit(jax.value_and_grad(sft_loss(CFG), has_aux=True))(params, batch, jax.random.key(0))
    assert float(loss) == 0 and int(aux["tokens"]) == 0
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


@pytest.mark.slow
def test_two_stage_sft_lowers_the_loss_in_both_modes(params):
    problems = ProblemSource(difficulties=(1,), size=512)
    stages = reasoning_then_mixed(problems, TOK, steps=(6, 18), learning_rate=3e-3)
    assert [s.name for s in stages] == ["reasoning", "mixed"]
    new, history = train_sft(CFG, params, stages, TOK, seq_len=128, batch_size=8, log_every=3)
    first, last = history[0], final_losses(history)
    assert [r["stage"] for r in history][:2] == ["reasoning", "reasoning"] and history[-1]["stage"] == "mixed"
    assert "loss_off" not in history[0] and "loss_on" in history[0]
    assert last["loss"] < 0.6 * first["loss"]
    assert last["loss_on"] < 0.6 * first["loss_on"] and np.isfinite(last["loss_off"])
    assert not jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.allclose(a, b)), params, new))[0]
    single = Stage("only", paired_examples(problems, TOK), 2, 1e-3)
    assert single.warmup_steps == 0
