import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

from lnemo.models import AttentionConfig, BlockConfig, FFNConfig, ModelConfig, forward, hf, init

BLOCKS = (BlockConfig.llama(2, 512), BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(256)),
          BlockConfig(AttentionConfig.linear(), FFNConfig.linear()), BlockConfig(AttentionConfig.gqa(1), FFNConfig.none()),
          BlockConfig(AttentionConfig.none(), FFNConfig.parallel(256, 512)))


def _tree_equal(a, b):
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_nemotron_nas_save_then_load_is_exact(tmp_path):
    cfg = ModelConfig.tiny().replace(blocks=BLOCKS[:4], param_dtype="bfloat16")
    params = init(cfg, jax.random.key(0))
    hf.save(tmp_path, cfg, params)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["model_type"] == "nemotron-nas" and written["block_configs"][2]["attention"]["replace_with_linear"]
    assert written["torch_dtype"] == "bfloat16"
    cfg2, params2 = hf.load(tmp_path)
    assert cfg2 == cfg and _tree_equal(params, params2)


def test_parallel_ffn_is_saved_fused_and_computes_the_same(tmp_path):
    cfg = ModelConfig.tiny().replace(blocks=BLOCKS)
    params = init(cfg, jax.random.key(1))
    hf.save(tmp_path, cfg, params)
    cfg2, params2 = hf.load(tmp_path)
    assert cfg2.blocks[4].ffn == FFNConfig.swiglu(768)
    tokens = jnp.arange(9)[None]
    np.testing.assert_allclose(forward(cfg2, params2, tokens).logits, forward(cfg, params, tokens).logits,
                               atol=2e-5, rtol=2e-5)


def test_sharded_checkpoint_with_index(tmp_path):
    cfg = ModelConfig.tiny(num_layers=3)
    params = init(cfg, jax.random.key(2))
    hf.save(tmp_path, cfg, params, max_shard_bytes=40_000)
    index = json.loads((tmp_path / hf.INDEX_FILE).read_text())
    assert len(set(index["weight_map"].values())) > 2
    assert not (tmp_path / hf.SINGLE_FILE).exists()
    cfg2, params2 = hf.load(tmp_path)
    assert cfg2 == cfg and _tree_equal(params, params2)


def test_tensor_errors_name_the_tensor(tmp_path):
    cfg = ModelConfig.tiny()
    hf.save(tmp_path, cfg, init(cfg, jax.random.key(3)))
    from safetensors.numpy import load_file
    tensors = load_file(tmp_path / hf.SINGLE_FILE)
    tensors["model.layers.0.rotary_emb.inv_freq"] = np.ones(8, np.float32)  # skipped silently: a buffer
    bad = dict(tensors)
    bad["model.layers.1.mlp.up_proj.weight"] = np.zeros((100, 64), np.float32)
    save_file(bad, tmp_path / hf.SINGLE_FILE)
    with pytest.raises(ValueError, match=r"model.layers.1.mlp.up_proj.weight.*\(100, 64\).*\(128, 64\)"):
        hf.load(tmp_path)
    extra = dict(tensors, **{"model.layers.0.self_attn.q_proj.bias": np.zeros(64, np.float32)})
    save_file(extra, tmp_path / hf.SINGLE_FILE)
    with pytest.raises(ValueError, match="q_proj.bias"):
        hf.load(tmp_path)
    missing = {k: v for k, v in tensors.items() if k != "model.norm.weight"}
    save_file(missing, tmp_path / hf.SINGLE_FILE)
    with pytest.raises(ValueError, match="model.norm.weight"):
        hf.load(tmp_path)
    ints = dict(tensors, **{"model.norm.weight": np.zeros(64, np.int32)})
    save_file(ints, tmp_path / hf.SINGLE_FILE)
    with pytest.raises(ValueError, match="dtype int32"):
        hf.load(tmp_path)
    save_file(tensors, tmp_path / hf.SINGLE_FILE)
    hf.load(tmp_path)


def test_pickle_checkpoints_are_refused(tmp_path):
    cfg = ModelConfig.tiny()
    hf.save(tmp_path, cfg, init(cfg, jax.random.key(3)))
    (tmp_path / hf.SINGLE_FILE).unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="pickle checkpoints are never loaded"):
        hf.load(tmp_path)
