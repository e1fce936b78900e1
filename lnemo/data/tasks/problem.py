"""The record of a synthetic reasoning problem, its answer format and the answer extractor.

Every task writes its final answer as integers separated by commas (``"32"``, ``"2,5,9"``). A model
states it on a line ``Answer: <answer>``; in the reasoning format of Llama-Nemotron that line follows
the ``</think>`` that closes the trace, and with thinking off it is the whole response.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Protocol

import numpy as np

from lnemo.data.tokenizer import THINK_END, THINK_START

ANSWER_PREFIX = "Answer:"
_INT_LIST = re.compile(r"-?\d+(?:\s*,\s*-?\d+)*")


def match_integers(candidate: str, gold: str) -> bool:
    """Whether ``candidate`` is exactly the comma-separated integer list ``gold``.

    Whitespace around numbers and commas is ignored; anything else (words, units, a missing or
    extra number, ``"+3"``, ``"3.0"``) makes the answer wrong.

    Example:
      >>> match_integers(" 2, 5,9 ", "2,5,9"), match_integers("32 apples", "32")
      (True, False)
    """
    candidate = candidate.strip()
    if not _INT_LIST.fullmatch(candidate):
        return False
    return [int(x) for x in candidate.split(",")] == [int(x) for x in gold.split(",")]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One verifiable problem with its gold step-by-step solution.

    Attributes:
      task: name of the task that made it (``"arithmetic"``, ``"sorting"``, ``"counting"``), for per-task metrics.
      difficulty: the difficulty it was generated at (1 = easiest).
      prompt: the question, one line.
      trace: the gold reasoning, one step per line, without the answer.
      answer: the canonical final answer.
      verifier: ``(candidate, gold) -> bool``; a module-level function so that problems pickle and compare.
    """

    task: str
    difficulty: int
    prompt: str
    trace: str
    answer: str
    verifier: Callable[[str, str], bool] = match_integers

    def verify(self, answer: str) -> bool:
        """Whether the answer text ``answer`` (e.g. from `extract_answer`) is correct."""
        return self.verifier(answer, self.answer)


class Task(Protocol):
    """A problem generator: ``(rng, difficulty) -> Problem``, deterministic given the generator's state."""

    def __call__(self, rng: np.random.Generator, difficulty: int) -> Problem: ...


def format_answer(answer: str) -> str:
    """The answer line a model should produce: ``Answer: <answer>``."""
    return f"{ANSWER_PREFIX} {answer}"


def problem_document(problem: Problem) -> str:
    """Pretraining text of a problem: prompt, trace and answer line, one per line.

    Example:
      >>> p = Problem("arithmetic", 1, "What is 3+4?", "3+4=7", "7")
      >>> print(problem_document(p))
      What is 3+4?
      3+4=7
      Answer: 7
    """
    return f"{problem.prompt}\n{problem.trace}\n{format_answer(problem.answer)}"


def extract_answer(text: str) -> str | None:
    """The answer a model's output states, or None when it states none.

    The answer is the rest of the line after the last ``Answer:``, cut at the first special-token
    marker ``<|`` (such as ``<|end|>``). When the output opens a ``<think>`` block, only text after the
    last ``</think>`` counts, so an unfinished trace has no answer.

    Example:
      >>> extract_answer("<think>3+4=7</think>Answer: 7<|end|>")
      '7'
      >>> extract_answer("<think>Answer: 7") is None
      True
    """
    if THINK_START in text:
        if THINK_END not in text:
            return None
        text = text.rsplit(THINK_END, 1)[1]
    start = text.rfind(ANSWER_PREFIX)
    if start < 0:
        return None
    line = text[start + len(ANSWER_PREFIX) :].split("\n", 1)[0]
    return line.split("<|", 1)[0].strip()


def check_difficulty(difficulty: int) -> None:
    """Raise a ``ValueError`` naming ``difficulty`` unless it is an integer >= 1."""
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, np.integer)) or difficulty < 1:
        raise ValueError(f"difficulty must be an integer >= 1, got {difficulty!r}")
