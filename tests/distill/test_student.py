import jax
import numpy as np
import pytest

from lnemo.distill import slice_student
from lnemo.models import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    ModelConfig,
    forward,
    init,
)


def test_slicing_is_exact_when_the_dropped_parts_are_redundant(batch):
    parent = ModelConfig.tiny(num_layers=3)
    params = jax.device_get(init(parent, jax.random.key(0)))
    # Make the parent computable by the child: paired KV heads equal, FFN channels >= 64 zero in layer 1,
    # attention output of layer 2 zero.
    layer0 = params["layers_0"]["attn"]
    for name in ("k_proj", "v_proj"):
        layer0[name] = np.repeat(layer0[name][:, :1], 2, axis=1)
    ffn = params["layers_1"]["ffn"]
    ffn["down_proj"] = ffn["down_proj"].copy()
    ffn["down_proj"][64:] = 0.0
    params["layers_2"]["attn"]["o_proj"] = np.zeros_like(params["layers_2"]["attn"]["o_proj"])
    child = (parent.with_block(0, BlockConfig(AttentionConfig.gqa(1), FFNConfig.swiglu(128)))
             .with_block(1, BlockConfig(AttentionConfig.gqa(2), FFNConfig.swiglu(64)))
             .with_block(2, BlockConfig(AttentionConfig.none(), FFNConfig.swiglu(128))))
    child_params = slice_student(parent, params, child)
    assert child_params["layers_1"]["ffn"]["up_proj"].shape == (64, 64)
    assert "attn" not in child_params["layers_2"]
    kw = {"positions": batch["positions"], "segment_ids": batch["segment_ids"]}
    np.testing.assert_allclose(forward(child, child_params, batch["tokens"], **kw).logits,
                               forward(parent, params, batch["tokens"], **kw).logits, atol=1e-5)


def test_slicing_drops_a_whole_layer_and_refuses_what_it_cannot_slice():
    parent = ModelConfig.tiny(num_layers=2)
    params = init(parent, jax.random.key(0))
    empty = parent.with_block(1, BlockConfig(AttentionConfig.none(), FFNConfig.none()))
    assert "layers_1" not in slice_student(parent, params, empty)
    linear = parent.with_block(0, BlockConfig(AttentionConfig.linear(), FFNConfig.swiglu(128)))
    with pytest.raises(ValueError, match="layer 0: cannot slice attention"):
        slice_student(parent, params, linear)
    wider = parent.with_block(1, BlockConfig(AttentionConfig.gqa(2), FFNConfig.swiglu(256)))
    with pytest.raises(ValueError, match="layer 1: cannot slice FFN"):
        slice_student(parent, params, wider)
    with pytest.raises(ValueError, match="num_layers"):
        slice_student(parent, params, ModelConfig.tiny(num_layers=3))
