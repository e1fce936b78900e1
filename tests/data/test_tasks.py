import pickle
import re

import numpy as np
import pytest

from lnemo.data import (
    DEFAULT_TASKS,
    Problem,
    ProblemSource,
    arithmetic,
    counting,
    extract_answer,
    format_answer,
    match_integers,
    problem_document,
    sorting,
)

DIFFICULTIES = range(1, 7)
SEEDS = range(40)


def _problems(task):
    return [task(np.random.default_rng(seed), d) for d in DIFFICULTIES for seed in SEEDS]


def _wrong_answers(answer: str) -> list[str]:
    values = [int(v) for v in answer.split(",")]
    wrong = ["", "x", f"{answer} apples", f"{answer},{values[-1]}", answer + ".0"]
    wrong.append(",".join(str(v) for v in [values[0] + 1, *values[1:]]))
    if len(set(values)) > 1:
        wrong.append(",".join(str(v) for v in reversed(values)))
    return wrong


@pytest.mark.parametrize("task", DEFAULT_TASKS, ids=lambda t: t.__name__)
def test_verifier_accepts_gold_and_rejects_wrong(task):
    for p in _problems(task):
        assert p.verify(p.answer) and p.verify(f" {p.answer.replace(',', ', ')} ")
        assert p.verify(extract_answer(f"<think>{p.trace}</think>{format_answer(p.answer)}<|end|>"))
        for wrong in _wrong_answers(p.answer):
            assert not p.verify(wrong), (p, wrong)


def test_arithmetic_trace_is_a_correct_chain():
    for p in _problems(arithmetic):
        expression = re.fullmatch(r"What is (.*)\?", p.prompt).group(1)
        assert eval(expression) == int(p.answer)  # the prompt means what the trace computes
        lines = p.trace.splitlines()
        assert len(lines) == p.difficulty
        previous = None
        for line in lines:
            a, op, b, result = re.fullmatch(r"(-?\d+)([-+*])(\d+)=(-?\d+)", line).groups()
            assert eval(f"{a}{op}{b}") == int(result)
            assert previous is None or int(a) == previous
            previous = int(result)
        assert previous == int(p.answer)


def test_sorting_trace_selects_the_minimum():
    for p in _problems(sorting):
        values = [int(v) for v in p.prompt.removeprefix("Sort ascending: ").split(",")]
        assert len(values) == p.difficulty + 1
        assert p.answer == ",".join(str(v) for v in sorted(values))
        picked = [int(line.rsplit(" -> ", 1)[1]) for line in p.trace.splitlines()]
        assert picked == sorted(values)


def test_counting_trace_is_a_running_tally():
    for p in _problems(counting):
        target, text = re.fullmatch(r"How many (\w) in (\w+)\?", p.prompt).groups()
        assert len(text) == 4 * p.difficulty
        assert p.answer == str(text.count(target))
        expected = [f"{c}{text[: i + 1].count(target)}" for i, c in enumerate(text)]
        assert p.trace.split(" ") == expected


@pytest.mark.parametrize("task", DEFAULT_TASKS, ids=lambda t: t.__name__)
def test_deterministic_by_seed_and_short(task):
    for d in range(1, 5):
        first = [task(np.random.default_rng(s), d) for s in range(30)]
        again = [task(np.random.default_rng(s), d) for s in range(30)]
        assert first == again
        assert len(set(first)) > 15
        lengths = [len(problem_document(p).encode()) for p in first]
        assert 25 <= min(lengths) and max(lengths) <= 160


def test_difficulty_knob_lengthens_problems():
    for task in DEFAULT_TASKS:
        means = [np.mean([len(task(np.random.default_rng(s), d).trace) for s in SEEDS]) for d in range(1, 5)]
        assert np.all(np.diff(means) > 0), task.__name__


def test_task_knobs_and_errors():
    p = arithmetic(np.random.default_rng(0), 3, max_operand=2)
    assert set(re.findall(r"[-+*](\d+)", p.prompt)) <= {"1", "2"}
    assert max(int(v) for v in sorting(np.random.default_rng(0), 4, max_value=3).answer.split(",")) <= 3
    assert set(counting(np.random.default_rng(0), 2, alphabet="xy").prompt.split()[-1][:-1]) <= {"x", "y"}
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="difficulty"):
            arithmetic(np.random.default_rng(0), bad)
    with pytest.raises(ValueError, match="max_operand"):
        arithmetic(np.random.default_rng(0), 1, max_operand=1)
    with pytest.raises(ValueError, match="max_value"):
        sorting(np.random.default_rng(0), 1, max_value=0)
    with pytest.raises(ValueError, match="alphabet"):
        counting(np.random.default_rng(0), 1, alphabet="aa")


def test_match_integers():
    assert match_integers("-3", "-3") and match_integers("1 ,2", "1,2")
    assert not match_integers("+3", "3") and not match_integers("3 4", "3") and not match_integers("", "3")
    assert not match_integers("1,2", "2,1") and not match_integers("1,,2", "1,2")


def test_extract_answer():
    assert extract_answer("Answer: 7") == "7"
    assert extract_answer("3+4=7\nAnswer: 7\nmore") == "7"
    assert extract_answer("Answer: 1\nAnswer: 2,3<|end|>") == "2,3"
    assert extract_answer("<think>Answer: 5</think>\nAnswer: 7") == "7"
    assert extract_answer("<think>Answer: 5</think>\nthe answer is 7") is None
    assert extract_answer("<think>Answer: 5") is None
    assert extract_answer("7") is None
    assert extract_answer("Answer:") == ""


def test_problem_document_and_pickle():
    p = Problem("arithmetic", 1, "What is 3+4?", "3+4=7", "7")
    assert problem_document(p) == "What is 3+4?\n3+4=7\nAnswer: 7"
    assert pickle.loads(pickle.dumps(p)) == p and p.verify("7")


def test_problem_source():
    source = ProblemSource(seed=3, size=400)
    problems = list(source)
    assert len(problems) == 400 and problems == [source[i] for i in reversed(range(400))][::-1]
    assert {p.task for p in problems} == {"arithmetic", "sorting", "counting"}
    assert {p.difficulty for p in problems} == {1, 2, 3, 4}
    assert ProblemSource(seed=3, size=400)[17] == problems[17]
    other = ProblemSource(seed=4, size=400)
    assert sum(a == b for a, b in zip(problems, other)) < 40
    assert pickle.loads(pickle.dumps(source))[5] == problems[5]
    assert len(ProblemSource()) == 2**62 and isinstance(ProblemSource()[2**62 - 1], Problem)
    only = ProblemSource(tasks=[sorting], difficulties=[2], size=5)
    assert all(p.task == "sorting" and p.difficulty == 2 for p in only)


def test_problem_source_errors():
    with pytest.raises(IndexError, match="index 5"):
        ProblemSource(size=5)[5]
    with pytest.raises(ValueError, match="difficulty"):
        ProblemSource(difficulties=(0,))
    with pytest.raises(ValueError, match="seed"):
        ProblemSource(seed=-1)
    with pytest.raises(ValueError, match="size"):
        ProblemSource(size=0)
    with pytest.raises(ValueError, match="tasks"):
        ProblemSource(tasks=())
