"""Model configuration: a frozen, hashable description of a heterogeneous Llama-family decoder.

The architecture is data. A ``ModelConfig`` holds one ``BlockConfig`` per layer; each block says what
its attention sub-block is (grouped-query attention with its own KV-head count, one linear map, or
nothing) and what its FFN sub-block is (SwiGLU of any width, several SwiGLUs in parallel, one linear map,
or nothing). Architecture search edits these tuples, never classes.

References:
  Bercovich et al., "Llama-Nemotron: Efficient Reasoning Models", arXiv 2505.00949, §2.
  Bercovich et al., "Puzzle: Distillation-Based NAS for Inference-Optimized LLMs", arXiv 2411.19146, §3.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

import jax.numpy as jnp

AttentionKind = Literal["gqa", "linear", "none"]
FFNKind = Literal["swiglu", "linear", "none"]

#: Vocabulary of the built-in byte tokenizer (``lnemo.data.ByteTokenizer``); the default for the ``tiny``/``small`` presets.
DEFAULT_SMALL_VOCAB = 272


@dataclass(frozen=True)
class AttentionConfig:
    """The attention sub-block of one layer.

    Attributes:
      kind: ``"gqa"`` (causal grouped-query attention with RoPE), ``"linear"`` (``x + RMSNorm(x) @ W``,
        every token attends only to itself) or ``"none"`` (the identity: no parameters, no norm, no cache).
      num_kv_heads: KV heads of a ``"gqa"`` layer; must divide the model's ``num_heads``. ``None`` otherwise.
    """

    kind: AttentionKind = "gqa"
    num_kv_heads: int | None = None

    @classmethod
    def gqa(cls, num_kv_heads: int) -> AttentionConfig:
        return cls("gqa", num_kv_heads)

    @classmethod
    def linear(cls) -> AttentionConfig:
        return cls("linear", None)

    @classmethod
    def none(cls) -> AttentionConfig:
        return cls("none", None)

    def describe(self) -> str:
        return f"gqa(kv={self.num_kv_heads})" if self.kind == "gqa" else self.kind


@dataclass(frozen=True)
class FFNConfig:
    """The FFN sub-block of one layer.

    Attributes:
      kind: ``"swiglu"``, ``"linear"`` (``h + RMSNorm(h) @ W``) or ``"none"`` (the identity).
      intermediate_sizes: widths of the SwiGLU branches. One entry is an ordinary FFN; several entries are
        parallel SwiGLUs on the same input, each with its own RMSNorm, whose outputs are summed (the
        unfused form of FFN Fusion). Empty for ``"linear"``/``"none"``.
    """

    kind: FFNKind = "swiglu"
    intermediate_sizes: tuple[int, ...] = ()

    @classmethod
    def swiglu(cls, intermediate_size: int) -> FFNConfig:
        return cls("swiglu", (int(intermediate_size),))

    @classmethod
    def parallel(cls, *intermediate_sizes: int) -> FFNConfig:
        return cls("swiglu", tuple(int(i) for i in intermediate_sizes))

    @classmethod
    def linear(cls) -> FFNConfig:
        return cls("linear", ())

    @classmethod
    def none(cls) -> FFNConfig:
        return cls("none", ())

    @property
    def intermediate_size(self) -> int:
        """Total SwiGLU width (the sum over parallel branches); 0 for linear / none."""
        return sum(self.intermediate_sizes)

    def describe(self) -> str:
        if self.kind != "swiglu":
            return self.kind
        if len(self.intermediate_sizes) == 1:
            return f"swiglu({self.intermediate_sizes[0]})"
        return "parallel(" + "+".join(str(i) for i in self.intermediate_sizes) + ")"


@dataclass(frozen=True)
class BlockConfig:
    """One decoder layer: an attention sub-block followed by an FFN sub-block, both pre-norm residual."""

    attention: AttentionConfig = field(default_factory=AttentionConfig)
    ffn: FFNConfig = field(default_factory=FFNConfig)

    @classmethod
    def llama(cls, num_kv_heads: int, intermediate_size: int) -> BlockConfig:
        """A standard Llama block: GQA with ``num_kv_heads`` and a SwiGLU of ``intermediate_size``."""
        return cls(AttentionConfig.gqa(num_kv_heads), FFNConfig.swiglu(intermediate_size))

    def describe(self) -> str:
        return f"{self.attention.describe()} | {self.ffn.describe()}"


@dataclass(frozen=True)
class RopeScaling:
    """Llama-3 RoPE frequency scaling (``rope_type == "llama3"``)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class ModelConfig:
    """A heterogeneous Llama-family decoder.

    Attributes:
      vocab_size: V.
      hidden_size: D, the residual width (identical in every layer).
      num_heads: query heads H of every attention layer.
      head_dim: per-head width; ``hidden_size // num_heads`` when None.
      blocks: one ``BlockConfig`` per layer.
      rope_theta: RoPE base.
      rope_scaling: llama3 frequency scaling or None.
      rms_norm_eps: RMSNorm epsilon.
      tie_embeddings: the LM head reuses the embedding matrix.
      max_position_embeddings: recorded for Hugging Face export; positions are not clipped to it.
      dtype: compute dtype name (``"float32"`` or ``"bfloat16"``); matmuls accumulate in float32.
      param_dtype: storage dtype name of parameters.
      remat: rematerialise each layer in the backward pass (``jax.checkpoint``).
      bos_token_id, eos_token_id: recorded for export and generation.
    """

    vocab_size: int
    hidden_size: int
    num_heads: int
    blocks: tuple[BlockConfig, ...]
    head_dim: int | None = None
    rope_theta: float = 500000.0
    rope_scaling: RopeScaling | None = None
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = False
    max_position_embeddings: int = 131072
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        if isinstance(self.eos_token_id, list):
            object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))
        validate(self)

    # ----------------------------------------------------------------- derived quantities
    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def head_size(self) -> int:
        """The per-head width actually used (``head_dim`` or ``hidden_size // num_heads``)."""
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)

    @property
    def params_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.param_dtype)

    def replace(self, **changes: object) -> ModelConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def with_block(self, layer: int, block: BlockConfig) -> ModelConfig:
        """A copy whose layer ``layer`` is ``block``."""
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer={layer} is out of range for a model with {self.num_layers} layers")
        blocks = list(self.blocks)
        blocks[layer] = block
        return self.replace(blocks=tuple(blocks))

    # ----------------------------------------------------------------- presets
    @classmethod
    def homogeneous(
        cls,
        *,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        num_kv_heads: int,
        intermediate_size: int,
        **kwargs: object,
    ) -> ModelConfig:
        """A plain Llama: every layer GQA with ``num_kv_heads`` and a SwiGLU of ``intermediate_size``."""
        block = BlockConfig.llama(num_kv_heads, intermediate_size)
        return cls(vocab_size=vocab_size, hidden_size=hidden_size, num_heads=num_heads,
                   blocks=(block,) * num_layers, **kwargs)

    @classmethod
    def tiny(cls, *, vocab_size: int = DEFAULT_SMALL_VOCAB, num_layers: int = 2, **kwargs: object) -> ModelConfig:
        """A 2-layer D=64 model for tests (compiles and runs in well under a second)."""
        kwargs.setdefault("rope_theta", 10000.0)
        return cls.homogeneous(vocab_size=vocab_size, hidden_size=64, num_layers=num_layers, num_heads=4,
                               num_kv_heads=2, intermediate_size=128, **kwargs)

    @classmethod
    def small(cls, *, vocab_size: int = DEFAULT_SMALL_VOCAB, num_layers: int = 6, **kwargs: object) -> ModelConfig:
        """A ~5M-parameter parent for the examples: pretrains in minutes on 2 CPU cores."""
        kwargs.setdefault("rope_theta", 10000.0)
        return cls.homogeneous(vocab_size=vocab_size, hidden_size=256, num_layers=num_layers, num_heads=8,
                               num_kv_heads=4, intermediate_size=768, **kwargs)

    @classmethod
    def llama3_1_8b(cls, **kwargs: object) -> ModelConfig:
        """The published shape of Llama-3.1-8B (8,030,261,248 parameters); configuration only."""
        return cls.homogeneous(vocab_size=128256, hidden_size=4096, num_layers=32, num_heads=32,
                               num_kv_heads=8, intermediate_size=14336, rope_theta=500000.0,
                               rope_scaling=RopeScaling(8.0, 1.0, 4.0, 8192), rms_norm_eps=1e-5,
                               bos_token_id=128000, eos_token_id=(128001, 128008, 128009), **kwargs)

    @classmethod
    def llama3_3_70b(cls, **kwargs: object) -> ModelConfig:
        """The published shape of Llama-3.3-70B (70,553,706,496 parameters); configuration only."""
        return cls.homogeneous(vocab_size=128256, hidden_size=8192, num_layers=80, num_heads=64,
                               num_kv_heads=8, intermediate_size=28672, rope_theta=500000.0,
                               rope_scaling=RopeScaling(8.0, 1.0, 4.0, 8192), rms_norm_eps=1e-5,
                               bos_token_id=128000, eos_token_id=(128001, 128008, 128009), **kwargs)


