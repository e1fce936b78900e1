"""Analytic cost model: parameters, weight bytes, FLOPs per token and KV-cache bytes, per block and per model.

Conventions (documented so predictions can be checked against measurements):

* Parameters count every weight, norms included: GQA attention ``D*Hd*(2H + 2G) + D``; linear attention or
  linear FFN ``D^2 + D``; each SwiGLU branch ``3*D*I + D``; no-op 0; non-block ``V*D`` (embedding)
  ``+ V*D`` (untied LM head) ``+ D`` (final norm).
* FLOPs are matmul FLOPs (2 per multiply-add). A token's forward costs ``2 * (block matmul weights + D*V)``
  plus, per GQA layer, ``4 * H * Hd * context`` for scores and the weighted sum. Prefill of T tokens uses
  ``context = T`` for every token (lnemo computes the full masked T x T score matrix, as PaLM's MFU
  convention counts it); a decode step at context c uses ``context = c``. Training is 3x the forward.
* KV-cache bytes per token: per GQA layer ``2 * G * Hd * sizeof(kv dtype)``; 0 for linear and no-op.

References:
  Puzzle (arXiv 2411.19146) §3 and the resource table of lnemo's methods sheet §6.5;
  Chowdhery et al., PaLM (2022), Appendix B (MFU).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from lnemo.models.config import BlockConfig, ModelConfig


@dataclass(frozen=True)
class BlockCost:
    """Costs of one layer.

    Attributes:
      params: parameter count (norms included).
      matmul_params: weights that take part in a matmul per token (norm gains excluded).
      attention_width: ``H * Hd`` of a GQA layer, else 0 (scales the context-dependent FLOPs).
      kv_elements_per_token: cached K and V elements per token (``2 * G * Hd``), 0 without GQA.
    """

    params: int
    matmul_params: int
    attention_width: int
    kv_elements_per_token: int

    def flops_per_token(self, context: int) -> int:
        """Forward matmul FLOPs of one token attending to ``context`` positions."""
        return 2 * self.matmul_params + 4 * self.attention_width * context

    def kv_bytes_per_token(self, dtype: jnp.dtype | str = "bfloat16") -> int:
        return self.kv_elements_per_token * jnp.dtype(dtype).itemsize


def block_cost(config: ModelConfig, block: BlockConfig) -> BlockCost:
    """The cost of ``block`` inside a model shaped like ``config``."""
    d, h, hd = config.hidden_size, config.num_heads, config.head_size
    params = matmul = width = kv = 0
    att, ffn = block.attention, block.ffn
    if att.kind == "gqa":
        g = att.num_kv_heads
        matmul += d * hd * (2 * h + 2 * g)
        params += d * hd * (2 * h + 2 * g) + d
        width = h * hd
        kv = 2 * g * hd
    elif att.kind == "linear":
        matmul += d * d
        params += d * d + d
    if ffn.kind == "swiglu":
        for i in ffn.intermediate_sizes:
            matmul += 3 * d * i
            params += 3 * d * i + d
    elif ffn.kind == "linear":
        matmul += d * d
        params += d * d + d
    return BlockCost(params, matmul, width, kv)


def layer_costs(config: ModelConfig) -> tuple[BlockCost, ...]:
    """``block_cost`` of every layer."""
    return tuple(block_cost(config, b) for b in config.blocks)


def non_block_params(config: ModelConfig) -> int:
    """Embedding, LM head (when untied) and final norm."""
    vd = config.vocab_size * config.hidden_size
    return vd * (1 if config.tie_embeddings else 2) + config.hidden_size


def param_count(config: ModelConfig) -> int:
    """Total parameters. Llama-3.1-8B: 8,030,261,248; Llama-3.3-70B: 70,553,706,496."""
    return non_block_params(config) + sum(c.params for c in layer_costs(config))


def weight_bytes(config: ModelConfig, dtype: jnp.dtype | str | None = None) -> int:
    """Bytes of all weights stored in ``dtype`` (the config's ``param_dtype`` by default)."""
    return param_count(config) * jnp.dtype(dtype or config.param_dtype).itemsize


def forward_flops_per_token(config: ModelConfig, context: int) -> int:
    """Forward FLOPs of one token attending to ``context`` positions, LM head included."""
    head = 2 * config.hidden_size * config.vocab_size
    return head + sum(c.flops_per_token(context) for c in layer_costs(config))


def prefill_flops_per_token(config: ModelConfig, seq_len: int) -> int:
    """Forward FLOPs per token of a full sequence of ``seq_len`` tokens (full score matrix)."""
    return forward_flops_per_token(config, seq_len)


def decode_flops_per_token(config: ModelConfig, context: int) -> int:
    """FLOPs of one decode step for one sequence whose cache holds ``context`` positions."""
    return forward_flops_per_token(config, context)


def train_flops_per_token(config: ModelConfig, seq_len: int) -> int:
    """Forward + backward FLOPs per token (3x the forward)."""
    return 3 * prefill_flops_per_token(config, seq_len)


def kv_bytes_per_token(config: ModelConfig, dtype: jnp.dtype | str = "bfloat16") -> int:
    """KV-cache bytes one cached token costs across all layers."""
    return sum(c.kv_bytes_per_token(dtype) for c in layer_costs(config))


def decode_bytes_per_step(config: ModelConfig, *, batch: int, context: int,
                          weight_dtype: jnp.dtype | str | None = None,
                          kv_dtype: jnp.dtype | str | None = None) -> int:
    """Bytes a decode step must read: every matmul weight once plus each sequence's KV cache.

    The cache read is the full capacity ``context`` (lnemo's decode attends over the whole cache buffer).
    """
    wdt = jnp.dtype(weight_dtype or config.param_dtype).itemsize
    matmul = sum(c.matmul_params for c in layer_costs(config)) + config.hidden_size * config.vocab_size
    return matmul * wdt + batch * context * kv_bytes_per_token(config, kv_dtype or config.dtype)


def layer_table(config: ModelConfig, *, context: int, kv_dtype: jnp.dtype | str = "bfloat16") -> list[dict]:
    """One row per layer: index, description, params, KV bytes/token and FLOPs/token at ``context``."""
    return [
        {"layer": i, "block": b.describe(), "params": c.params, "kv_bytes_per_token": c.kv_bytes_per_token(kv_dtype),
         "flops_per_token": c.flops_per_token(context)}
        for i, (b, c) in enumerate(zip(config.blocks, layer_costs(config)))
    ]
