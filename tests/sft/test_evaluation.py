import jax
import numpy as np
import pytest

from lnemo.data import ByteTokenizer, Problem, match_integers
from lnemo.generate import GenerateOutput, Greedy
from lnemo.models import ModelConfig, init
from lnemo.sft import evaluate, format_ok, gsm8k_answer

TOK = ByteTokenizer()


@pytest.mark.parametrize("text, expect", [
    ("#### 72", "72"), ("so 3*4=12\n#### $1,234.", "1234"), ("#### -5", "-5"), ("#### 3.50", "3.50"),
    ("first #### 1 then #### 2", "2"), ("no marker 42", None), ("#### none", None),
])
def test_gsm8k_answer(text, expect):
    assert gsm8k_answer(text) == expect


@pytest.mark.parametrize("text, thinking, ok", [
    ("<think>a</think>Answer: 1", True, True),
    ("  <think>a\nb</think>\nAnswer: 1", True, True),
    ("Answer: 1", True, False),
    ("<think>a</think>", True, False),
    ("<think>a</think><think>b</think>Answer: 1", True, False),
    ("x<think>a</think>Answer: 1", True, False),
    ("<think>a Answer: 1", True, False),
    ("Answer: 1", False, True),
    ("<think>a</think>Answer: 1", False, False),
    ("Answer: </think> 1", False, False),
])
def test_format_ok(text, thinking, ok):
    assert format_ok(text, thinking=thinking) is ok


def test_evaluate_grades_responses_of_a_model(monkeypatch):
    # Replace generation by scripted responses to check the bookkeeping exactly.
    import lnemo.sft.evaluation as ev

    scripts = {True: "<think>1+1=2</think>Answer: 2", False: "Answer: 3"}

    def fake_generate(config, params, tokens, key, *, where, max_new_tokens, sampler, num_samples, eos_ids, pad_id,
                      mesh):
        thinking = "thinking on" in TOK.decode(np.asarray(tokens[0])[np.asarray(where[0])])
        ids = TOK.encode(scripts[thinking], allow_special=True) + [TOK.end_id]
        rows = tokens.shape[0] * num_samples
        out = np.full((rows, max_new_tokens), pad_id, np.int32)
        out[:, :len(ids)] = ids
        n = np.full((rows,), len(ids))
        return GenerateOutput(out, np.zeros(out.shape), np.zeros(out.shape), n, np.ones((rows,), bool))

    monkeypatch.setattr(ev, "generate", fake_generate)
    problems = [Problem("arithmetic", 1, "What is 1+1?", "1+1=2", "2", match_integers),
                Problem("arithmetic", 2, "What is 1+2?", "1+2=3", "3", match_integers)]
    reports = evaluate(None, None, problems, TOK, jax.random.key(0), num_samples=3, max_new_tokens=40, batch_size=4)
    on, off = reports["on"], reports["off"]
    assert on.pass_at_1 == 0.5 and off.pass_at_1 == 0.5
    assert on.by_difficulty == {1: 1.0, 2: 0.0} and off.by_difficulty == {1: 0.0, 2: 1.0}
    assert on.format_rate == 1.0 and off.format_rate == 1.0
    assert on.mean_length == len(TOK.encode(scripts[True], allow_special=True)) + 1
    assert len(on.samples) == 6 and on.samples[0].response == scripts[True]


def test_evaluate_runs_a_real_model_and_counts_truncation_as_wrong():
    cfg = ModelConfig.tiny()
    params = jax.jit(init, static_argnums=0)(cfg, jax.random.key(0))
    problems = [Problem("arithmetic", 1, "What is 1+1?", "1+1=2", "2", match_integers)] * 3
    reports = evaluate(cfg, params, problems, TOK, jax.random.key(0), modes=(False,), num_samples=2,
                       sampler=Greedy(), max_new_tokens=6, batch_size=2)
    off = reports["off"]
    assert set(reports) == {"off"} and len(off.samples) == 6
    assert all(1 <= s.length <= 6 for s in off.samples)
    unfinished = [s for s in off.samples if not s.finished]
    assert all(not s.correct and not s.format_ok for s in unfinished)
    assert off.finished_rate == np.mean([s.finished for s in off.samples])
