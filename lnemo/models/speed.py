"""Measured and predicted speed of a model: prefill and decode-step times on the current device.

Puzzle's resource model uses runtimes *measured* per variant, batch size and phase on the target engine; an
analytic roofline is the fallback at toy scale. Both live here so examples, benchmarks and the architecture
search compare the same quantities.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from lnemo import perf
from lnemo.models import cost
from lnemo.models.cache import init_cache
from lnemo.models.config import ModelConfig
from lnemo.models.transformer import forward
from lnemo.types import PyTree


class PhaseTimes(NamedTuple):
    """Seconds of a prefill of ``batch x seq_len`` tokens and of one decode step at context ``seq_len``."""

    prefill_s: float
    decode_s: float


def measure_phase_times(config: ModelConfig, params: PyTree, *, batch: int, seq_len: int,
                        repeats: int = 5) -> PhaseTimes:
    """Median measured times (after warm-up) of the jitted prefill and decode step."""
    tokens = jax.random.randint(jax.random.key(0), (batch, seq_len), 0, config.vocab_size)
    prefill = jax.jit(lambda p, t: forward(config, p, t).logits)
    fill = jax.jit(lambda p, t, c: forward(config, p, t, cache=c).cache)
    step = jax.jit(lambda p, t, c: forward(config, p, t, cache=c).logits)
    cache = fill(params, tokens, init_cache(config, batch, seq_len + 1))
    return PhaseTimes(perf.time_fn(prefill, params, tokens, repeats=repeats),
                      perf.time_fn(step, params, tokens[:, :1], cache, repeats=repeats))


def predict_phase_times(config: ModelConfig, *, batch: int, seq_len: int, peak_flops: float,
                        bandwidth: float) -> PhaseTimes:
    """Roofline predictions: prefill is FLOP-bound; a decode step reads every weight and the whole cache."""
    prefill_flops = batch * seq_len * cost.prefill_flops_per_token(config, seq_len)
    prefill_bytes = cost.weight_bytes(config) + batch * seq_len * cost.kv_bytes_per_token(config, config.dtype)
    decode_flops = batch * cost.decode_flops_per_token(config, seq_len + 1)
    decode_bytes = cost.decode_bytes_per_step(config, batch=batch, context=seq_len + 1)
    return PhaseTimes(
        perf.roofline_seconds(prefill_flops, prefill_bytes, peak_flops=peak_flops, bandwidth=bandwidth),
        perf.roofline_seconds(decode_flops, decode_bytes, peak_flops=peak_flops, bandwidth=bandwidth))
