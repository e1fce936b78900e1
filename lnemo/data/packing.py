"""Packing tokenized documents into fixed-length rows with segment ids, positions and shifted targets.

A *packed row* of length T holds consecutive documents back to back:

| field | dtype | meaning |
|---|---|---|
| ``tokens`` | int32 | input ids; ``pad_id`` in padding |
| ``targets`` | int32 | the next token of the same segment; ``pad_id`` where there is none |
| ``loss_mask`` | bool | True where ``targets`` is trained on |
| ``segment_ids`` | int32 | 1, 2, ... per document piece in the row; 0 = padding |
| ``positions`` | int32 | position inside the piece, restarting at 0 |

Targets never cross a segment boundary: the last token of every segment is masked out of the loss.
A document longer than what is left of a row is split and continues, as a new segment whose positions
restart at 0, at the start of the next row; the one next-token pair across the split is not trained.
Only the last row of a finite stream has padding. Packing is grain's concat-then-split, so the
position in the stream is checkpointable.
"""

from __future__ import annotations

import functools
from typing import Any

import grain
import numpy as np

#: Fields of a packed row (and of a batch of rows).
ROW_FIELDS = ("tokens", "targets", "loss_mask", "segment_ids", "positions")


def next_token_targets(
    tokens_xT: np.ndarray, segment_ids_xT: np.ndarray, target_mask_xT: np.ndarray, *, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Next-token targets inside segments, and where they count.

    $$\\text{targets}_t = \\text{tokens}_{t+1},\\quad
    \\text{loss\\_mask}_t = [s_{t+1} = s_t \\ne 0] \\wedge m_{t+1}$$

    where $s$ are segment ids and $m$ marks the tokens to be learned. Elsewhere the target is ``pad_id``.

    Args:
      tokens_xT: ids, ``[..., T]``.
      segment_ids_xT: segment ids, ``[..., T]``, 0 = padding.
      target_mask_xT: bool ``[..., T]``, True where a token should be predicted (e.g. assistant tokens in SFT).
      pad_id: id written where there is no target.

    Returns:
      ``(targets_xT, loss_mask_xT)``: int32 and bool, ``[..., T]``.

    Example:
      >>> t, m = next_token_targets(np.array([5, 6, 7, 8]), np.array([1, 1, 2, 0]), np.ones(4, bool), pad_id=0)
      >>> t.tolist(), m.tolist()
      ([6, 0, 0, 0], [True, False, False, False])
    """
    segment_ids_xT = np.asarray(segment_ids_xT)
    same_xT = np.zeros(segment_ids_xT.shape, bool)
    same_xT[..., :-1] = (segment_ids_xT[..., 1:] == segment_ids_xT[..., :-1]) & (segment_ids_xT[..., :-1] != 0)
    next_xT = np.full(segment_ids_xT.shape, pad_id, np.int32)
    next_xT[..., :-1] = np.asarray(tokens_xT)[..., 1:]
    loss_mask_xT = np.zeros(segment_ids_xT.shape, bool)
    loss_mask_xT[..., :-1] = same_xT[..., :-1] & np.asarray(target_mask_xT, bool)[..., 1:]
    return np.where(same_xT, next_xT, pad_id).astype(np.int32), loss_mask_xT


def pack(examples: grain.IterDataset, *, seq_len: int, pad_id: int) -> grain.IterDataset:
    """Pack a stream of tokenized examples into rows of ``seq_len`` tokens (see the module docstring).

    Args:
      examples: elements are dicts with ``"tokens"`` (1-D ints, non-empty) and ``"target_mask"`` (1-D bools
        of the same length, True where the token is to be predicted).
      seq_len: row length T, >= 2.
      pad_id: id for padding and missing targets.

    Returns:
      A dataset of rows: dicts of the `ROW_FIELDS`, each a ``[T]`` array.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    checked = examples.map(_check_example)
    packed = grain.experimental.ConcatThenSplitIterDataset(
        checked, length_struct={"tokens": seq_len, "target_mask": seq_len}
    )
    return _JsonSafeState(packed).map(functools.partial(_finish_row, pad_id=pad_id))


class _JsonSafeState(grain.IterDataset):
    """Makes concat-then-split restorable from JSON.

    grain 0.2.18 compares a restored remainder slice with the tuple ``(-1, -1)``; a state that went
    through JSON (orbax ``JsonSave``) holds lists instead, and resuming would silently skip data.
    """

    def __iter__(self) -> grain.DatasetIterator:
        return _JsonSafeStateIterator(self._parent.__iter__())


class _JsonSafeStateIterator(grain.DatasetIterator):
    def __next__(self) -> Any:
        return next(self._parent)

    def get_state(self) -> dict[str, Any]:
        return self._parent.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        slices = {k: tuple(v) for k, v in state["remainder_slices"].items()}
        self._parent.set_state({**state, "remainder_slices": slices})


def _check_example(example: Any) -> dict[str, np.ndarray]:
    if not isinstance(example, dict) or "tokens" not in example or "target_mask" not in example:
        raise ValueError(f"an example must be a dict with 'tokens' and 'target_mask', got {_describe(example)}")
    tokens = np.asarray(example["tokens"], np.int32)
    target_mask = np.asarray(example["target_mask"], bool)
    if tokens.ndim != 1 or tokens.size == 0:
        raise ValueError(f"example 'tokens' must be a non-empty 1-D sequence, got shape {tokens.shape}")
    if target_mask.shape != tokens.shape:
        raise ValueError(f"example 'target_mask' has shape {target_mask.shape}, 'tokens' has {tokens.shape}")
    return {"tokens": tokens, "target_mask": target_mask}


def _finish_row(row: dict[str, np.ndarray], *, pad_id: int) -> dict[str, np.ndarray]:
    segment_ids_T = row["tokens_segment_ids"].astype(np.int32)
    tokens_T = np.where(segment_ids_T == 0, pad_id, row["tokens"]).astype(np.int32)
    targets_T, loss_mask_T = next_token_targets(tokens_T, segment_ids_T, row["target_mask"], pad_id=pad_id)
    return {
        "tokens": tokens_T,
        "targets": targets_T,
        "loss_mask": loss_mask_T,
        "segment_ids": segment_ids_T,
        "positions": row["tokens_positions"].astype(np.int32),
    }


def _describe(example: Any) -> str:
    return f"dict with keys {sorted(example)}" if isinstance(example, dict) else type(example).__name__
