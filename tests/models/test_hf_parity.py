"""Logits of lnemo models equal transformers' LlamaForCausalLM on the same weights (torch CPU)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lnemo.models import AttentionConfig, BlockConfig, FFNConfig, ModelConfig, RopeScaling, forward, hf, init

torch = pytest.importorskip("torch", reason="the interop extra (torch CPU) is part of the test install")
transformers = pytest.importorskip("transformers")


def _torch_logits(path, tokens):
    model = transformers.LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        return model(torch.tensor(np.asarray(tokens))).logits.numpy()


def _random_params(cfg, seed):
    """Random weights with non-trivial norm gains (init gives unit gains)."""
    params = init(cfg, jax.random.key(seed))
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    leaves = [x + 0.1 * jax.random.normal(k, x.shape) if x.ndim == 1 else x for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, leaves)


@pytest.mark.parametrize("tied,scaling,head_dim", [
    (False, None, None),
    (True, RopeScaling(8.0, 1.0, 4.0, 16), None),
    (False, RopeScaling(4.0, 1.0, 4.0, 32), 24),
])
def test_llama_logits_match_transformers(tmp_path, tied, scaling, head_dim):
    cfg = ModelConfig.homogeneous(vocab_size=97, hidden_size=48, num_layers=2, num_heads=4, num_kv_heads=2,
                                  intermediate_size=80, rope_theta=500.0, rope_scaling=scaling,
                                  tie_embeddings=tied, head_dim=head_dim)
    params = _random_params(cfg, 0)
    hf.save(tmp_path, cfg, params)
    tokens = jax.random.randint(jax.random.key(3), (2, 40), 0, cfg.vocab_size)
    ours = forward(cfg, params, tokens).logits
    np.testing.assert_allclose(ours, _torch_logits(tmp_path, tokens), atol=1e-4, rtol=1e-4)


def _homogeneous_equivalent(cfg, params, kv_heads, width):
    """The plain Llama computing exactly what a heterogeneous model computes (GQA/none attention, narrower FFNs).

    Skipped attention: zero o_proj; fewer KV heads: repeat each head; narrower FFN: zero-padded columns of
    gate/up and rows of down; skipped FFN: zero down_proj.
    """
    base = ModelConfig.homogeneous(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                                   num_layers=cfg.num_layers, num_heads=cfg.num_heads, num_kv_heads=kv_heads,
                                   intermediate_size=width, rope_theta=cfg.rope_theta)
    out = {k: v for k, v in params.items() if not k.startswith("layers_")}
    d, h, hd = cfg.hidden_size, cfg.num_heads, cfg.head_size
    for i, block in enumerate(cfg.blocks):
        lay = params.get(f"layers_{i}", {})
        new = {}
        if block.attention.kind == "gqa":
            a = lay["attn"]
            rep = kv_heads // block.attention.num_kv_heads
            new["attn"] = dict(a, k_proj=jnp.repeat(a["k_proj"], rep, axis=1), v_proj=jnp.repeat(a["v_proj"], rep, axis=1))
        else:
            new["attn"] = {"norm": {"scale": jnp.ones(d)}, "q_proj": jnp.zeros((d, h, hd)),
                           "k_proj": jnp.zeros((d, kv_heads, hd)), "v_proj": jnp.zeros((d, kv_heads, hd)),
                           "o_proj": jnp.zeros((h, hd, d))}
        if block.ffn.kind == "swiglu":
            f = lay["ffn"]
            pad = width - block.ffn.intermediate_size
            new["ffn"] = {"norm": f["norm"], "gate_proj": jnp.pad(f["gate_proj"], ((0, 0), (0, pad))),
                          "up_proj": jnp.pad(f["up_proj"], ((0, 0), (0, pad))),
                          "down_proj": jnp.pad(f["down_proj"], ((0, pad), (0, 0)))}
        else:
            new["ffn"] = {"norm": {"scale": jnp.ones(d)}, "gate_proj": jnp.zeros((d, width)),
                          "up_proj": jnp.zeros((d, width)), "down_proj": jnp.zeros((width, d))}
        out[f"layers_{i}"] = new
    return base, out


def test_heterogeneous_logits_match_transformers(tmp_path):
    blocks = (BlockConfig.llama(4, 96), BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(40)),
              BlockConfig(AttentionConfig.gqa(1), FFNConfig.none()), BlockConfig.llama(2, 64))
    cfg = ModelConfig(vocab_size=61, hidden_size=32, num_heads=4, blocks=blocks, rope_theta=1000.0)
    params = _random_params(cfg, 1)
    base, base_params = _homogeneous_equivalent(cfg, params, kv_heads=4, width=96)
    hf.save(tmp_path, base, base_params)
    tokens = jax.random.randint(jax.random.key(4), (2, 24), 0, cfg.vocab_size)
    ours = forward(cfg, params, tokens).logits
    np.testing.assert_allclose(ours, _torch_logits(tmp_path, tokens), atol=1e-4, rtol=1e-4)
