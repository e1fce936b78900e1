"""The explicit KV cache: one entry per layer, ``None`` for layers without (GQA) attention.

Every sequence of a batch writes to the same slots (``end`` is shared); slots are masked by a per-slot
segment id (0 = empty or padding), so left-padded prompts and packed prompts share one mechanism.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from lnemo.models.config import ModelConfig
from lnemo.types import Array


class LayerCache(NamedTuple):
    """Cached keys and values of one attention layer.

    Attributes:
      k: keys, ``[B, S, G, Hd]`` (S = capacity in tokens, G = this layer's KV heads).
      v: values, ``[B, S, G, Hd]``.
      segment_ids: ``[B, S]`` int32 segment of each slot; 0 marks an empty or padded slot.
      end: scalar int32, number of slots written so far.
    """

    k: Array
    v: Array
    segment_ids: Array
    end: Array


Cache = tuple[LayerCache | None, ...]


def init_cache(config: ModelConfig, batch: int, max_len: int, *, dtype: jnp.dtype | str | None = None) -> Cache:
    """An empty cache with room for ``max_len`` tokens per sequence.

    Args:
      config: the model.
      batch: number of sequences B.
      max_len: capacity S in tokens (prompt plus generated tokens).
      dtype: storage dtype of keys and values; the model's compute dtype by default.

    Returns:
      A tuple with one ``LayerCache`` per GQA layer (each with that layer's KV-head count) and ``None``
      for linear or absent attention.
    """
    if batch <= 0 or max_len <= 0:
        raise ValueError(f"init_cache needs batch > 0 and max_len > 0, got batch={batch}, max_len={max_len}")
    dtype = jnp.dtype(dtype or config.dtype)
    out: list[LayerCache | None] = []
    for block in config.blocks:
        if block.attention.kind != "gqa":
            out.append(None)
            continue
        shape = (batch, max_len, block.attention.num_kv_heads, config.head_size)
        out.append(LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype),
                              jnp.zeros((batch, max_len), jnp.int32), jnp.zeros((), jnp.int32)))
    return tuple(out)


def cache_end(cache: Cache) -> Array | None:
    """The shared write position of a cache (None when no layer caches anything)."""
    for entry in cache:
        if entry is not None:
            return entry.end
    return None
