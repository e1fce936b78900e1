"""Sampling from the models: composable samplers and the jitted prefill + ``while_loop`` decode."""

from lnemo.generate.engine import GenerateOutput, generate, left_align
from lnemo.generate.samplers import (
    Categorical,
    Chain,
    Greedy,
    Identity,
    LogitsTransform,
    Sampler,
    SamplerOutput,
    Temperature,
    TopK,
    TopP,
)

__all__ = [
    "Categorical", "Chain", "GenerateOutput", "Greedy", "Identity", "LogitsTransform", "Sampler", "SamplerOutput",
    "Temperature", "TopK", "TopP", "generate", "left_align",
]
