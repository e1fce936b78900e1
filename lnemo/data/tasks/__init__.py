"""Synthetic reasoning tasks: procedurally generated, verifiable problems with gold step-by-step traces.

They are lnemo's embedded default data, for pretraining, reasoning SFT and RL rewards without downloads.
"""

from lnemo.data.tasks.arithmetic import arithmetic
from lnemo.data.tasks.counting import counting
from lnemo.data.tasks.problem import (
    ANSWER_PREFIX,
    Problem,
    Task,
    extract_answer,
    format_answer,
    match_integers,
    problem_document,
)
from lnemo.data.tasks.sorting import sorting
from lnemo.data.tasks.source import DEFAULT_TASKS, ProblemSource

__all__ = [
    "ANSWER_PREFIX",
    "DEFAULT_TASKS",
    "Problem",
    "ProblemSource",
    "Task",
    "arithmetic",
    "counting",
    "extract_answer",
    "format_answer",
    "match_integers",
    "problem_document",
    "sorting",
]
