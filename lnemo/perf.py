"""Measuring speed honestly on shared machines: medians after warm-up, and same-process ceilings.

Every performance figure in lnemo is a ratio against a reference measured in the same process right
before (the float32 matmul ceiling for MFU, a peer implementation for speed-ups).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def time_fn(fn: Callable[..., Any], *args: Any, warmup: int = 2, repeats: int = 5) -> float:
    """Median wall-clock seconds of ``fn(*args)`` (outputs blocked on) after ``warmup`` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_ceiling(*, dtype: jnp.dtype | str = jnp.float32, n: int = 2048, repeats: int = 5,
                   accumulate_float32: bool = True) -> float:
    """Achieved FLOP/s of an ``n x n x n`` matmul on the default device: the ceiling MFU is measured against.

    With ``dtype=bfloat16`` and ``accumulate_float32`` the inputs are bf16 and accumulation float32 (the form
    that reaches a CPU's bf16 matrix unit).
    """
    dtype = jnp.dtype(dtype)
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32).astype(dtype)
    pref = jnp.float32 if accumulate_float32 else None
    mm = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=pref))
    return 2 * n**3 / time_fn(mm, a, b, repeats=repeats)


def memory_bandwidth(*, megabytes: int = 256, repeats: int = 5) -> float:
    """Achieved bytes/s of a streaming read-modify-write over ``megabytes`` of float32."""
    x = jnp.ones((megabytes * (1 << 20) // 4,), jnp.float32)
    fn = jax.jit(lambda v: v * 1.0001 + 1.0)
    return 2 * x.size * 4 / time_fn(fn, x, repeats=repeats)


def roofline_seconds(flops: float, bytes_moved: float, *, peak_flops: float, bandwidth: float) -> float:
    """Lower bound on run time: ``max(flops / peak_flops, bytes / bandwidth)``."""
    return max(flops / peak_flops, bytes_moved / bandwidth)
