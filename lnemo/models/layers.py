"""Basic layers: RMSNorm, rotary embeddings with llama3 scaling, projections, and the linear replacement block."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lnemo.models.config import ModelConfig, RopeScaling
from lnemo.sharding import constrain
from lnemo.types import Array


def param(module: nn.Module, name: str, shape: tuple[int, ...], axes: tuple[str | None, ...],
          dtype: jnp.dtype, init: nn.initializers.Initializer) -> Array:
    """Declare a parameter carrying logical axis names."""
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


def _matmul(spec: str, a: Array, b: Array) -> Array:
    return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def project(x: Array, kernel: Array, spec: str, dtype: jnp.dtype) -> Array:
    """``einsum(spec, x, kernel)`` with inputs in ``dtype`` and float32 accumulation, cast back to ``dtype``.

    On CPUs with a bf16 matrix unit, bf16 inputs with float32 accumulation are what reach it. JAX's own
    transpose of such a product computes the backward matmuls in float32, so for low-precision ``dtype`` the
    gradient is defined explicitly: both backward products also take ``dtype`` inputs (the cotangent cast to
    ``dtype``, as in standard mixed-precision training) and accumulate in float32. ``spec`` must be a
    two-operand einsum in which every index of an operand appears in the output or the other operand.
    """
    dtype = jnp.dtype(dtype)
    if dtype == jnp.float32 or dtype == jnp.float64:
        return _matmul(spec, x.astype(dtype), kernel.astype(dtype)).astype(dtype)
    return _low_precision_project(x, kernel, spec, dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _low_precision_project(x: Array, kernel: Array, spec: str, dtype: jnp.dtype) -> Array:
    return _matmul(spec, x.astype(dtype), kernel.astype(dtype)).astype(dtype)


def _low_precision_fwd(x: Array, kernel: Array, spec: str, dtype: jnp.dtype) -> tuple[Array, tuple[Array, Array]]:
    return _low_precision_project(x, kernel, spec, dtype), (x, kernel)


def _low_precision_bwd(spec: str, dtype: jnp.dtype, residuals: tuple[Array, Array], ct: Array) -> tuple[Array, Array]:
    x, kernel = residuals
    inputs, out = spec.split("->")
    a, b = inputs.split(",")
    ct = ct.astype(dtype)
    dx = _matmul(f"{out},{b}->{a}", ct, kernel.astype(dtype))
    dk = _matmul(f"{a},{out}->{b}", x.astype(dtype), ct)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_low_precision_project.defvjp(_low_precision_fwd, _low_precision_bwd)


def dense_init(fan_in: int) -> nn.initializers.Initializer:
    """Truncated-normal initialiser with standard deviation ``1/sqrt(fan_in)``."""
    return nn.initializers.truncated_normal(stddev=1.0 / math.sqrt(fan_in))


class RMSNorm(nn.Module):
    """``y = x / sqrt(mean(x^2) + eps) * scale``, computed in float32 and cast back to the input dtype."""

    eps: float
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = param(self, "scale", (x.shape[-1],), ("norm",), self.param_dtype, nn.initializers.ones)
        return rms_norm(x, scale, eps=self.eps)


def rms_norm(x: Array, scale: Array, *, eps: float) -> Array:
    """Functional RMSNorm (float32 math, output in ``x.dtype``)."""
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
    return (y * scale.astype(jnp.float32)).astype(x.dtype)


def rope_inverse_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None) -> np.ndarray:
    """RoPE inverse frequencies ``theta^(-2j/head_dim)``, with Llama-3 scaling when given.

    Llama-3 rule: with wavelength ``lam = 2 pi / f`` and ``L0 = original_max_position_embeddings``,
    ``lam < L0 / high_freq_factor`` keeps ``f``; ``lam > L0 / low_freq_factor`` gives ``f / factor``; otherwise
    ``s = (L0 / lam - low) / (high - low)`` and ``f' = (1 - s) f / factor + s f``.

    Returns:
      float64 array of shape ``[head_dim // 2]``.
    """
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if scaling is None:
        return inv
    wavelen = 2 * math.pi / inv
    low_wl = scaling.original_max_position_embeddings / scaling.low_freq_factor
    high_wl = scaling.original_max_position_embeddings / scaling.high_freq_factor
    smooth = (scaling.original_max_position_embeddings / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor)
    scaled = np.where(wavelen > low_wl, inv / scaling.factor, inv)
    mid = (wavelen >= high_wl) & (wavelen <= low_wl)
    return np.where(mid, (1 - smooth) * inv / scaling.factor + smooth * inv, scaled)


def apply_rope(x_BxTxNxHd: Array, positions_BxT: Array, inv_freq: np.ndarray) -> Array:
    """Rotate query/key heads by their positions (the "rotate half" convention of Hugging Face Llama)."""
    angles_BxTxF = positions_BxT.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq, jnp.float32)
    cos = jnp.cos(angles_BxTxF)[:, :, None, :]
    sin = jnp.sin(angles_BxTxF)[:, :, None, :]
    x = x_BxTxNxHd.astype(jnp.float32)
    x1, x2 = jnp.split(x, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxTxNxHd.dtype)


class NormLinear(nn.Module):
    """A sub-block replaced by one linear map: ``RMSNorm(x) @ W`` with ``W`` D x D (the residual is outside).

    Puzzle's linear attention (``kernel_name="linear_attn"``: every token attends only to itself) and linear
    FFN (``kernel_name="linear_mlp"``) are this same computation under their nemotron-nas weight names.
    """

    config: ModelConfig
    kernel_name: str

    @nn.compact
    def __call__(self, x_BxTxD: Array) -> Array:
        c = self.config
        d = c.hidden_size
        u = RMSNorm(c.rms_norm_eps, c.params_dtype, name="norm")(x_BxTxD)
        w = param(self, self.kernel_name, (d, d), ("embed", "embed_out"), c.params_dtype, dense_init(d))
        return constrain(project(u, w, "btd,de->bte", c.compute_dtype), ("batch", "sequence", "embed"))
