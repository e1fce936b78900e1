import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo.models import ModelConfig, forward, init
from lnemo.sharding import make_mesh
from lnemo.train import adamw
from lnemo.train.model_setup import setup_model_training
from lnemo.train.objectives import lm_objective


def _batch(cfg, b=4, t=16, seed=0):
    tokens = np.asarray(jax.random.randint(jax.random.key(seed), (b, t + 1), 0, cfg.vocab_size), np.int32)
    mask = np.ones((b, t), bool)
    mask[:, :3] = False
    return {"tokens": tokens[:, :-1], "targets": tokens[:, 1:], "loss_mask": mask,
            "segment_ids": np.ones((b, t), np.int32), "positions": np.broadcast_to(np.arange(t, dtype=np.int32), (b, t))}


@pytest.fixture(scope="module")
def tiny():
    cfg = ModelConfig.tiny()
    return cfg, init(cfg, jax.random.key(0))


def test_lm_objective_is_the_masked_token_sum(tiny):
    cfg, params = tiny
    batch = _batch(cfg)
    loss, aux = jax.jit(lm_objective(cfg))(params, batch, jax.random.key(0))
    logp = jax.nn.log_softmax(forward(cfg, params, batch["tokens"]).logits)
    ce = -jnp.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
    np.testing.assert_allclose(loss, jnp.sum(jnp.where(batch["loss_mask"], ce, 0)), rtol=1e-5)
    assert float(aux["tokens"]) == batch["loss_mask"].sum()


def test_chunked_objective_matches_full_logits_with_gradients(tiny):
    cfg, params = tiny
    batch = _batch(cfg)
    full = jax.jit(jax.value_and_grad(lambda p: lm_objective(cfg)(p, batch, None)[0]))
    chunk = jax.jit(jax.value_and_grad(lambda p: lm_objective(cfg, chunk_size=4)(p, batch, None)[0]))
    (l1, g1), (l2, g2) = full(params), chunk(params)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g1, g2)
    with pytest.raises(ValueError, match="z_loss_weight=0.1"):
        lm_objective(cfg, z_loss_weight=0.1, chunk_size=4)
    loss_z, aux_z = lm_objective(cfg, z_loss_weight=0.1)(params, batch, None)
    np.testing.assert_allclose(loss_z, l1 + 0.1 * aux_z["z_loss_sum"], rtol=1e-5)


def test_sharded_training_equals_single_device(tiny):
    cfg, _ = tiny
    batch = _batch(cfg, b=8)
    losses = {}
    for name, axes in (("single", {"data": 1}), ("dp8", {"data": 8}), ("fsdp_tp", {"data": 2, "fsdp": 2, "tensor": 2})):
        devices = jax.devices()[:1] if name == "single" else None
        mesh = make_mesh(axes, devices=devices)
        run = setup_model_training(cfg, lm_objective(cfg), adamw(1e-3), mesh, jax.random.key(0))
        state, out = run.state, []
        for _ in range(3):
            state, metrics = run.step(state, jax.device_put(batch, run.batch_sharding))
            out.append(float(metrics["loss"]))
        losses[name] = np.array(out)
    assert losses["single"][-1] < losses["single"][0]
    np.testing.assert_allclose(losses["dp8"], losses["single"], rtol=1e-5)
    np.testing.assert_allclose(losses["fsdp_tp"], losses["single"], rtol=1e-5)
