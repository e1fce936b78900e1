"""Causal grouped-query attention with RoPE.

The linear replacement is ``layers.NormLinear``; a layer whose attention is ``"none"`` has no module at all
(see ``transformer.Block``).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from lnemo.models.cache import LayerCache
from lnemo.models.config import ModelConfig
from lnemo.models.layers import RMSNorm, apply_rope, dense_init, param, project, rope_inverse_frequencies
from lnemo.sharding import constrain
from lnemo.types import Array

_MASKED = -1e30
#: Query-block length of causal self-attention without a cache: block i attends only to keys < its end, so
#: about half of the T x T score matrix is never computed.
CAUSAL_BLOCK = 128


def attention_mask(q_segment_BxT: Array, kv_segment_BxS: Array, q_slot_T: Array, kv_slot_S: Array) -> Array:
    """Boolean ``[B, T, S]`` mask: causal by slot, same segment, and the key slot is not padding (segment 0)."""
    causal_TxS = kv_slot_S[None, :] <= q_slot_T[:, None]
    same_BxTxS = q_segment_BxT[:, :, None] == kv_segment_BxS[:, None, :]
    return causal_TxS[None] & same_BxTxS & (kv_segment_BxS[:, None, :] != 0)


def dot_product_attention(q_BxTxHxHd: Array, k_BxSxGxHd: Array, v_BxSxGxHd: Array, mask_BxTxS: Array,
                          dtype: jnp.dtype) -> Array:
    """Softmax attention for grouped queries (H = G * R); scores and softmax in float32.

    Fully masked query rows (padding) get a uniform distribution instead of NaN.
    """
    b, t, h, hd = q_BxTxHxHd.shape
    g = k_BxSxGxHd.shape[2]
    q = q_BxTxHxHd.reshape(b, t, g, h // g, hd)
    scores = jnp.einsum("btgrd,bsgd->bgrts", q.astype(dtype), k_BxSxGxHd.astype(dtype),
                        preferred_element_type=jnp.float32) / math.sqrt(hd)
    scores = jnp.where(mask_BxTxS[:, None, None], scores, _MASKED)
    probs = jax.nn.softmax(scores, axis=-1)
    out = jnp.einsum("bgrts,bsgd->btgrd", probs.astype(dtype), v_BxSxGxHd.astype(dtype),
                     preferred_element_type=jnp.float32)
    return out.astype(dtype).reshape(b, t, h, hd)


def blocked_causal_attention(q_BxTxHxHd: Array, k_BxTxGxHd: Array, v_BxTxGxHd: Array, mask_BxTxT: Array,
                             dtype: jnp.dtype, block: int = CAUSAL_BLOCK) -> Array:
    """Causal self-attention computed by query blocks that skip the keys after the block (exact)."""
    t = q_BxTxHxHd.shape[1]
    outs = []
    for start in range(0, t, block):
        end = min(start + block, t)
        outs.append(dot_product_attention(q_BxTxHxHd[:, start:end], k_BxTxGxHd[:, :end], v_BxTxGxHd[:, :end],
                                          mask_BxTxT[:, start:end, :end], dtype))
    return jnp.concatenate(outs, axis=1)


class Attention(nn.Module):
    """Pre-norm causal GQA with RoPE (llama3 scaling), no biases; returns the residual update and the cache.

    Parameters: ``norm.scale [D]``, ``q_proj [D, H, Hd]``, ``k_proj``/``v_proj [D, G, Hd]``, ``o_proj [H, Hd, D]``.
    """

    config: ModelConfig
    num_kv_heads: int

    @nn.compact
    def __call__(self, x_BxTxD: Array, positions_BxT: Array, segment_BxT: Array,
                 cache: LayerCache | None) -> tuple[Array, LayerCache | None]:
        c = self.config
        d, h, g, hd, dt, pdt = c.hidden_size, c.num_heads, self.num_kv_heads, c.head_size, c.compute_dtype, c.params_dtype
        x = RMSNorm(c.rms_norm_eps, pdt, name="norm")(x_BxTxD)
        wq = param(self, "q_proj", (d, h, hd), ("embed", "heads", "head_dim"), pdt, dense_init(d))
        wk = param(self, "k_proj", (d, g, hd), ("embed", "kv_heads", "head_dim"), pdt, dense_init(d))
        wv = param(self, "v_proj", (d, g, hd), ("embed", "kv_heads", "head_dim"), pdt, dense_init(d))
        wo = param(self, "o_proj", (h, hd, d), ("heads", "head_dim", "embed"), pdt, dense_init(h * hd))
        inv_freq = rope_inverse_frequencies(hd, c.rope_theta, c.rope_scaling)
        q = apply_rope(project(x, wq, "btd,dnh->btnh", dt), positions_BxT, inv_freq)
        k = apply_rope(project(x, wk, "btd,dnh->btnh", dt), positions_BxT, inv_freq)
        v = project(x, wv, "btd,dnh->btnh", dt)
        q = constrain(q, ("batch", "sequence", "heads", "head_dim"))
        t = x_BxTxD.shape[1]
        if cache is None:
            k_all, v_all, seg_all = k, v, segment_BxT
            q_slot = kv_slot = jnp.arange(t)
            new_cache = None
        else:
            end = cache.end
            k_all = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), (0, end, 0, 0))
            v_all = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), (0, end, 0, 0))
            seg_all = jax.lax.dynamic_update_slice(cache.segment_ids, segment_BxT.astype(jnp.int32), (0, end))
            q_slot = end + jnp.arange(t)
            kv_slot = jnp.arange(cache.k.shape[1])
            new_cache = LayerCache(k_all, v_all, seg_all, end + t)
        mask = attention_mask(segment_BxT, seg_all, q_slot, kv_slot)
        if cache is None and t > CAUSAL_BLOCK:
            out = blocked_causal_attention(q, k, v, mask, dt)
        else:
            out = dot_product_attention(q, k_all, v_all, mask, dt)
        y = project(out, wo, "btnh,nhd->btd", dt)
        return constrain(y, ("batch", "sequence", "embed")), new_cache

