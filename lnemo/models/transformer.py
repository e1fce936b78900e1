"""The heterogeneous decoder and its pure entry points ``init`` and ``forward``.

Layers run in a Python loop: no single ``scan`` fits layers of different shapes. Parameters are a plain
nested dict ``{"embed": ..., "layers_0": {"attn": ..., "ffn": ...}, ..., "final_norm": ..., "lm_head": ...}``
in which absent sub-blocks have no entry at all.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lnemo.models.attention import Attention
from lnemo.models.cache import Cache, LayerCache, cache_end
from lnemo.models.config import BlockConfig, ModelConfig
from lnemo.models.ffn import ParallelSwiGLU, SwiGLU
from lnemo.models.layers import NormLinear, RMSNorm, param, project
from lnemo.sharding import constrain
from lnemo.types import Array, PRNGKey, PyTree


class ModelOutput(NamedTuple):
    """What ``forward`` returns.

    Attributes:
      logits: ``[B, T, V]`` float32 next-token logits (None with ``skip_logits=True``).
      hidden: with ``return_hidden``, a tuple of L + 1 residual streams ``[B, T, D]``: the embeddings, then
        the output of each layer; otherwise None.
      cache: the updated cache when one was given, else None.
      final_hidden: ``[B, T, D]`` the last residual stream after the final RMSNorm (the LM head's input).
    """

    logits: Array | None
    hidden: tuple[Array, ...] | None
    cache: Cache | None
    final_hidden: Array


class Block(nn.Module):
    """One pre-norm decoder layer; each sub-block may be full, linear, or absent."""

    config: ModelConfig
    block: BlockConfig

    @nn.compact
    def __call__(self, x: Array, positions: Array, segment_ids: Array,
                 cache: LayerCache | None) -> tuple[Array, LayerCache | None]:
        att, ffn = self.block.attention, self.block.ffn
        if att.kind == "gqa":
            y, cache = Attention(self.config, att.num_kv_heads, name="attn")(x, positions, segment_ids, cache)
            x = x + y
        elif att.kind == "linear":
            x = x + NormLinear(self.config, "linear_attn", name="attn")(x)
        if ffn.kind == "swiglu":
            if len(ffn.intermediate_sizes) == 1:
                x = x + SwiGLU(self.config, ffn.intermediate_sizes[0], name="ffn")(x)
            else:
                x = x + ParallelSwiGLU(self.config, ffn.intermediate_sizes, name="ffn")(x)
        elif ffn.kind == "linear":
            x = x + NormLinear(self.config, "linear_mlp", name="ffn")(x)
        return constrain(x, ("batch", "sequence", "embed")), cache


class Decoder(nn.Module):
    """Embedding, the heterogeneous layer stack, final RMSNorm and LM head."""

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens_BxT: Array, positions_BxT: Array, segment_BxT: Array, cache: Cache | None,
                 return_hidden: bool, skip_logits: bool) -> ModelOutput:
        c = self.config
        embedding = param(self, "embedding", (c.vocab_size, c.hidden_size), ("vocab", "embed"),
                          c.params_dtype, nn.initializers.normal(stddev=0.02))
        x = jnp.take(embedding, tokens_BxT, axis=0).astype(c.compute_dtype)
        x = constrain(x, ("batch", "sequence", "embed"))
        hidden = [x] if return_hidden else None
        block_cls = nn.remat(Block) if c.remat else Block
        new_cache: list[LayerCache | None] = []
        for i, block in enumerate(c.blocks):
            layer_cache = None if cache is None else cache[i]
            x, layer_cache = block_cls(c, block, name=f"layers_{i}")(x, positions_BxT, segment_BxT, layer_cache)
            new_cache.append(layer_cache)
            if hidden is not None:
                hidden.append(x)
        x = RMSNorm(c.rms_norm_eps, c.params_dtype, name="final_norm")(x)
        logits = None
        if not skip_logits:
            if c.tie_embeddings:
                kernel = embedding.T
            else:
                kernel = param(self, "lm_head", (c.hidden_size, c.vocab_size), ("embed", "vocab"),
                               c.params_dtype, nn.initializers.normal(stddev=c.hidden_size ** -0.5))
            logits = jnp.einsum("btd,dv->btv", x.astype(c.compute_dtype), kernel.astype(c.compute_dtype),
                                preferred_element_type=jnp.float32)
            logits = constrain(logits, ("batch", "sequence", "vocab"))
        return ModelOutput(logits, None if hidden is None else tuple(hidden),
                           None if cache is None else tuple(new_cache), x)


def _check_inputs(config: ModelConfig, tokens: Array, positions: Array | None, segment_ids: Array | None,
                  cache: Cache | None) -> None:
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"tokens must be an integer array [B, T], got shape {tokens.shape} dtype {tokens.dtype}")
    for name, arr in (("positions", positions), ("segment_ids", segment_ids)):
        if arr is not None and tuple(arr.shape) != tuple(tokens.shape):
            raise ValueError(f"{name} shape {tuple(arr.shape)} must equal tokens shape {tuple(tokens.shape)}")
    if cache is not None:
        if len(cache) != config.num_layers:
            raise ValueError(f"cache has {len(cache)} entries but the model has {config.num_layers} layers")
        for i, (entry, block) in enumerate(zip(cache, config.blocks)):
            wants = block.attention.kind == "gqa"
            if wants != (entry is not None):
                raise ValueError(f"cache[{i}] is {'None' if entry is None else 'a LayerCache'} but layer {i} "
                                 f"has attention {block.attention.describe()}")
            if entry is not None:
                if entry.k.shape[0] != tokens.shape[0]:
                    raise ValueError(f"cache[{i}] batch {entry.k.shape[0]} != tokens batch {tokens.shape[0]}")
                if entry.k.shape[2] != block.attention.num_kv_heads:
                    raise ValueError(f"cache[{i}] has {entry.k.shape[2]} KV heads, layer {i} has "
                                     f"{block.attention.num_kv_heads}")
                if tokens.shape[1] > entry.k.shape[1]:
                    raise ValueError(f"{tokens.shape[1]} tokens do not fit a cache of capacity {entry.k.shape[1]}")


def forward(config: ModelConfig, params: PyTree, tokens: Array, *, positions: Array | None = None,
            segment_ids: Array | None = None, cache: Cache | None = None, return_hidden: bool = False,
            skip_logits: bool = False) -> ModelOutput:
    """Run the decoder.

    Args:
      config: the model.
      params: the parameter pytree from ``init`` (or an HF import).
      tokens: ``[B, T]`` int token ids.
      positions: ``[B, T]`` RoPE positions; default ``0..T-1``, or continuing from the cache's end.
      segment_ids: ``[B, T]`` int segment of each token for packed rows; tokens attend only within their
        segment; 0 marks padding (padding tokens attend to nothing and are attended by nothing). Default:
        every token in segment 1.
      cache: per-layer cache from ``init_cache``; the new keys/values are written at its ``end`` and the
        updated cache returned. Prefill and multi-token decode are the same call.
      return_hidden: also return every layer's residual stream (for distillation).
      skip_logits: do not compute logits (losses that chunk the LM head use ``final_hidden``).

    Returns:
      ``ModelOutput(logits [B, T, V] float32, hidden, cache, final_hidden)``. If a cache would overflow its
      capacity, the logits are NaN (the write position cannot be checked at trace time).

    Example:
      >>> cfg = ModelConfig.tiny()
      >>> params = init(cfg, jax.random.key(0))
      >>> forward(cfg, params, jnp.zeros((2, 8), jnp.int32)).logits.shape
      (2, 8, 272)
    """
    tokens = jnp.asarray(tokens)
    _check_inputs(config, tokens, positions, segment_ids, cache)
    b, t = tokens.shape
    end = None if cache is None else cache_end(cache)
    if positions is None:
        start = 0 if end is None else end
        positions = jnp.broadcast_to(start + jnp.arange(t, dtype=jnp.int32), (b, t))
    if segment_ids is None:
        segment_ids = jnp.ones((b, t), jnp.int32)
    out = Decoder(config).apply({"params": params}, tokens, positions, segment_ids, cache, return_hidden,
                                skip_logits)
    if end is not None and out.logits is not None:
        capacity = next(e.k.shape[1] for e in cache if e is not None)
        out = out._replace(logits=jnp.where(end + t > capacity, jnp.nan, out.logits))
    return out


def _boxed_init(config: ModelConfig, key: PRNGKey) -> PyTree:
    tokens = jnp.zeros((1, 1), jnp.int32)
    ones = jnp.ones((1, 1), jnp.int32)
    return Decoder(config).init(key, tokens, ones * 0, ones, None, False, False)["params"]


def init(config: ModelConfig, key: PRNGKey) -> PyTree:
    """Fresh parameters: a plain nested dict of arrays in ``config.param_dtype``."""
    return nn.meta.unbox(_boxed_init(config, key))


def param_logical_axes(config: ModelConfig) -> PyTree:
    """Logical axis names of every parameter: same structure as ``init``'s, leaves are tuples of names."""
    boxed = jax.eval_shape(lambda: _boxed_init(config, jax.random.key(0)))
    specs = nn.get_partition_spec(boxed)
    return jax.tree.map(lambda s: tuple(s), specs, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))


def abstract_params(config: ModelConfig) -> PyTree:
    """``jax.ShapeDtypeStruct`` of every parameter, without allocating."""
    return jax.eval_shape(lambda: init(config, jax.random.key(0)))


def lm_head_kernel(config: ModelConfig, params: PyTree) -> Array:
    """The ``[D, V]`` LM-head kernel (the transposed embedding when embeddings are tied)."""
    return params["embedding"].T if config.tie_embeddings else params["lm_head"]


def logits_from_hidden(config: ModelConfig, params: PyTree, final_hidden_BxTxD: Array) -> Array:
    """Float32 logits from ``ModelOutput.final_hidden`` (what ``forward`` computes when not skipped)."""
    return project(final_hidden_BxTxD, lm_head_kernel(config, params), "btd,dv->btv", config.compute_dtype
                   ).astype(jnp.float32)
