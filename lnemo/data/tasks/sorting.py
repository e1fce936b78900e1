"""Sorting a short list of integers by repeated selection of the minimum."""

from __future__ import annotations

import numpy as np

from lnemo.data.tasks.problem import Problem, check_difficulty


def sorting(rng: np.random.Generator, difficulty: int, *, max_value: int = 99) -> Problem:
    """Sort ``difficulty + 1`` integers from 0 to ``max_value`` in ascending order.

    The gold trace is selection sort: each line shows the numbers still unsorted and their minimum,
    ``5,2,9 -> 2``. Difficulty 1..4 gives texts of about 55-130 bytes.

    Args:
      rng: the random generator (consumed).
      difficulty: list length minus 1, >= 1.
      max_value: largest value, >= 1.

    Returns:
      The problem; its answer is the sorted list, comma-separated.

    Example:
      >>> p = sorting(np.random.default_rng(0), 1)
      >>> p.prompt, p.trace.splitlines(), p.answer
      ('Sort ascending: 85,63', ['85,63 -> 63', '85 -> 85'], '63,85')
    """
    check_difficulty(difficulty)
    if max_value < 1:
        raise ValueError(f"max_value must be >= 1, got {max_value}")
    remaining = [int(v) for v in rng.integers(0, max_value + 1, size=difficulty + 1)]
    prompt = f"Sort ascending: {_join(remaining)}"
    answer = _join(sorted(remaining))
    steps = []
    while remaining:
        smallest = min(remaining)
        steps.append(f"{_join(remaining)} -> {smallest}")
        remaining.remove(smallest)
    return Problem("sorting", int(difficulty), prompt, "\n".join(steps), answer)


def _join(values: list[int]) -> str:
    return ",".join(str(v) for v in values)
