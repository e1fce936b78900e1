"""Token samplers: pure, hashable functions of ``(logits, key)``, built from composable logit transforms.

A *transform* maps float32 logits ``[..., V]`` to the logits of the distribution to sample from
(``Temperature``, ``TopK``, ``TopP``, chained with ``Chain``); removed tokens get ``-inf``. A *sampler*
maps ``(logits_BxV, key)`` to ``SamplerOutput(tokens_B, logprobs_B)``, where ``logprobs`` are the
log-probabilities of the drawn tokens under the sampling distribution itself (0 for ``Greedy``, a point
mass). Every transform and sampler is a frozen dataclass, so equal settings compare and hash equal and
``lnemo.generate.generate`` compiles once per setting.

Example:
  >>> sampler = Categorical(Chain((Temperature(0.7), TopK(40), TopP(0.95))))
  >>> out = sampler(jnp.zeros((2, 272)), jax.random.key(0))
  >>> out.tokens.shape, out.logprobs.shape
  ((2,), (2,))

References:
  Holtzman et al., "The Curious Case of Neural Text Degeneration", ICLR 2020 (nucleus / top-p, §3.1).
  Fan et al., "Hierarchical Neural Story Generation", ACL 2018 (top-k).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lnemo.types import Array, PRNGKey

#: ``logits [..., V] -> logits [..., V]`` (float32; removed tokens at ``-inf``).
LogitsTransform = Callable[[Array], Array]


class SamplerOutput(NamedTuple):
    """What a sampler returns.

    Attributes:
      tokens: ``[B]`` int32 drawn token ids.
      logprobs: ``[B]`` float32 log-probability of each drawn token under the sampling distribution.
    """

    tokens: Array
    logprobs: Array


#: ``(logits [B, V], key) -> SamplerOutput``.
Sampler = Callable[[Array, PRNGKey], SamplerOutput]


@dataclasses.dataclass(frozen=True)
class Identity:
    """The raw distribution: ``softmax(z)``."""

    def __call__(self, logits_xV: Array) -> Array:
        return jnp.asarray(logits_xV, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Temperature:
    """Divide logits by a temperature: $p_v \\propto \\exp(z_v / \\tau)$.

    Attributes:
      temperature: $\\tau > 0$; 1 leaves the distribution unchanged, towards 0 it approaches greedy.
    """

    temperature: float

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"Temperature.temperature={self.temperature!r} must be > 0 (use Greedy for 0)")

    def __call__(self, logits_xV: Array) -> Array:
        return jnp.asarray(logits_xV, jnp.float32) / self.temperature


@dataclasses.dataclass(frozen=True)
class TopK:
    """Keep the ``k`` largest logits (ties at the k-th value are all kept), set the rest to ``-inf``.

    Attributes:
      k: number of tokens kept, >= 1.
    """

    k: int

    def __post_init__(self) -> None:
        if not (isinstance(self.k, int) and self.k >= 1):
            raise ValueError(f"TopK.k={self.k!r} must be an integer >= 1")

    def __call__(self, logits_xV: Array) -> Array:
        logits_xV = jnp.asarray(logits_xV, jnp.float32)
        k = min(self.k, logits_xV.shape[-1])
        kth_x1 = jax.lax.top_k(logits_xV, k)[0][..., -1:]
        return jnp.where(logits_xV >= kth_x1, logits_xV, -jnp.inf)


@dataclasses.dataclass(frozen=True)
class TopP:
    """Nucleus: keep the smallest set of most likely tokens whose probability reaches ``p``.

    With tokens sorted by probability $p_{(1)} \\ge p_{(2)} \\ge \\dots$, token $(j)$ is kept iff
    $\\sum_{i<j} p_{(i)} < p$; the most likely token is always kept.

    Attributes:
      p: nucleus mass in ``(0, 1]``; 1 keeps every token.
    """

    p: float

    def __post_init__(self) -> None:
        if not 0 < self.p <= 1:
            raise ValueError(f"TopP.p={self.p!r} must be in (0, 1]")

    def __call__(self, logits_xV: Array) -> Array:
        logits_xV = jnp.asarray(logits_xV, jnp.float32)
        sorted_xV = jnp.sort(logits_xV, axis=-1)[..., ::-1]
        probs_xV = jax.nn.softmax(sorted_xV, axis=-1)
        mass_before_xV = jnp.cumsum(probs_xV, axis=-1) - probs_xV
        kept_xV = mass_before_xV < self.p
        # The smallest kept logit is the threshold; everything at or above it stays.
        threshold_x1 = jnp.min(jnp.where(kept_xV, sorted_xV, jnp.inf), axis=-1, keepdims=True)
        return jnp.where(logits_xV >= threshold_x1, logits_xV, -jnp.inf)


@dataclasses.dataclass(frozen=True)
class Chain:
    """Apply transforms left to right, e.g. ``Chain((Temperature(0.6), TopP(0.95)))``."""

    transforms: tuple[LogitsTransform, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "transforms", tuple(self.transforms))

    def __call__(self, logits_xV: Array) -> Array:
        logits_xV = jnp.asarray(logits_xV, jnp.float32)
        for transform in self.transforms:
            logits_xV = transform(logits_xV)
        return logits_xV


@dataclasses.dataclass(frozen=True)
class Greedy:
    """The most likely token (the first on ties); its sampling log-probability is 0 (a point mass)."""

    def __call__(self, logits_BxV: Array, key: PRNGKey) -> SamplerOutput:
        tokens_B = jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
        return SamplerOutput(tokens_B, jnp.zeros(tokens_B.shape, jnp.float32))


@dataclasses.dataclass(frozen=True)
class Categorical:
    """Draw from ``softmax(transform(logits))``.

    $$y \\sim q, \\qquad q = \\mathrm{softmax}(f(z)), \\qquad \\text{logprob} = \\log q(y)$$

    Attributes:
      transform: the logit transform $f$ (``Identity()`` samples the raw model at temperature 1).
    """

    transform: LogitsTransform = Identity()

    def __call__(self, logits_BxV: Array, key: PRNGKey) -> SamplerOutput:
        logits_BxV = self.transform(jnp.asarray(logits_BxV, jnp.float32))
        tokens_B = jax.random.categorical(key, logits_BxV, axis=-1).astype(jnp.int32)
        logq_BxV = jax.nn.log_softmax(logits_BxV, axis=-1)
        return SamplerOutput(tokens_B, jnp.take_along_axis(logq_BxV, tokens_B[:, None], axis=-1)[:, 0])
