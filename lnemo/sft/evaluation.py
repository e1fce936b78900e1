"""Evaluation per reasoning mode: pass@1 over k samples, format compliance, response length.

For each mode (thinking on / off), every problem is prompted with the toggle, ``k`` responses are
sampled, the answer is extracted and verified, and the report gives

- ``pass_at_1``: the fraction of correct samples, averaged over problems
  ($\\frac1P\\sum_p \\frac1k\\sum_j c_{pj}$, Llama-Nemotron's "pass@1 averaged over k samples");
- ``format_rate``: the fraction of samples that follow the mode's format (``format_ok``);
- ``mean_length``: mean generated tokens per sample (the end-of-turn token included);
- accuracy per difficulty and per task.

References:
  Bercovich et al., "Llama-Nemotron: Efficient Reasoning Models", arXiv 2505.00949, §5 (evaluation).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from lnemo.data import Problem, Tokenizer, extract_answer
from lnemo.generate import Categorical, Chain, Sampler, Temperature, TopP, generate
from lnemo.models import ModelConfig
from lnemo.sft.template import ChatFormat, prompt_ids
from lnemo.types import PRNGKey, PyTree

_GSM8K = re.compile(r"-?[\d,]*\.?\d+")


def gsm8k_answer(text: str) -> str | None:
    """The number after the last ``####`` (GSM8K's answer marker), without commas or ``$``; None if absent.

    Example:
      >>> gsm8k_answer("She pays 3 * 4 = 12 dollars.\\n#### $1,234")
      '1234'
      >>> gsm8k_answer("no marker") is None
      True
    """
    if "####" not in text:
        return None
    match = _GSM8K.search(text.rsplit("####", 1)[1].replace("$", ""))
    return None if match is None else match.group(0).replace(",", "")


def format_ok(response: str, *, thinking: bool, fmt: ChatFormat = ChatFormat()) -> bool:
    """Whether a finished response follows its mode's format.

    On: the response opens with the one and only ``<think>``, which the one and only ``</think>`` closes,
    followed by a non-empty answer. Off: neither tag appears anywhere. ``response`` is the text without
    the closing end-of-turn marker.

    Example:
      >>> format_ok("<think>3+4=7</think>Answer: 7", thinking=True), format_ok("Answer: 7", thinking=True)
      (True, False)
      >>> format_ok("Answer: 7", thinking=False), format_ok("<think></think>Answer: 7", thinking=False)
      (True, False)
    """
    opens, closes = response.count(fmt.think_start), response.count(fmt.think_end)
    if not thinking:
        return opens == 0 and closes == 0
    return (opens == 1 and closes == 1 and response.lstrip().startswith(fmt.think_start)
            and bool(response.split(fmt.think_end, 1)[1].strip()))


@dataclasses.dataclass(frozen=True)
class Sample:
    """One generated response and its grading."""

    problem: Problem
    thinking: bool
    response: str
    answer: str | None
    correct: bool
    format_ok: bool
    length: int
    finished: bool


@dataclasses.dataclass(frozen=True)
class ModeReport:
    """Metrics of one mode (see the module docstring)."""

    thinking: bool
    pass_at_1: float
    format_rate: float
    mean_length: float
    finished_rate: float
    by_difficulty: dict[int, float]
    by_task: dict[str, float]
    samples: tuple[Sample, ...] = dataclasses.field(repr=False)

    def summary(self) -> dict[str, float]:
        """The scalar metrics, for logs and JSON."""
        return {"pass_at_1": self.pass_at_1, "format_rate": self.format_rate, "mean_length": self.mean_length,
                "finished_rate": self.finished_rate}


def evaluate(config: ModelConfig, params: PyTree, problems: Sequence[Problem], tokenizer: Tokenizer, key: PRNGKey,
             *, modes: Sequence[bool] = (True, False), num_samples: int = 4,
             sampler: Sampler = Categorical(Chain((Temperature(0.6), TopP(0.95)))), max_new_tokens: int = 256,
             batch_size: int = 32, extract: Callable[[str], str | None] = extract_answer,
             fmt: ChatFormat = ChatFormat(), mesh: Mesh | None = None) -> dict[str, ModeReport]:
    """Generate ``num_samples`` responses per problem in each mode and grade them.

    Prompts are left-padded to one length (rounded up to a multiple of 8) and generated in batches of
    ``batch_size`` prompts, so evaluation compiles once per setting. Generation stops at ``fmt.end`` or
    the tokenizer's EOS; a response cut by ``max_new_tokens`` counts as wrong and badly formatted.

    Args:
      config: the model.
      params: its parameters.
      problems: ``Problem`` records (``prompt``, ``answer``, ``verify``); wrap your own data in them.
      tokenizer: the tokenizer.
      key: PRNG key (each mode and batch folds in its index).
      modes: which modes to evaluate (True = thinking on).
      num_samples: k samples per problem.
      sampler: the token sampler (Llama-Nemotron evaluates at temperature 0.6, top-p 0.95).
      max_new_tokens: the longest response.
      batch_size: prompts per generation call (``batch_size * num_samples`` rows).
      extract: response text -> answer text (``extract_answer`` or ``gsm8k_answer``).
      fmt: the turn format.
      mesh: shard generation over this mesh's batch axes.

    Returns:
      ``{"on": ModeReport, "off": ModeReport}`` for the requested modes.

    Example:
      >>> reports = evaluate(cfg, params, problems, ByteTokenizer(), jax.random.key(0))  # doctest: +SKIP
      >>> reports["on"].pass_at_1, reports["off"].format_rate  # doctest: +SKIP
    """
    if not problems:
        raise ValueError("evaluate: problems is empty")
    end_id = tokenizer.token_id(fmt.end)
    reports = {}
    for m, thinking in enumerate(modes):
        prompts = [prompt_ids(p.prompt, tokenizer, thinking=thinking, fmt=fmt) for p in problems]
        width = -(-max(len(p) for p in prompts) // 8) * 8
        samples: list[Sample] = []
        for start in range(0, len(problems), batch_size):
            chunk = prompts[start:start + batch_size]
            rows = chunk + [chunk[0]] * (batch_size - len(chunk))
            tokens = np.zeros((batch_size, width), np.int32)
            where = np.zeros((batch_size, width), bool)
            for r, ids in enumerate(rows):
                tokens[r, width - len(ids):], where[r, width - len(ids):] = ids, True
            out = generate(config, params, jnp.asarray(tokens), jax.random.fold_in(jax.random.fold_in(key, m), start),
                           where=jnp.asarray(where), max_new_tokens=max_new_tokens, sampler=sampler,
                           num_samples=num_samples, eos_ids=(end_id, tokenizer.eos_id), pad_id=tokenizer.pad_id,
                           mesh=mesh)
            out_tokens, lengths, stopped = (np.asarray(x) for x in jax.device_get((out.tokens, out.lengths, out.stopped)))
            for r in range(len(chunk)):
                problem = problems[start + r]
                for g in range(num_samples):
                    row = r * num_samples + g
                    n = int(lengths[row])
                    finished = bool(stopped[row])
                    text = tokenizer.decode(out_tokens[row, :n - 1] if finished else out_tokens[row, :n])
                    answer = extract(text) if finished else None
                    samples.append(Sample(problem, thinking, text, answer, answer is not None and problem.verify(answer),
                                          finished and format_ok(text, thinking=thinking, fmt=fmt), n, finished))
        reports["on" if thinking else "off"] = _report(thinking, samples)
    return reports


def _report(thinking: bool, samples: list[Sample]) -> ModeReport:
    # Every problem has exactly k samples, so the mean over problems of per-problem means is the plain mean.
    pass_at_1 = float(np.mean([s.correct for s in samples]))

    def grouped(key: Callable[[Sample], object]) -> dict:
        groups: dict = defaultdict(list)
        for s in samples:
            groups[key(s)].append(s.correct)
        return {k: float(np.mean(v)) for k, v in sorted(groups.items())}

    return ModeReport(thinking, pass_at_1, float(np.mean([s.format_ok for s in samples])),
                      float(np.mean([s.length for s in samples])), float(np.mean([s.finished for s in samples])),
                      grouped(lambda s: s.problem.difficulty), grouped(lambda s: s.problem.task), tuple(samples))
