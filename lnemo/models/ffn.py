"""FFN sub-blocks: SwiGLU of any width and parallel SwiGLUs (unfused FFN Fusion).

The linear replacement is ``layers.NormLinear``.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from lnemo.models.config import ModelConfig
from lnemo.models.layers import RMSNorm, dense_init, param, project
from lnemo.sharding import constrain
from lnemo.types import Array


class SwiGLU(nn.Module):
    """Pre-norm SwiGLU ``(silu(u W_gate) * (u W_up)) W_down`` with ``u = RMSNorm(x)``; returns the update.

    Parameters: ``norm.scale [D]``, ``gate_proj``/``up_proj [D, I]``, ``down_proj [I, D]``.
    """

    config: ModelConfig
    intermediate_size: int

    @nn.compact
    def __call__(self, x_BxTxD: Array) -> Array:
        c = self.config
        d, i, dt, pdt = c.hidden_size, self.intermediate_size, c.compute_dtype, c.params_dtype
        u = RMSNorm(c.rms_norm_eps, pdt, name="norm")(x_BxTxD)
        w_gate = param(self, "gate_proj", (d, i), ("embed", "mlp"), pdt, dense_init(d))
        w_up = param(self, "up_proj", (d, i), ("embed", "mlp"), pdt, dense_init(d))
        w_down = param(self, "down_proj", (i, d), ("mlp", "embed"), pdt, dense_init(i))
        gate = project(u, w_gate, "btd,di->bti", dt)
        up = project(u, w_up, "btd,di->bti", dt)
        act = constrain(jax.nn.silu(gate) * up, ("batch", "sequence", "mlp"))
        return constrain(project(act, w_down, "bti,id->btd", dt), ("batch", "sequence", "embed"))


class ParallelSwiGLU(nn.Module):
    """Several SwiGLUs on the same input, each with its own norm, summed: ``sum_j f_j(x)``.

    Parameters live under ``branch_0``, ``branch_1``, ...; this is the unfused form of FFN Fusion
    (``lnemo.models.surgery.fuse_parallel_ffn`` turns it into one wide SwiGLU exactly).
    """

    config: ModelConfig
    intermediate_sizes: tuple[int, ...]

    @nn.compact
    def __call__(self, x_BxTxD: Array) -> Array:
        out = None
        for j, width in enumerate(self.intermediate_sizes):
            y = SwiGLU(self.config, width, name=f"branch_{j}")(x_BxTxD)
            out = y if out is None else out + y
        return out

