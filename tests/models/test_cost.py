import jax
import pytest

from lnemo.models import AttentionConfig, BlockConfig, FFNConfig, ModelConfig, abstract_params, cost


def test_published_parameter_counts():
    assert cost.param_count(ModelConfig.llama3_1_8b()) == 8_030_261_248
    assert cost.param_count(ModelConfig.llama3_3_70b()) == 70_553_706_496


def test_per_block_figures_from_the_methods_sheet():
    cfg = ModelConfig.llama3_3_70b()
    att = lambda kv: cost.block_cost(cfg, BlockConfig(AttentionConfig.gqa(kv), FFNConfig.none())).params
    assert round(att(8) / 1e6, 1) == 151.0 and round(att(4) / 1e6, 1) == 142.6 and round(att(1) / 1e6, 1) == 136.3
    ffn = cost.block_cost(cfg, BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(28672)))
    assert round(ffn.params / 1e6, 1) == 704.7
    lin = cost.block_cost(cfg, BlockConfig(AttentionConfig.linear(), FFNConfig.none()))
    assert lin.params == 8192 ** 2 + 8192
    assert cost.non_block_params(cfg) == 2 * 128256 * 8192 + 8192
    # LN-Super: 49 attention layers x 2*8*128 bytes per token in FP8 = 100,352 B
    blocks = (BlockConfig.llama(8, 28672),) * 49 + (BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(5632)),) * 31
    assert cost.kv_bytes_per_token(cfg.replace(blocks=blocks), "float8_e4m3fn") == 100_352


def test_param_count_matches_the_real_pytree_for_heterogeneous_models():
    blocks = (BlockConfig.llama(2, 96), BlockConfig(AttentionConfig.linear(), FFNConfig.parallel(32, 64)),
              BlockConfig(AttentionConfig.none(), FFNConfig.linear()), BlockConfig(AttentionConfig.none(), FFNConfig.none()))
    for tied in (False, True):
        cfg = ModelConfig.tiny().replace(blocks=blocks, tie_embeddings=tied)
        n = sum(x.size for x in jax.tree.leaves(abstract_params(cfg)))
        assert cost.param_count(cfg) == n


def test_flops_and_kv_scale_as_documented():
    cfg = ModelConfig.tiny()
    d, v, h, hd = 64, cfg.vocab_size, 4, 16
    per_layer_matmul = d * hd * (2 * 4 + 2 * 2) + 3 * d * 128
    assert cost.forward_flops_per_token(cfg, 10) == 2 * (2 * per_layer_matmul + d * v) + 2 * 4 * h * hd * 10
    assert cost.train_flops_per_token(cfg, 10) == 3 * cost.prefill_flops_per_token(cfg, 10)
    assert cost.kv_bytes_per_token(cfg, "float32") == 2 * (2 * 2 * hd * 4)
    rows = cost.layer_table(cfg, context=8)
    assert [r["layer"] for r in rows] == [0, 1] and rows[0]["block"] == "gqa(kv=2) | swiglu(128)"
    assert cost.decode_bytes_per_step(cfg, batch=2, context=8) > cost.weight_bytes(cfg) - v * d * 4 - 1


def test_weight_bytes_by_dtype():
    cfg = ModelConfig.llama3_1_8b()
    assert cost.weight_bytes(cfg, "bfloat16") == 2 * 8_030_261_248
    with pytest.raises(TypeError):
        cost.weight_bytes(cfg, "nonsense")
