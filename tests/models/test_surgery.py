import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo.models import AttentionConfig, BlockConfig, FFNConfig, ModelConfig, forward, init
from lnemo.models import surgery

fwd = jax.jit(forward, static_argnums=0)


@pytest.fixture(scope="module")
def parent():
    cfg = ModelConfig.tiny(num_layers=3)
    return cfg, init(cfg, jax.random.key(0))


def _equal(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_replace_block_round_trip_and_no_mutation(parent):
    cfg, params = parent
    before = jax.tree.map(lambda x: x, params)
    old_layer = surgery.extract_layer(params, 1)
    block = BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(32))
    ffn = old_layer["ffn"]
    child_layer = {"ffn": {"norm": ffn["norm"], "gate_proj": ffn["gate_proj"][:, :32],
                           "up_proj": ffn["up_proj"][:, :32], "down_proj": ffn["down_proj"][:32]}}
    c2, p2 = surgery.replace_block(cfg, params, 1, block, child_layer)
    assert c2.blocks[1] == block and "attn" not in p2["layers_1"]
    c3, p3 = surgery.replace_block(c2, p2, 1, cfg.blocks[1], old_layer)
    assert c3 == cfg and _equal(p3, params)
    assert _equal(params, before)  # inputs untouched
    with pytest.raises(ValueError, match=r"\['layers_1'\]\['ffn'\]\['down_proj'\] has shape \(128, 64\)"):
        surgery.replace_block(cfg, params, 1, block, {"ffn": old_layer["ffn"]})
    with pytest.raises(ValueError, match=r"\['layers_1'\]\['attn'\].*is not part of the config"):
        surgery.replace_block(cfg, params, 1, block, dict(child_layer, attn=old_layer["attn"]))


def test_remove_then_insert_layer_round_trip(parent):
    cfg, params = parent
    c2, p2, removed = surgery.remove_layer(cfg, params, 0)
    assert c2.num_layers == 2 and _equal(p2["layers_0"], params["layers_1"])
    c3, p3 = surgery.insert_layer(c2, p2, 0, cfg.blocks[0], removed)
    assert c3 == cfg and _equal(p3, params)
    tokens = jnp.arange(10)[None] % cfg.vocab_size
    np.testing.assert_array_equal(fwd(c3, p3, tokens).logits, fwd(cfg, params, tokens).logits)


def test_inserting_an_empty_layer_keeps_the_function(parent):
    cfg, params = parent
    empty = BlockConfig(AttentionConfig.none(), FFNConfig.none())
    c2, p2 = surgery.insert_layer(cfg, params, 2, empty, {})
    tokens = jnp.arange(10)[None] % cfg.vocab_size
    np.testing.assert_allclose(fwd(c2, p2, tokens).logits, fwd(cfg, params, tokens).logits, atol=1e-6)


def test_fuse_parallel_ffn_is_exact():
    blocks = (BlockConfig(AttentionConfig.none(), FFNConfig.parallel(32, 48, 16)), BlockConfig.llama(2, 64))
    cfg = ModelConfig.tiny().replace(blocks=blocks)
    params = init(cfg, jax.random.key(1))
    params["layers_0"]["ffn"] = jax.tree.map(lambda x: x, params["layers_0"]["ffn"])
    for j in range(3):  # non-trivial, different norm gains per branch
        br = params["layers_0"]["ffn"][f"branch_{j}"]
        br["norm"] = {"scale": 1.0 + 0.3 * jax.random.normal(jax.random.key(j), (64,))}
    fused_cfg, fused = surgery.fuse_parallel_ffn(cfg, params, 0)
    assert fused_cfg.blocks[0].ffn == FFNConfig.swiglu(96)
    tokens = jnp.arange(12)[None] % cfg.vocab_size
    np.testing.assert_allclose(fwd(fused_cfg, fused, tokens).logits, fwd(cfg, params, tokens).logits,
                               atol=2e-5, rtol=2e-5)
    with pytest.raises(ValueError, match="not parallel"):
        surgery.fuse_parallel_ffn(cfg, params, 1)


def test_errors_name_the_layer(parent):
    cfg, params = parent
    with pytest.raises(KeyError, match="layers_7"):
        surgery.extract_layer(params, 7)
    with pytest.raises(IndexError, match="layer=5"):
        surgery.remove_layer(cfg, params, 5)
