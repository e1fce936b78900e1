"""Multi-step integer arithmetic chains: evaluate a left-nested expression one operation per step."""

from __future__ import annotations

import numpy as np

from lnemo.data.tasks.problem import Problem, check_difficulty

#: Multiplication is skipped while the running value exceeds this, to keep numbers (and texts) short.
_MULTIPLY_BELOW = 100


def arithmetic(rng: np.random.Generator, difficulty: int, *, max_operand: int = 9) -> Problem:
    """A chain of ``difficulty`` operations (+, -, *) on integers from 1 to ``max_operand``.

    The expression nests to the left, ``((a op b) op c) op d``, so the gold trace evaluates it one
    operation per line, ``a op b = r``. Multiplication is drawn only while the running value is below 100
    in magnitude and uses operands from 2 up. Difficulty 1..4 gives texts of about 30-75 bytes.

    Args:
      rng: the random generator (consumed).
      difficulty: number of operations, >= 1.
      max_operand: largest operand, >= 2.

    Returns:
      The problem; its answer is the value of the expression.

    Example:
      >>> p = arithmetic(np.random.default_rng(0), 2)
      >>> p.prompt, p.trace.splitlines(), p.answer
      ('What is (8-5)+3?', ['8-5=3', '3+3=6'], '6')
    """
    check_difficulty(difficulty)
    if max_operand < 2:
        raise ValueError(f"max_operand must be >= 2, got {max_operand}")
    value = int(rng.integers(1, max_operand + 1))
    expression = str(value)
    steps = []
    for step in range(difficulty):
        ops = "+-*" if abs(value) < _MULTIPLY_BELOW else "+-"
        op = ops[int(rng.integers(len(ops)))]
        operand = int(rng.integers(2 if op == "*" else 1, max_operand + 1))
        result = value + operand if op == "+" else value - operand if op == "-" else value * operand
        steps.append(f"{value}{op}{operand}={result}")
        expression = f"{expression}{op}{operand}" if step == 0 else f"({expression}){op}{operand}"
        value = result
    return Problem("arithmetic", int(difficulty), f"What is {expression}?", "\n".join(steps), str(value))
