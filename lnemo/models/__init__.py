"""Heterogeneous Llama-family decoders: configs, pure ``init``/``forward``, cache, cost model, surgery, HF interop."""

from lnemo.models.cache import Cache, LayerCache, init_cache
from lnemo.models.config import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    ModelConfig,
    RopeScaling,
    ffn_mult_to_intermediate_size,
    intermediate_size_to_ffn_mult,
)
from lnemo.models.transformer import (
    ModelOutput,
    abstract_params,
    forward,
    init,
    lm_head_kernel,
    logits_from_hidden,
    param_logical_axes,
)

__all__ = [
    "AttentionConfig", "BlockConfig", "Cache", "FFNConfig", "LayerCache", "ModelConfig", "ModelOutput",
    "RopeScaling", "abstract_params", "ffn_mult_to_intermediate_size", "forward", "init", "init_cache",
    "intermediate_size_to_ffn_mult", "lm_head_kernel", "logits_from_hidden", "param_logical_axes",
]
