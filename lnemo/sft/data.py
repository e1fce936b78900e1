"""Paired on/off SFT samples from the synthetic tasks, mixtures, and packed batches with per-token modes.

Every problem gives two samples with the same prompt: thinking on (gold trace in ``<think>`` tags, then
the answer line) and thinking off (the answer line alone). Batches are ``lnemo.data.pack_and_batch``
rows plus a ``mode`` field ``[B, T]`` int32: 1 for tokens of a thinking-on conversation, 0 for
thinking-off, -1 where the mode is unknown (padding, or a conversation split across rows whose system
turn is in the previous row); SFT reports its loss per mode from it.

References:
  Bercovich et al., "Llama-Nemotron: Efficient Reasoning Models", arXiv 2505.00949, §4 (paired data,
  batches mixing both modes).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import grain
import numpy as np

from lnemo.data import Problem, Tokenizer, format_answer, pack_and_batch
from lnemo.sft.template import ChatFormat, chat_messages, encode_chat, reasoning_response, system_prompt

MODE_ON, MODE_OFF, MODE_UNKNOWN = 1, 0, -1


def problem_example(problem: Problem, tokenizer: Tokenizer, *, thinking: bool,
                    fmt: ChatFormat = ChatFormat()) -> dict[str, np.ndarray]:
    """One SFT sample of a problem: on = ``<think>trace</think>Answer: a``, off = ``Answer: a``.

    Returns:
      ``{"tokens", "target_mask"}`` (see ``encode_chat``).
    """
    response = reasoning_response(format_answer(problem.answer), trace=problem.trace, thinking=thinking, fmt=fmt)
    return encode_chat(chat_messages(problem.prompt, response, thinking=thinking), tokenizer, fmt=fmt)


def problem_examples(problems: Sequence[Problem], tokenizer: Tokenizer, *, thinking: bool,
                     fmt: ChatFormat = ChatFormat()) -> grain.MapDataset:
    """Every problem in one mode, tokenised lazily."""
    return grain.MapDataset.source(problems).map(
        functools.partial(problem_example, tokenizer=tokenizer, thinking=thinking, fmt=fmt))


def paired_examples(problems: Sequence[Problem], tokenizer: Tokenizer, *, on_weight: float = 1.0,
                    off_weight: float = 1.0, fmt: ChatFormat = ChatFormat()) -> grain.MapDataset:
    """Both modes of the same problems, mixed with weights ``on_weight : off_weight``.

    Equal weights interleave on and off samples one to one (element ``2i`` is problem ``i`` on,
    ``2i + 1`` the same problem off); a zero weight drops that mode (``off_weight=0`` is the
    reasoning-only stage of LN-Nano). The mixture ends when either mode runs out, so with unequal weights
    the lighter mode repeats less than once through the problems.

    Args:
      problems: the problems (any random-access sequence, e.g. ``lnemo.data.ProblemSource``).
      tokenizer: the tokenizer.
      on_weight: non-negative weight of thinking-on samples.
      off_weight: non-negative weight of thinking-off samples (not both zero).
      fmt: the turn format.

    Returns:
      A ``grain.MapDataset`` of ``{"tokens", "target_mask"}``.
    """
    if on_weight < 0 or off_weight < 0 or on_weight + off_weight == 0:
        raise ValueError(f"paired_examples: on_weight={on_weight} and off_weight={off_weight} must be >= 0 "
                         "and not both 0")
    parts = [(w, problem_examples(problems, tokenizer, thinking=t, fmt=fmt))
             for w, t in ((on_weight, True), (off_weight, False)) if w > 0]
    if len(parts) == 1:
        return parts[0][1]
    return grain.MapDataset.mix([d for _, d in parts], [w for w, _ in parts])


def token_modes(tokens_BxT: np.ndarray, segment_ids_BxT: np.ndarray, *, on_ids: Sequence[int],
                off_ids: Sequence[int]) -> np.ndarray:
    """Per-token mode of packed rows: 1 if the token's segment holds ``on_ids``, 0 if ``off_ids``, else -1.

    Args:
      tokens_BxT: token ids.
      segment_ids_BxT: segment ids, 0 = padding.
      on_ids: the id sequence of the thinking-on system turn.
      off_ids: the id sequence of the thinking-off system turn.

    Returns:
      int32 ``[B, T]``.

    Example:
      >>> token_modes(np.array([[7, 1, 2, 7, 3, 0]]), np.array([[1, 1, 1, 2, 2, 0]]), on_ids=[1, 2], off_ids=[3])
      array([[ 1,  1,  1,  0,  0, -1]], dtype=int32)
    """
    tokens_BxT, segment_ids_BxT = np.asarray(tokens_BxT), np.asarray(segment_ids_BxT)
    modes_BxT = np.full(tokens_BxT.shape, MODE_UNKNOWN, np.int32)
    for b in range(tokens_BxT.shape[0]):
        for s in np.unique(segment_ids_BxT[b]):
            if s == 0:
                continue
            where_T = segment_ids_BxT[b] == s
            seg = tokens_BxT[b][where_T]
            if _contains(seg, on_ids):
                modes_BxT[b][where_T] = MODE_ON
            elif _contains(seg, off_ids):
                modes_BxT[b][where_T] = MODE_OFF
    return modes_BxT


def _contains(seq: np.ndarray, sub: Sequence[int]) -> bool:
    if len(sub) > len(seq):
        return False
    windows = np.lib.stride_tricks.sliding_window_view(seq, len(sub))
    return bool(np.any(np.all(windows == np.asarray(sub), axis=-1)))


def system_turn_ids(tokenizer: Tokenizer, *, thinking: bool, fmt: ChatFormat = ChatFormat()) -> list[int]:
    """The ids of the toggle's system turn (prefix, content, end), as ``encode_chat`` writes them."""
    return encode_chat([{"role": "system", "content": system_prompt(thinking)}], tokenizer, fmt=fmt
                       )["tokens"][len(tokenizer.encode(fmt.begin, allow_special=True)):].tolist()


def sft_pipeline(examples: grain.MapDataset, tokenizer: Tokenizer, *, seq_len: int, batch_size: int, seed: int = 0,
                 num_epochs: int | None = None, fmt: ChatFormat = ChatFormat(),
                 shard: grain.sharding.ShardOptions | None = None) -> grain.IterDataset:
    """Shuffled, packed batches of SFT examples with the per-token ``mode`` field added.

    Args:
      examples: ``{"tokens", "target_mask"}`` elements (``paired_examples``, ``record_examples``).
      tokenizer: the tokenizer (its pad id fills padding).
      seq_len: row length T.
      batch_size: rows per batch B on this process.
      seed: shuffle seed.
      num_epochs: passes over the examples; None repeats forever.
      fmt: the turn format (to find each conversation's mode).
      shard: this process's shard (default: one per JAX process).

    Returns:
      Batches: the fields of ``lnemo.data.pack_and_batch`` plus ``mode`` int32 ``[B, T]``.
    """
    on_ids = system_turn_ids(tokenizer, thinking=True, fmt=fmt)
    off_ids = system_turn_ids(tokenizer, thinking=False, fmt=fmt)

    def add_modes(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {**batch, "mode": token_modes(batch["tokens"], batch["segment_ids"], on_ids=on_ids, off_ids=off_ids)}

    return pack_and_batch(examples, seq_len=seq_len, batch_size=batch_size, pad_id=tokenizer.pad_id, seed=seed,
                          num_epochs=num_epochs, shard=shard).map(add_modes)
