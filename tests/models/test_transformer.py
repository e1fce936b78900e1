import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from lnemo.models import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    ModelConfig,
    init,
    init_cache,
    logits_from_hidden,
    param_logical_axes,
)
from lnemo.models import forward as eager_forward
from lnemo.models.layers import rms_norm

# Eager flax dispatch is slow; the tests exercise the same function under jit (configs are static).
forward = jax.jit(eager_forward, static_argnums=0, static_argnames=("return_hidden", "skip_logits"))

HETERO = (BlockConfig.llama(2, 96), BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(40)),
          BlockConfig(AttentionConfig.linear(), FFNConfig.parallel(32, 48)),
          BlockConfig(AttentionConfig.gqa(1), FFNConfig.linear()), BlockConfig(AttentionConfig.gqa(4), FFNConfig.none()))


@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig.tiny().replace(blocks=HETERO)
    return cfg, init(cfg, jax.random.key(0))


def test_absent_sub_blocks_have_no_parameters(model):
    cfg, params = model
    assert "attn" not in params["layers_1"] and "ffn" not in params["layers_4"]
    assert set(params["layers_2"]["attn"]) == {"norm", "linear_attn"}
    assert set(params["layers_2"]["ffn"]) == {"branch_0", "branch_1"}
    assert params["layers_3"]["attn"]["k_proj"].shape == (64, 1, 16)
    empty = cfg.replace(blocks=(BlockConfig(AttentionConfig.none(), FFNConfig.none()),) + HETERO)
    assert "layers_0" not in init(empty, jax.random.key(0))


def test_every_parameter_has_logical_axes(model):
    cfg, params = model
    axes = param_logical_axes(cfg)
    jax.tree.map(lambda p, a: None if len(a) == p.ndim else pytest.fail(f"{a} vs {p.shape}"), params, axes,
                 is_leaf=lambda x: isinstance(x, tuple))


def test_cached_decode_reproduces_full_sequence_logits(model):
    cfg, params = model
    tokens = jax.random.randint(jax.random.key(1), (2, 12), 0, cfg.vocab_size)
    full = forward(cfg, params, tokens).logits
    cache = init_cache(cfg, 2, 16)
    out = forward(cfg, params, tokens[:, :5], cache=cache)
    pieces, cache = [out.logits], out.cache
    step = jax.jit(lambda c, t: forward(cfg, params, t, cache=c))
    for t in range(5, 9):  # token by token
        out = step(cache, tokens[:, t:t + 1])
        pieces.append(out.logits)
        cache = out.cache
    out = forward(cfg, params, tokens[:, 9:], cache=cache)  # multi-token decode
    pieces.append(out.logits)
    np.testing.assert_allclose(jnp.concatenate(pieces, axis=1), full, atol=2e-5, rtol=2e-5)
    assert [None if c is None else c.k.shape[2] for c in out.cache] == [2, None, None, 1, 4]
    assert int(out.cache[0].end) == 12


def test_cache_overflow_gives_nan_and_wrong_cache_is_rejected(model):
    cfg, params = model
    cache = init_cache(cfg, 1, 4)
    out = forward(cfg, params, jnp.zeros((1, 3), jnp.int32), cache=cache)
    assert not jnp.isnan(out.logits).any()
    assert jnp.isnan(forward(cfg, params, jnp.zeros((1, 2), jnp.int32), cache=out.cache).logits).all()
    with pytest.raises(ValueError, match="cache has 2 entries"):
        forward(cfg, params, jnp.zeros((1, 2), jnp.int32), cache=init_cache(ModelConfig.tiny(), 1, 4))
    with pytest.raises(ValueError, match="do not fit a cache of capacity 4"):
        forward(cfg, params, jnp.zeros((1, 5), jnp.int32), cache=cache)


def test_left_padding_with_segments_and_positions_equals_unpadded(model):
    cfg, params = model
    tokens = jax.random.randint(jax.random.key(2), (1, 7), 0, cfg.vocab_size)
    ref = forward(cfg, params, tokens).logits
    padded = jnp.concatenate([jnp.zeros((1, 3), jnp.int32), tokens], axis=1)
    seg = jnp.array([[0, 0, 0] + [1] * 7])
    pos = jnp.array([[0, 0, 0] + list(range(7))])
    out = forward(cfg, params, padded, positions=pos, segment_ids=seg, cache=init_cache(cfg, 1, 12))
    np.testing.assert_allclose(out.logits[:, 3:], ref, atol=2e-5, rtol=2e-5)
    nxt = forward(cfg, params, tokens[:, :1], cache=out.cache, positions=jnp.array([[7]]))
    ref8 = forward(cfg, params, jnp.concatenate([tokens, tokens[:, :1]], axis=1)).logits[:, -1]
    np.testing.assert_allclose(nxt.logits[:, 0], ref8, atol=2e-5, rtol=2e-5)


def test_packed_segments_do_not_see_each_other(model):
    cfg, params = model
    a = jax.random.randint(jax.random.key(3), (1, 5), 0, cfg.vocab_size)
    b = jax.random.randint(jax.random.key(4), (1, 4), 0, cfg.vocab_size)
    packed = jnp.concatenate([a, b, jnp.zeros((1, 2), jnp.int32)], axis=1)
    seg = jnp.array([[1] * 5 + [2] * 4 + [0] * 2])
    pos = jnp.array([list(range(5)) + list(range(4)) + [0, 0]])
    out = forward(cfg, params, packed, positions=pos, segment_ids=seg).logits
    np.testing.assert_allclose(out[:, :5], forward(cfg, params, a).logits, atol=2e-5, rtol=2e-5)
    np.testing.assert_allclose(out[:, 5:9], forward(cfg, params, b).logits, atol=2e-5, rtol=2e-5)
    assert jnp.isfinite(out).all()


