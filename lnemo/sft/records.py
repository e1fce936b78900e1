"""Reader of the Llama-Nemotron post-training dataset (JSONL) and its records as SFT samples.

Record schema (Llama-Nemotron-Post-Training-Dataset):

| field | content |
|---|---|
| ``input`` | chat messages, a list of ``{"role", "content"}`` (a plain string is read as one user turn) |
| ``output`` | the response; ``<think>...</think>answer`` when reasoning is on |
| ``reasoning`` | ``"on"`` / ``"off"`` |
| ``system_prompt`` | ``detailed thinking on`` / ``detailed thinking off`` |
| ``category`` | math, code, science, chat, instruction following, safety |
| ``license``, ``generator``, ``version``, ``used_in_training`` | provenance, kept in ``extra`` |

References:
  Bercovich et al., "Llama-Nemotron: Efficient Reasoning Models", arXiv 2505.00949, §4 and the dataset card.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from lnemo.data import Tokenizer, read_jsonl_records
from lnemo.sft.template import THINKING_OFF, THINKING_ON, ChatFormat, encode_chat


@dataclasses.dataclass(frozen=True)
class ChatRecord:
    """One post-training sample.

    Attributes:
      messages: the prompt turns (no system turn; the toggle is ``system_prompt``).
      output: the assistant response.
      thinking: True for reasoning on, False for off.
      system_prompt: the system turn's content (``detailed thinking on/off`` in this dataset).
      category: the record's category.
      extra: every other field of the record.
    """

    messages: tuple[dict[str, str], ...]
    output: str
    thinking: bool
    system_prompt: str
    category: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)


def parse_record(record: dict[str, Any], *, where: str = "record") -> ChatRecord:
    """A ``ChatRecord`` from one JSON object; ``ValueError`` names ``where``, the field and its value."""
    for name in ("input", "output"):
        if name not in record:
            raise ValueError(f"{where}: record has no field {name!r} (fields: {sorted(record)})")
    raw = record["input"]
    if isinstance(raw, str):
        raw = [{"role": "user", "content": raw}]
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{where}: field 'input' must be a non-empty list of messages or a string, got {raw!r:.80}")
    messages = []
    for i, m in enumerate(raw):
        if not (isinstance(m, dict) and m.get("role") in ("user", "assistant", "system")
                and isinstance(m.get("content"), str)):
            raise ValueError(f"{where}: input[{i}]={m!r:.80} must be {{'role': user|assistant|system, "
                             "'content': str}")
        messages.append({"role": m["role"], "content": m["content"]})
    if not isinstance(record["output"], str):
        raise ValueError(f"{where}: field 'output' must be a string, got {type(record['output']).__name__}")
    system = record.get("system_prompt")
    reasoning = record.get("reasoning")
    if reasoning not in ("on", "off", None):
        raise ValueError(f"{where}: field 'reasoning'={reasoning!r} must be 'on' or 'off'")
    if reasoning is None and system not in (THINKING_ON, THINKING_OFF):
        raise ValueError(f"{where}: record has neither 'reasoning' nor a 'system_prompt' of "
                         f"{THINKING_ON!r}/{THINKING_OFF!r} (got {system!r})")
    thinking = reasoning == "on" if reasoning is not None else system == THINKING_ON
    if system is None:
        system = THINKING_ON if thinking else THINKING_OFF
    if not isinstance(system, str):
        raise ValueError(f"{where}: field 'system_prompt' must be a string, got {type(system).__name__}")
    known = {"input", "output", "reasoning", "system_prompt", "category"}
    return ChatRecord(tuple(messages), record["output"], thinking, system, str(record.get("category", "")),
                      {k: v for k, v in record.items() if k not in known})


def read_post_training(paths: str | os.PathLike | Sequence[str | os.PathLike], *,
                       categories: Sequence[str] | None = None, thinking: bool | None = None) -> list[ChatRecord]:
    """Read post-training JSONL files, optionally keeping only some categories or one mode.

    Args:
      paths: a file or a list of files.
      categories: keep only these categories (None keeps all).
      thinking: keep only reasoning-on (True) or -off (False) records; None keeps both.

    Returns:
      The records, in file order.

    Raises:
      ValueError: naming file, line and field of a malformed record.

    Example:
      >>> records = read_post_training("math.jsonl", categories=["math"])  # doctest: +SKIP
      >>> examples = record_examples(records, tokenizer)  # doctest: +SKIP
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    out = []
    for path in paths:
        for lineno, record in read_jsonl_records(path):
            r = parse_record(record, where=f"{path}:{lineno}")
            if (categories is None or r.category in categories) and (thinking is None or r.thinking == thinking):
                out.append(r)
    return out


def record_example(record: ChatRecord, tokenizer: Tokenizer, *, fmt: ChatFormat = ChatFormat()) -> dict[str, np.ndarray]:
    """A record as tokens and trained-token mask: system toggle, its turns, then ``output`` as the trained turn.

    Assistant turns inside ``input`` (earlier turns of a multi-turn chat) are trained as well.
    """
    messages = [{"role": "system", "content": record.system_prompt}, *record.messages,
                {"role": "assistant", "content": record.output}]
    return encode_chat(messages, tokenizer, fmt=fmt)


def record_examples(records: Sequence[ChatRecord], tokenizer: Tokenizer, *,
                    fmt: ChatFormat = ChatFormat()) -> grain.MapDataset:
    """Records tokenised lazily, ready for ``lnemo.sft.sft_pipeline``."""
    return grain.MapDataset.source(records).map(functools.partial(record_example, tokenizer=tokenizer, fmt=fmt))
