"""Conversion between ``ModelConfig`` and Hugging Face ``config.json`` dicts.

Two architectures are read and written: ``LlamaForCausalLM`` (homogeneous models) and nemotron-nas
``DeciLMForCausalLM`` (per-layer ``block_configs``). Both RoPE spellings that ``transformers`` writes are
read: the older top-level ``rope_theta`` + ``rope_scaling`` and the newer ``rope_parameters``.

References: lnemo's methods sheet §3 (schema) and §4 (the ``ffn_mult`` rule).
"""

from __future__ import annotations

from typing import Any

from lnemo.models.config import (
    AttentionConfig,
    BlockConfig,
    FFNConfig,
    ModelConfig,
    RopeScaling,
    ffn_mult_to_intermediate_size,
    intermediate_size_to_ffn_mult,
)

_DTYPE_NAMES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "float64": "float64"}


def _reject(where: str, field: str, value: Any) -> ValueError:
    return ValueError(f"{where}.{field}={value!r} is not supported by lnemo")


def _read_rope(d: dict[str, Any]) -> tuple[float, RopeScaling | None]:
    params = d.get("rope_parameters")
    if params is not None:
        theta = params.get("rope_theta", d.get("rope_theta", 10000.0))
        scaling = params
    else:
        theta = d.get("rope_theta", 10000.0)
        scaling = d.get("rope_scaling")
    if scaling is None:
        return float(theta), None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return float(theta), None
    if kind != "llama3":
        raise ValueError(f"config.rope_scaling.rope_type={kind!r} is not supported (only 'llama3' and 'default')")
    return float(theta), RopeScaling(
        factor=float(scaling["factor"]), low_freq_factor=float(scaling["low_freq_factor"]),
        high_freq_factor=float(scaling["high_freq_factor"]),
        original_max_position_embeddings=int(scaling["original_max_position_embeddings"]))


def _read_block(i: int, entry: dict[str, Any], num_heads: int, hidden_size: int) -> BlockConfig:
    att, ffn = entry.get("attention", {}), entry.get("ffn", {})
    where = f"block_configs[{i}].attention"
    for field in ("window_length", "num_sink_tokens", "sparsify"):
        if att.get(field) is not None:
            raise _reject(where, field, att[field])
    for field in ("unshifted_sink", "use_prefill_window_in_sink_attention"):
        if att.get(field):
            raise _reject(where, field, att[field])
    for field in ("mamba", "llama4", "moe"):
        if att.get(field) is not None or ffn.get(field) is not None:
            raise _reject(f"block_configs[{i}]", field, att.get(field, ffn.get(field)))
    if att.get("no_op") and att.get("replace_with_linear"):
        raise ValueError(f"{where}: no_op and replace_with_linear are both true")
    if att.get("no_op"):
        attention = AttentionConfig.none()
    elif att.get("replace_with_linear"):
        attention = AttentionConfig.linear()
    else:
        group = att.get("n_heads_in_group")
        if "num_key_value_heads" in att and att["num_key_value_heads"] is not None:
            kv = int(att["num_key_value_heads"])
        else:
            if not isinstance(group, int) or group <= 0 or num_heads % group:
                raise ValueError(f"{where}.n_heads_in_group={group!r} must be a positive divisor of "
                                 f"num_attention_heads={num_heads}")
            kv = num_heads // group
        attention = AttentionConfig.gqa(kv)
    where = f"block_configs[{i}].ffn"
    if ffn.get("sparsify") is not None:
        raise _reject(where, "sparsify", ffn["sparsify"])
    if ffn.get("gated") is False:
        raise _reject(where, "gated", False)
    if ffn.get("hidden_act", "silu") != "silu":
        raise _reject(where, "hidden_act", ffn["hidden_act"])
    if ffn.get("no_op") and ffn.get("replace_with_linear"):
        raise ValueError(f"{where}: no_op and replace_with_linear are both true")
    if ffn.get("no_op"):
        feed = FFNConfig.none()
    elif ffn.get("replace_with_linear"):
        feed = FFNConfig.linear()
    elif ffn.get("intermediate_size") is not None:
        feed = FFNConfig.swiglu(int(ffn["intermediate_size"]))
    elif ffn.get("ffn_mult") is not None:
        feed = FFNConfig.swiglu(ffn_mult_to_intermediate_size(ffn["ffn_mult"], hidden_size))
    else:
        raise ValueError(f"{where} has neither ffn_mult nor intermediate_size")
    return BlockConfig(attention, feed)