def test_hidden_states_and_final_hidden(model):
    cfg, params = model
    tokens = jnp.arange(6)[None] % cfg.vocab_size
    out = forward(cfg, params, tokens, return_hidden=True)
    assert len(out.hidden) == cfg.num_layers + 1
    np.testing.assert_allclose(out.final_hidden, rms_norm(out.hidden[-1], params["final_norm"]["scale"], eps=1e-5))
    np.testing.assert_allclose(logits_from_hidden(cfg, params, out.final_hidden), out.logits, atol=1e-5)
    # an empty layer passes the stream through unchanged
    empty = cfg.replace(blocks=cfg.blocks + (BlockConfig(AttentionConfig.none(), FFNConfig.none()),))
    out2 = forward(empty, params, tokens, return_hidden=True)
    np.testing.assert_array_equal(out2.hidden[-1], out2.hidden[-2])
    assert forward(cfg, params, tokens, skip_logits=True).logits is None


def test_remat_and_tied_embeddings(model):
    cfg, params = model
    tokens = jnp.arange(8)[None] % cfg.vocab_size

    def loss(p, c):
        return jnp.mean(forward(c, p, tokens).logits ** 2)

    g1 = jax.grad(loss)(params, cfg)
    g2 = jax.grad(loss)(params, cfg.replace(remat=True))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5), g1, g2)
    tied = cfg.replace(tie_embeddings=True)
    tp = init(tied, jax.random.key(0))
    assert "lm_head" not in tp
    np.testing.assert_allclose(forward(tied, tp, tokens).logits,
                               jnp.einsum("btd,vd->btv", forward(tied, tp, tokens).final_hidden, tp["embedding"]),
                               atol=1e-5)


def test_bf16_compute_is_close_to_float32(model):
    cfg, params = model
    tokens = jax.random.randint(jax.random.key(5), (2, 16), 0, cfg.vocab_size)
    ref = forward(cfg, params, tokens).logits
    out = forward(cfg.replace(dtype="bfloat16"), params, tokens).logits
    assert out.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(out - ref))) < 0.05 * float(jnp.max(jnp.abs(ref))) + 0.05


def test_sharded_forward_equals_unsharded(model):
    from lnemo.sharding.rules import DEFAULT_RULES, fit_spec, logical_to_spec

    cfg, params = model
    tokens = jax.random.randint(jax.random.key(6), (4, 8), 0, cfg.vocab_size)
    ref = forward(cfg, params, tokens).logits
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
    axes = param_logical_axes(cfg)
    shardings = jax.tree.map(
        lambda p, a: NamedSharding(mesh, fit_spec(logical_to_spec(a, DEFAULT_RULES), p.shape, dict(mesh.shape))),
        params, axes, is_leaf=lambda x: isinstance(x, tuple))
    sharded = jax.device_put(params, shardings)
    toks = jax.device_put(tokens, NamedSharding(mesh, PartitionSpec(("data", "fsdp"))))
    with jax.set_mesh(mesh):
        out = jax.jit(lambda p, t: forward(cfg, p, t).logits)(sharded, toks)
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=2e-5)
    assert sharded["layers_0"]["ffn"]["gate_proj"].sharding.spec == PartitionSpec("fsdp", "tensor")


def test_bad_tokens_are_rejected(model):
    cfg, params = model
    with pytest.raises(ValueError, match="integer array"):
        eager_forward(cfg, params, jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match="positions shape"):
        forward(cfg, params, jnp.zeros((2, 3), jnp.int32), positions=jnp.zeros((2, 4), jnp.int32))


def test_blocked_causal_attention_is_exact():
    from lnemo.models.attention import attention_mask, blocked_causal_attention, dot_product_attention

    b, t, h, g, hd = 2, 37, 4, 2, 8
    keys = jax.random.split(jax.random.key(7), 3)
    q = jax.random.normal(keys[0], (b, t, h, hd))
    k = jax.random.normal(keys[1], (b, t, g, hd))
    v = jax.random.normal(keys[2], (b, t, g, hd))
    seg = jnp.array([[1] * 20 + [2] * 15 + [0] * 2, [1] * 37])
    mask = attention_mask(seg, seg, jnp.arange(t), jnp.arange(t))
    full = dot_product_attention(q, k, v, mask, jnp.float32)
    np.testing.assert_allclose(blocked_causal_attention(q, k, v, mask, jnp.float32, block=8), full, atol=1e-5)


def test_bf16_gradients_follow_float32_gradients(model):
    cfg, params = model
    tokens = jax.random.randint(jax.random.key(8), (2, 16), 0, cfg.vocab_size)

    def loss(p, c):
        return jnp.mean(jax.nn.log_softmax(eager_forward(c, p, tokens).logits)[..., 0])

    g32 = jax.jit(jax.grad(loss), static_argnums=1)(params, cfg)
    g16 = jax.jit(jax.grad(loss), static_argnums=1)(params, cfg.replace(dtype="bfloat16"))
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
        assert a.dtype == jnp.float32
        cos = jnp.sum(a * b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b) + 1e-12)
        assert float(cos) > 0.98
