import pytest

from lnemo.models import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    ModelConfig,
    RopeScaling,
    ffn_mult_to_intermediate_size,
    intermediate_size_to_ffn_mult,
)
from lnemo.models.hf_config import from_hf_config, to_hf_config


def test_configs_are_frozen_and_hashable():
    a, b = ModelConfig.tiny(), ModelConfig.tiny()
    assert a == b and hash(a) == hash(b)
    with pytest.raises(Exception):
        a.hidden_size = 3
    assert len({a, b, ModelConfig.small()}) == 2


@pytest.mark.parametrize("change,message", [
    (dict(blocks=(BlockConfig.llama(3, 128),) * 2), r"blocks\[0\]\.attention\.num_kv_heads=3"),
    (dict(blocks=(BlockConfig.llama(2, 128), BlockConfig(FFNConfig.none().kind and AttentionConfig.gqa(2),
                                                          FFNConfig("swiglu", ())))),
     r"blocks\[1\]\.ffn\.intermediate_sizes=\(\)"),
    (dict(blocks=(BlockConfig(AttentionConfig("linear", 2), FFNConfig.none()),)), r"blocks\[0\]\.attention\.num_kv_heads=2"),
    (dict(hidden_size=0), r"hidden_size=0"),
    (dict(dtype="int8"), r"dtype='int8'"),
    (dict(blocks=()), r"blocks=\(\)"),
])
def test_validation_names_field_and_value(change, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.tiny().replace(**change)


@pytest.mark.parametrize("h,m,i", [
    (4096, 5.25, 14336), (4096, 4.0, 11008), (4096, 2.0, 5632), (4096, 1.0, 2816),
    (8192, 5.25, 28672), (8192, 3.28125, 17920), (8192, 1.3125, 7168), (8192, 0.5, 2816),
    (16384, 4.875, 53248), (16384, 0.4875, 5376), (16384, 27.5625, 301056), (16384, 0.4921875, 5376),
    (64, 0.525, 256), (256, 4.59375, 1024), (1024, 1.05, 768), (8192, 1.05, 5888),
])
def test_ffn_mult_rule(h, m, i):
    assert ffn_mult_to_intermediate_size(m, h) == i


def test_ffn_mult_inverse_is_exact_on_multiples_of_256():
    for h in (64, 256, 4096, 8192, 16384):
        for i in range(256, 40 * h + 1, 256 * 7):
            assert ffn_mult_to_intermediate_size(intermediate_size_to_ffn_mult(i, h), h) == i
    with pytest.raises(ValueError, match="intermediate_size=100"):
        intermediate_size_to_ffn_mult(100, 64)


def _nas_config(**attn):
    block = {"attention": {"no_op": False, "replace_with_linear": False, "n_heads_in_group": 2, **attn},
             "ffn": {"no_op": False, "replace_with_linear": False, "ffn_mult": 2.625}}
    return {"model_type": "nemotron-nas", "architectures": ["DeciLMForCausalLM"], "hidden_size": 512,
            "num_attention_heads": 8, "num_hidden_layers": 2, "num_key_value_heads": None,
            "intermediate_size": None, "vocab_size": 100, "rope_theta": 10000.0, "block_configs": [block, block]}


def test_read_nemotron_nas_block_configs():
    cfg = from_hf_config(_nas_config())
    assert cfg.blocks[0] == BlockConfig.llama(4, 1024)


@pytest.mark.parametrize("field,value", [("window_length", 128), ("num_sink_tokens", 4), ("sparsify", ["x"]),
                                         ("unshifted_sink", True)])
def test_unsupported_fields_are_rejected(field, value):
    with pytest.raises(ValueError, match=rf"block_configs\[0\]\.attention\.{field}"):
        from_hf_config(_nas_config(**{field: value}))


def test_both_rope_spellings_are_read():
    old = {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
           "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 10, "rope_theta": 500000.0,
           "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 8192}}
    new = {k: v for k, v in old.items() if k not in ("rope_theta", "rope_scaling")}
    new["rope_parameters"] = dict(old["rope_scaling"], rope_theta=500000.0)
    a, b = from_hf_config(old), from_hf_config(new)
    assert a == b and a.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 8192) and a.rope_theta == 500000.0
    with pytest.raises(ValueError, match="rope_type='yarn'"):
        from_hf_config(dict(new, rope_parameters={"rope_type": "yarn", "factor": 2.0}))
    with pytest.raises(ValueError, match="attention_bias=True"):
        from_hf_config(dict(old, attention_bias=True))


def test_hf_config_round_trip_llama_and_nemotron_nas():
    llama = ModelConfig.llama3_1_8b()
    assert to_hf_config(llama)["architectures"] == ["LlamaForCausalLM"]
    assert from_hf_config(to_hf_config(llama)) == llama
    blocks = (BlockConfig.llama(8, 28672), BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(5632)),
              BlockConfig(AttentionConfig.linear(), FFNConfig.linear()),
              BlockConfig(AttentionConfig.none(), FFNConfig.none()), BlockConfig(AttentionConfig.gqa(1), FFNConfig.swiglu(300)))
    child = ModelConfig.llama3_3_70b().replace(blocks=blocks)
    d = to_hf_config(child)
    assert d["model_type"] == "nemotron-nas" and d["num_key_value_heads"] is None
    assert d["block_configs"][1]["ffn"]["ffn_mult"] == 1.03125
    assert d["block_configs"][4]["ffn"]["ffn_mult"] is None and d["block_configs"][4]["attention"]["n_heads_in_group"] == 64
    assert from_hf_config(d) == child
