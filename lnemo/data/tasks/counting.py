"""Counting the occurrences of a letter in a string, with a running tally."""

from __future__ import annotations

import numpy as np

from lnemo.data.tasks.problem import Problem, check_difficulty


def counting(rng: np.random.Generator, difficulty: int, *, alphabet: str = "abc") -> Problem:
    """Count one letter of ``alphabet`` in a random string of ``4 * difficulty`` letters.

    The gold trace walks the string, writing each letter followed by the running count of the target
    letter, ``a1 b1 a2``. Difficulty 1..4 gives texts of about 40-90 bytes.

    Args:
      rng: the random generator (consumed).
      difficulty: string length divided by 4, >= 1.
      alphabet: the letters to draw from (at least 2 distinct characters).

    Returns:
      The problem; its answer is the count.

    Example:
      >>> p = counting(np.random.default_rng(0), 1)
      >>> p.prompt, p.trace, p.answer
      ('How many a in cbba?', 'c0 b0 b0 a1', '1')
    """
    check_difficulty(difficulty)
    if len(set(alphabet)) < 2:
        raise ValueError(f"alphabet must hold at least 2 distinct characters, got {alphabet!r}")
    letters = list(alphabet)
    text = "".join(letters[i] for i in rng.integers(len(letters), size=4 * difficulty))
    target = letters[int(rng.integers(len(letters)))]
    tally, count = [], 0
    for letter in text:
        count += letter == target
        tally.append(f"{letter}{count}")
    return Problem("counting", int(difficulty), f"How many {target} in {text}?", " ".join(tally), str(count))