_DTYPES = ("float32", "bfloat16", "float16", "float64")


def validate(config: ModelConfig) -> None:
    """Raise ``ValueError`` naming the layer, field and value of the first inconsistency."""

    def positive(name: str, value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"ModelConfig.{name}={value!r} must be a positive integer")

    positive("vocab_size", config.vocab_size)
    positive("hidden_size", config.hidden_size)
    positive("num_heads", config.num_heads)
    if config.head_dim is not None:
        positive("head_dim", config.head_dim)
    elif config.hidden_size % config.num_heads:
        raise ValueError(f"ModelConfig.num_heads={config.num_heads} must divide hidden_size={config.hidden_size} "
                         "when head_dim is not given")
    if config.head_size % 2:
        raise ValueError(f"ModelConfig.head_dim={config.head_size} must be even for RoPE")
    if not config.blocks:
        raise ValueError("ModelConfig.blocks=() must hold at least one layer")
    for name in ("dtype", "param_dtype"):
        if getattr(config, name) not in _DTYPES:
            raise ValueError(f"ModelConfig.{name}={getattr(config, name)!r} must be one of {_DTYPES}")
    if not (isinstance(config.rms_norm_eps, float | int) and config.rms_norm_eps > 0):
        raise ValueError(f"ModelConfig.rms_norm_eps={config.rms_norm_eps!r} must be positive")
    if not (config.rope_theta > 0 and math.isfinite(config.rope_theta)):
        raise ValueError(f"ModelConfig.rope_theta={config.rope_theta!r} must be positive and finite")
    s = config.rope_scaling
    if s is not None and not (s.factor >= 1 and s.high_freq_factor > s.low_freq_factor > 0
                              and s.original_max_position_embeddings > 0):
        raise ValueError(f"ModelConfig.rope_scaling={s!r} needs factor >= 1, "
                         "high_freq_factor > low_freq_factor > 0 and original_max_position_embeddings > 0")
    for i, block in enumerate(config.blocks):
        if not isinstance(block, BlockConfig):
            raise ValueError(f"blocks[{i}]={block!r} must be a BlockConfig")
        att, ffn = block.attention, block.ffn
        if att.kind not in ("gqa", "linear", "none"):
            raise ValueError(f"blocks[{i}].attention.kind={att.kind!r} must be 'gqa', 'linear' or 'none'")
        if att.kind == "gqa":
            n = att.num_kv_heads
            if not isinstance(n, int) or n <= 0 or config.num_heads % n:
                raise ValueError(f"blocks[{i}].attention.num_kv_heads={n!r} must be a positive divisor of "
                                 f"num_heads={config.num_heads}")
        elif att.num_kv_heads is not None:
            raise ValueError(f"blocks[{i}].attention.num_kv_heads={att.num_kv_heads!r} must be None for "
                             f"kind={att.kind!r}")
        if ffn.kind not in ("swiglu", "linear", "none"):
            raise ValueError(f"blocks[{i}].ffn.kind={ffn.kind!r} must be 'swiglu', 'linear' or 'none'")
        if ffn.kind == "swiglu":
            if not ffn.intermediate_sizes or any(not isinstance(w, int) or w <= 0 for w in ffn.intermediate_sizes):
                raise ValueError(f"blocks[{i}].ffn.intermediate_sizes={ffn.intermediate_sizes!r} must hold one "
                                 "or more positive integers")
        elif ffn.intermediate_sizes:
            raise ValueError(f"blocks[{i}].ffn.intermediate_sizes={ffn.intermediate_sizes!r} must be empty for "
                             f"kind={ffn.kind!r}")


def ffn_mult_to_intermediate_size(ffn_mult: float, hidden_size: int) -> int:
    """The nemotron-nas width rule ``I = 256 * ceil(floor(2 * m * H / 3) / 256)`` (float64, truncation).

    Example:
      >>> ffn_mult_to_intermediate_size(5.25, 4096)
      14336
    """
    raw = int(2.0 * float(ffn_mult) * float(hidden_size) / 3.0)
    return 256 * -(-raw // 256)


def intermediate_size_to_ffn_mult(intermediate_size: int, hidden_size: int) -> float:
    """The exact inverse on multiples of 256: ``m = 3 I / (2 H)``; other widths cannot be written as ffn_mult."""
    if intermediate_size % 256:
        raise ValueError(f"intermediate_size={intermediate_size} is not a multiple of 256 and cannot be written "
                         "as a nemotron-nas ffn_mult; export it as intermediate_size instead")
    m = 3.0 * intermediate_size / (2.0 * hidden_size)
    if ffn_mult_to_intermediate_size(m, hidden_size) != intermediate_size:
        raise ValueError(f"intermediate_size={intermediate_size} does not round-trip through ffn_mult={m}")
    return m
