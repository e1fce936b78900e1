"""A deterministic, random-access stream of synthetic problems (a grain data source)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np

from lnemo.data.tasks.arithmetic import arithmetic
from lnemo.data.tasks.counting import counting
from lnemo.data.tasks.problem import Problem, Task, check_difficulty
from lnemo.data.tasks.sorting import sorting

DEFAULT_TASKS: tuple[Task, ...] = (arithmetic, sorting, counting)


@dataclasses.dataclass(frozen=True)
class ProblemSource:
    """Problem ``i`` is drawn from ``np.random.default_rng((seed, i))``: a task and a difficulty uniformly, then the problem.

    Any index can be read in any order and on any process, so the stream is reproducible, shardable
    and checkpointable by index alone. The default ``size`` (2**62) makes it effectively unbounded; pass
    a small ``size`` for an evaluation set, and a different ``seed`` for held-out problems (at low
    difficulty the space of distinct problems is small, so some texts recur across seeds).

    Attributes:
      tasks: the generators to draw from, each ``(rng, difficulty) -> Problem``.
      difficulties: the difficulties to draw from.
      seed: base seed, >= 0.
      size: number of problems.

    Example:
      >>> source = ProblemSource(difficulties=(2,), seed=7, size=100)
      >>> source[3] == ProblemSource(difficulties=(2,), seed=7, size=100)[3]
      True
    """

    tasks: Sequence[Task] = DEFAULT_TASKS
    difficulties: Sequence[int] = (1, 2, 3, 4)
    seed: int = 0
    size: int = 2**62

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "difficulties", tuple(self.difficulties))
        if not self.tasks:
            raise ValueError("tasks must not be empty")
        if not self.difficulties:
            raise ValueError("difficulties must not be empty")
        for difficulty in self.difficulties:
            check_difficulty(difficulty)
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> Problem:
        index = int(index)
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} is outside [0, {self.size})")
        rng = np.random.default_rng((self.seed, index))
        task = self.tasks[int(rng.integers(len(self.tasks)))]
        difficulty = self.difficulties[int(rng.integers(len(self.difficulties)))]
        return task(rng, difficulty)

    def __iter__(self) -> Iterator[Problem]:
        return (self[i] for i in range(self.size))
