"""Multi-stage SFT schedules: each stage has its own data mixture, length and learning-rate schedule.

LN-Nano trains in stages: (1) reasoning-only data, (2) reasoning and non-reasoning data mixed (the
toggle), (3) chat and tool use. Each stage here restarts its optimiser state and runs AdamW with a
linear warmup over ``warmup_fraction`` of its steps and a cosine decay (LN-Ultra resumed with
re-initialised optimiser state; the recipes use ~10 % warmup).

References:
  Bercovich et al., "Llama-Nemotron: Efficient Reasoning Models", arXiv 2505.00949, §4 (SFT recipes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import grain

from lnemo.data import Problem, Tokenizer
from lnemo.sft.data import paired_examples
from lnemo.sft.template import ChatFormat


@dataclasses.dataclass(frozen=True)
class Stage:
    """One SFT stage.

    Attributes:
      name: label for logs (``"reasoning"``, ``"mixed"``).
      examples: ``{"tokens", "target_mask"}`` elements, repeated as often as ``num_steps`` needs.
      num_steps: optimiser steps, >= 1.
      learning_rate: peak learning rate.
      warmup_fraction: fraction of ``num_steps`` of linear warmup, in ``[0, 1)``.
      final_lr_ratio: final / peak learning rate of the cosine decay.
      weight_decay: AdamW decoupled weight decay.
    """

    name: str
    examples: grain.MapDataset
    num_steps: int
    learning_rate: float
    warmup_fraction: float = 0.1
    final_lr_ratio: float = 0.1
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.num_steps, int) and self.num_steps >= 1):
            raise ValueError(f"Stage {self.name!r}: num_steps={self.num_steps!r} must be an integer >= 1")
        if not self.learning_rate > 0:
            raise ValueError(f"Stage {self.name!r}: learning_rate={self.learning_rate!r} must be > 0")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"Stage {self.name!r}: warmup_fraction={self.warmup_fraction!r} must be in [0, 1)")

    @property
    def warmup_steps(self) -> int:
        return int(self.warmup_fraction * self.num_steps)


def reasoning_then_mixed(problems: Sequence[Problem], tokenizer: Tokenizer, *, steps: tuple[int, int],
                         learning_rate: float, off_weight: float = 1.0,
                         fmt: ChatFormat = ChatFormat()) -> tuple[Stage, Stage]:
    """LN-Nano's first two stages on the same problems: thinking-on only, then on and off mixed.

    Args:
      problems: the training problems.
      tokenizer: the tokenizer.
      steps: ``(reasoning-only steps, mixed steps)``; a zero skips nothing, use one stage instead.
      learning_rate: peak learning rate of both stages.
      off_weight: weight of thinking-off samples against 1 for thinking-on in the mixed stage.
      fmt: the turn format.

    Returns:
      The two stages.
    """
    return (Stage("reasoning", paired_examples(problems, tokenizer, off_weight=0.0, fmt=fmt), steps[0], learning_rate),
            Stage("mixed", paired_examples(problems, tokenizer, off_weight=off_weight, fmt=fmt), steps[1],
                  learning_rate))
