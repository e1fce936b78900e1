"""Batched autoregressive generation: one jitted prefill plus a ``lax.while_loop`` decode over the KV cache.

Prompts of different lengths are **left-aligned into the right edge** of a ``[B, P]`` buffer (left
padding): padding slots get segment id 0 (never attended) and each prompt's positions start at 0 at its
first real token, so every row continues from its own length while the cache keeps one shared write
position. Layers without attention (``linear`` / ``none``) hold no cache and need nothing else.

Two log-probabilities come back per generated token:

- ``logprobs``: the **raw model**, ``log softmax(z)_y`` of the untransformed logits (temperature 1, no
  top-k/top-p): what GRPO's ratio and KL terms use;
- ``sampler_logprobs``: the distribution actually sampled from (after temperature, top-k, top-p; 0 for
  greedy): what an importance-sampling correction for the sampler needs.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from lnemo.generate.samplers import Greedy, Sampler
from lnemo.losses import token_logprobs
from lnemo.models import ModelConfig, forward, init_cache
from lnemo.sharding import batch_sharding
from lnemo.types import Array, PRNGKey, PyTree


class GenerateOutput(NamedTuple):
    """What ``generate`` returns; rows are ``B * num_samples``, sample ``g`` of prompt ``b`` at row ``b * G + g``.

    Attributes:
      tokens: ``[B*G, N]`` int32 generated ids; the stop token is included, ``pad_id`` after it.
      logprobs: ``[B*G, N]`` float32 raw-model log-probability of each generated token (0 after the end).
      sampler_logprobs: ``[B*G, N]`` float32 log-probability under the sampling distribution (0 after the end).
      lengths: ``[B*G]`` int32 number of generated tokens, the stop token included.
      stopped: ``[B*G]`` bool, True when the row ended on an EOS id or a stop sequence (False: length limit).
    """

    tokens: Array
    logprobs: Array
    sampler_logprobs: Array
    lengths: Array
    stopped: Array


def left_align(prompts_BxP: Array, *, where: Array) -> tuple[Array, Array]:
    """Move each row's real tokens to the right edge, in order (any padding becomes left padding).

    Args:
      prompts_BxP: int token ids.
      where: bool ``[B, P]``, True at real prompt tokens (they need not be contiguous).

    Returns:
      ``(prompts_BxP, where_BxP)`` left-padded; padding ids are 0.

    Example:
      >>> left_align(jnp.array([[5, 6, 0]]), where=jnp.array([[True, True, False]]))[0]
      Array([[0, 5, 6]], dtype=int32)
    """
    where = jnp.asarray(where, bool)
    order_BxP = jnp.argsort(where, axis=-1, stable=True)  # padding (False) first, real tokens keep their order
    prompts_BxP = jnp.take_along_axis(jnp.asarray(prompts_BxP, jnp.int32), order_BxP, axis=-1)
    where_BxP = jnp.take_along_axis(where, order_BxP, axis=-1)
    return jnp.where(where_BxP, prompts_BxP, 0), where_BxP


def generate(config: ModelConfig, params: PyTree, prompts_BxP: Array, key: PRNGKey, *, where: Array | None = None,
             max_new_tokens: int, sampler: Sampler = Greedy(), num_samples: int = 1,
             eos_ids: Sequence[int] = (), stop_sequences: Sequence[Sequence[int]] = (), pad_id: int = 0,
             cache_dtype: str | None = None, mesh: Mesh | None = None) -> GenerateOutput:
    """Sample ``num_samples`` continuations of every prompt with a KV cache; jitted, one compilation per shape.

    Step ``i`` feeds token ``i - 1`` at position ``L_b + i - 1`` (``L_b`` = prompt length of row ``b``) and
    draws token ``i`` with ``sampler``; the prefill draws token 0. A row stops after emitting an id in
    ``eos_ids`` or the last token of any ``stop_sequences`` entry, or after ``max_new_tokens``; the loop
    exits as soon as every row has stopped. The result depends only on ``key`` (not on batch
    composition or sharding): row ``r`` draws with ``fold_in(fold_in(key, r), i)``.

    Compilation is cached on the shapes (including the number of EOS ids and the number and longest
    length of stop sequences) and on the static settings (config, sampler, N, G, pad id, mesh); EOS and
    stop ids themselves are data. Samplers are frozen dataclasses, so equal settings reuse the program.

    Args:
      config: the model.
      params: its parameters.
      prompts_BxP: int prompt ids.
      key: PRNG key.
      where: bool ``[B, P]``, True at real prompt tokens (left, right or no padding); default all True.
        Every row needs at least one real token.
      max_new_tokens: N, the most tokens generated per row.
      sampler: ``(logits_BxV, key) -> SamplerOutput`` (``Greedy()``, ``Categorical(...)``).
      num_samples: G continuations per prompt.
      eos_ids: ids that end a row (e.g. the end-of-turn token).
      stop_sequences: id sequences that end a row when generated consecutively.
      pad_id: id written after a row's end.
      cache_dtype: KV storage dtype; the model's compute dtype by default.
      mesh: when given, rows are sharded over the mesh axes of ``"batch"`` (``B * G`` must divide by them);
        parameters keep whatever sharding they have.

    Returns:
      ``GenerateOutput`` with ``[B*G, N]`` tokens and log-probs and ``[B*G]`` lengths.

    Example:
      >>> from lnemo.generate import Categorical, Temperature
      >>> from lnemo.models import init
      >>> cfg = ModelConfig.tiny()
      >>> params = init(cfg, jax.random.key(0))
      >>> out = generate(cfg, params, jnp.array([[1, 2, 3]]), jax.random.key(0), max_new_tokens=8,
      ...                sampler=Categorical(Temperature(0.7)), num_samples=4, eos_ids=(258,))
      >>> out.tokens.shape
      (4, 8)

    References:
      Kwon et al., "Efficient Memory Management for LLM Serving with PagedAttention", SOSP 2023 (KV caching).
      Shao et al., "DeepSeekMath", arXiv 2402.03300, §4.1 (G samples per prompt for GRPO).
    """
    prompts_BxP = jnp.asarray(prompts_BxP)
    if prompts_BxP.ndim != 2 or not jnp.issubdtype(prompts_BxP.dtype, jnp.integer):
        raise ValueError(f"prompts must be an integer array [B, P], got shape {prompts_BxP.shape} "
                         f"dtype {prompts_BxP.dtype}")
    where = jnp.ones(prompts_BxP.shape, bool) if where is None else jnp.asarray(where, bool)
    if where.shape != prompts_BxP.shape:
        raise ValueError(f"where shape {where.shape} must equal prompts shape {prompts_BxP.shape}")
    empty = [] if isinstance(where, jax.core.Tracer) else [int(r) for r in jnp.flatnonzero(~jnp.any(where, axis=-1))]
    if empty:
        raise ValueError(f"where marks no prompt token in rows {empty}; every row needs at least one")
    if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 1")
    if not (isinstance(num_samples, int) and num_samples >= 1):
        raise ValueError(f"num_samples={num_samples!r} must be an integer >= 1")
    stops = tuple(tuple(int(t) for t in s) for s in stop_sequences)
    if any(len(s) == 0 for s in stops):
        raise ValueError(f"stop_sequences={stop_sequences!r} must not contain an empty sequence")
    window = max((len(s) for s in stops), default=1)
    # Stop sequences right-aligned in a [S, W] table; -2 is a wildcard, so only shapes (not ids) are static.
    stops_SxW = jnp.array([[_WILDCARD] * (window - len(s)) + list(s) for s in stops] or [[_WILDCARD]], jnp.int32)
    eos_E = jnp.array([int(e) for e in eos_ids] or [_NEVER], jnp.int32)
    run = functools.partial(_generate, config, max_new_tokens=max_new_tokens, sampler=sampler,
                            num_samples=num_samples, pad_id=int(pad_id), cache_dtype=cache_dtype, mesh=mesh,
                            has_stops=bool(stops))
    if mesh is None:
        return run(params, prompts_BxP, where, key, eos_E, stops_SxW)
    with jax.set_mesh(mesh):
        return run(params, prompts_BxP, where, key, eos_E, stops_SxW)


_WILDCARD = -2
_NEVER = -3


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=(
    "max_new_tokens", "sampler", "num_samples", "pad_id", "cache_dtype", "mesh", "has_stops"))
def _generate(config: ModelConfig, params: PyTree, prompts_BxP: Array, where_BxP: Array, key: PRNGKey,
              eos_E: Array, stops_SxW: Array, *, max_new_tokens: int, sampler: Sampler, num_samples: int,
              pad_id: int, cache_dtype: str | None, mesh: Mesh | None, has_stops: bool) -> GenerateOutput:
    shard = (lambda x: x) if mesh is None else (lambda x: jax.lax.with_sharding_constraint(x, batch_sharding(mesh)))
    prompts_BxP, where_BxP = left_align(prompts_BxP, where=where_BxP)
    prompts_BxP = shard(jnp.repeat(prompts_BxP, num_samples, axis=0))
    where_BxP = shard(jnp.repeat(where_BxP, num_samples, axis=0))
    b, p = prompts_BxP.shape
    n = max_new_tokens
    lengths_B = jnp.sum(where_BxP, axis=-1).astype(jnp.int32)
    positions_BxP = jnp.maximum(jnp.arange(p, dtype=jnp.int32)[None] - (p - lengths_B)[:, None], 0)
    row_keys_B = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(b))
    window = stops_SxW.shape[1]

    def draw(logits_BxV: Array, i: Array) -> tuple[Array, Array, Array]:
        keys_B = jax.vmap(lambda k: jax.random.fold_in(k, i))(row_keys_B)
        # One key per row: split the batch draw into per-row draws so results do not depend on B.
        out = jax.vmap(lambda z, k: sampler(z[None], k))(logits_BxV, keys_B)
        tokens_B = out.tokens[:, 0]
        return tokens_B, token_logprobs(logits_BxV, tokens_B), out.logprobs[:, 0]

    cache = init_cache(config, b, p + n, dtype=cache_dtype)
    prefill = forward(config, params, prompts_BxP, positions=positions_BxP, segment_ids=where_BxP.astype(jnp.int32),
                      cache=cache)
    first = draw(prefill.logits[:, -1], jnp.int32(0))

    def record(state: dict, i: Array, drawn: tuple[Array, Array, Array]) -> dict:
        tokens_B, logp_B, samp_B = drawn
        live_B = ~state["done"]
        recent_BxW = jnp.concatenate([state["recent"][:, 1:], tokens_B[:, None]], axis=-1)
        stop_B = jnp.any(tokens_B[:, None] == eos_E[None], axis=-1)
        if has_stops:
            hit_BxSxW = (recent_BxW[:, None] == stops_SxW[None]) | (stops_SxW[None] == _WILDCARD)
            stop_B |= jnp.any(jnp.all(hit_BxSxW, axis=-1), axis=-1)
        put = lambda buf, x, fill: buf.at[:, i].set(jnp.where(live_B, x, fill))  # noqa: E731
        return dict(state, tokens=put(state["tokens"], tokens_B, pad_id), logprobs=put(state["logprobs"], logp_B, 0.0),
                    sampler_logprobs=put(state["sampler_logprobs"], samp_B, 0.0), recent=recent_BxW,
                    lengths=state["lengths"] + live_B, done=state["done"] | (live_B & stop_B),
                    stopped=state["stopped"] | (live_B & stop_B), last=tokens_B)

    zeros = jnp.zeros((b, n), jnp.float32)
    state = dict(i=jnp.int32(1), cache=prefill.cache, tokens=shard(jnp.full((b, n), pad_id, jnp.int32)),
                 logprobs=shard(zeros), sampler_logprobs=shard(zeros), recent=jnp.full((b, window), -1, jnp.int32),
                 lengths=jnp.zeros((b,), jnp.int32), done=jnp.zeros((b,), bool), stopped=jnp.zeros((b,), bool),
                 last=jnp.zeros((b,), jnp.int32))
    state = record(state, jnp.int32(0), first)

    def cond(state: dict) -> Array:
        return (state["i"] < n) & ~jnp.all(state["done"])

    def body(state: dict) -> dict:
        i = state["i"]
        out = forward(config, params, state["last"][:, None], positions=(lengths_B + i - 1)[:, None],
                      segment_ids=jnp.ones((b, 1), jnp.int32), cache=state["cache"])
        state = record(dict(state, cache=out.cache), i, draw(out.logits[:, 0], i))
        return dict(state, i=i + 1)

    state = jax.lax.while_loop(cond, body, state)
    return GenerateOutput(state["tokens"], state["logprobs"], state["sampler_logprobs"], state["lengths"],
                          state["stopped"])