def from_hf_config(d: dict[str, Any], **overrides: Any) -> ModelConfig:
    """Build a ``ModelConfig`` from a Hugging Face ``config.json`` dict (Llama or nemotron-nas).

    Raises ``ValueError`` naming the field for anything lnemo does not implement (biases, other activations,
    other RoPE types, attention windows, sinks, sparsity, MoE/Mamba sub-blocks).
    """
    model_type = d.get("model_type")
    if model_type not in ("llama", "nemotron-nas"):
        raise ValueError(f"config.model_type={model_type!r} is not supported (expected 'llama' or 'nemotron-nas')")
    for field in ("attention_bias", "mlp_bias"):
        if d.get(field):
            raise _reject("config", field, d[field])
    if d.get("hidden_act", "silu") != "silu":
        raise _reject("config", "hidden_act", d["hidden_act"])
    if d.get("sliding_window") is not None:
        raise _reject("config", "sliding_window", d["sliding_window"])
    hidden, heads, layers = int(d["hidden_size"]), int(d["num_attention_heads"]), int(d["num_hidden_layers"])
    if model_type == "llama":
        kv = int(d.get("num_key_value_heads") or heads)
        blocks = (BlockConfig.llama(kv, int(d["intermediate_size"])),) * layers
    else:
        entries = d.get("block_configs")
        if not isinstance(entries, list) or len(entries) != layers:
            raise ValueError(f"config.block_configs has {None if entries is None else len(entries)} entries, "
                             f"num_hidden_layers={layers}")
        blocks = tuple(_read_block(i, e, heads, hidden) for i, e in enumerate(entries))
    theta, scaling = _read_rope(d)
    dtype = _DTYPE_NAMES.get(str(d.get("torch_dtype", d.get("dtype", "float32"))), "float32")
    eos = d.get("eos_token_id")
    kwargs: dict[str, Any] = dict(
        vocab_size=int(d["vocab_size"]), hidden_size=hidden, num_heads=heads, blocks=blocks,
        head_dim=d.get("head_dim"), rope_theta=theta, rope_scaling=scaling,
        rms_norm_eps=float(d.get("rms_norm_eps", 1e-5)), tie_embeddings=bool(d.get("tie_word_embeddings", False)),
        max_position_embeddings=int(d.get("max_position_embeddings", 131072)), param_dtype=dtype,
        bos_token_id=d.get("bos_token_id"), eos_token_id=tuple(eos) if isinstance(eos, list) else eos)
    if kwargs["head_dim"] is not None and kwargs["head_dim"] * heads == hidden:
        kwargs["head_dim"] = None
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def is_homogeneous_llama(config: ModelConfig) -> bool:
    """True when every layer is GQA with the same KV heads and one SwiGLU of the same width."""
    first = config.blocks[0]
    return (first.attention.kind == "gqa" and first.ffn.kind == "swiglu"
            and len(first.ffn.intermediate_sizes) == 1 and all(b == first for b in config.blocks))


def _common(config: ModelConfig) -> dict[str, Any]:
    rope: dict[str, Any] | None = None
    if config.rope_scaling is not None:
        s = config.rope_scaling
        rope = {"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
                "high_freq_factor": s.high_freq_factor,
                "original_max_position_embeddings": s.original_max_position_embeddings}
    eos = config.eos_token_id
    return {
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "num_attention_heads": config.num_heads, "num_hidden_layers": config.num_layers,
        "head_dim": config.head_size, "hidden_act": "silu", "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta, "rope_scaling": rope, "attention_bias": False, "mlp_bias": False,
        "tie_word_embeddings": config.tie_embeddings, "max_position_embeddings": config.max_position_embeddings,
        "torch_dtype": config.param_dtype, "bos_token_id": config.bos_token_id,
        "eos_token_id": list(eos) if isinstance(eos, tuple) else eos, "initializer_range": 0.02,
        "use_cache": True, "pretraining_tp": 1, "attention_dropout": 0.0,
    }


def to_hf_config(config: ModelConfig, *, force_nemotron_nas: bool = False) -> dict[str, Any]:
    """A ``config.json`` dict: ``LlamaForCausalLM`` when homogeneous, else nemotron-nas ``DeciLMForCausalLM``.

    Parallel SwiGLU branches are written as one fused FFN of the summed width (``hf.save`` fuses the weights
    to match). ``ffn_mult`` is written when the width is a multiple of 256 (exact inverse of the rounding
    rule), else null; ``intermediate_size`` is always written per block.
    """
    d = _common(config)
    if is_homogeneous_llama(config) and not force_nemotron_nas:
        b = config.blocks[0]
        d.update(architectures=["LlamaForCausalLM"], model_type="llama",
                 num_key_value_heads=b.attention.num_kv_heads, intermediate_size=b.ffn.intermediate_size)
        return d
    entries = []
    for b in config.blocks:
        att, ffn = b.attention, b.ffn
        entries.append({
            "attention": {"no_op": att.kind == "none", "replace_with_linear": att.kind == "linear",
                          "n_heads_in_group": config.num_heads // att.num_kv_heads if att.kind == "gqa" else None,
                          "window_length": None, "num_sink_tokens": None, "sparsify": None,
                          "unshifted_sink": False, "use_prefill_window_in_sink_attention": False},
            "ffn": {"no_op": ffn.kind == "none", "replace_with_linear": ffn.kind == "linear",
                    "ffn_mult": (intermediate_size_to_ffn_mult(ffn.intermediate_size, config.hidden_size)
                                 if ffn.kind == "swiglu" and ffn.intermediate_size % 256 == 0 else None),
                    "intermediate_size": ffn.intermediate_size if ffn.kind == "swiglu" else None,
                    "sparsify": None},
        })
    d.update(architectures=["DeciLMForCausalLM"], model_type="nemotron-nas", num_key_value_heads=None,
             intermediate_size=None, block_configs=entries,
             auto_map={"AutoConfig": "configuration_decilm.DeciLMConfig",
                       "AutoModelForCausalLM": "modeling_decilm.DeciLMForCausalLM"})
    return d
