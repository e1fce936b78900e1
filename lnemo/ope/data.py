"""Data layout of click logs: padded dense session arrays, candidate sets, checks and OBP long-format adapters.

A log of S impressions with K slots is three arrays: ``items_SxK`` (int, indices into the context's candidate list,
-1 = empty slot), ``clicks_SxK`` (0/1, 0 at empty slots) and ``context_S`` (int context id). Candidate sets of C
contexts are ``where_CxN`` (valid candidates) and optionally ``features_CxNxF``. Item indices are positions in the
context's candidate list, so per-context tables (marginals, click rates) are ``[C, N, K]`` arrays gathered at
``[context, item, slot]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from lnemo.types import Array


class Sessions(NamedTuple):
    """A click log as padded dense arrays.

    Attributes:
      items_SxK: shown items, int32, -1 for empty slots (empty slots only after the shown ones).
      clicks_SxK: clicks in {0, 1}, float32.
      context_S: context (query/user) id per impression, int32.
    """

    items_SxK: Array
    clicks_SxK: Array
    context_S: Array

    @property
    def where_SxK(self) -> Array:
        """Slots that hold an item."""
        return self.items_SxK >= 0


class Candidates(NamedTuple):
    """Candidate sets of C contexts, padded to N items.

    Attributes:
      where_CxN: valid candidates, bool.
      features_CxNxF: item features per context (optional).
    """

    where_CxN: Array
    features_CxNxF: Array | None = None


def check_sessions(sessions: Sessions, *, candidates: Candidates | None = None) -> None:
    """Raises ``ValueError`` naming the offending field if a log is malformed.

    Checks: 2-D items and clicks of equal shape, 1-D contexts of matching length, at least one impression, no
    empty impression, empty slots only at the end, no repeated item within an impression, clicks in {0, 1} and 0 at
    empty slots; with candidates: context ids in range and every shown item a valid candidate.

    Args:
      sessions: the log (concrete arrays, not traced).
      candidates: optional candidate sets.

    Example:
      >>> check_sessions(Sessions(jnp.array([[0, -1]]), jnp.array([[1.0, 0.0]]), jnp.array([0])))
    """
    items, clicks, ctx = (np.asarray(a) for a in sessions)
    if items.ndim != 2:
        raise ValueError(f"items_SxK must be 2-D [S, K], got shape {items.shape}")
    if clicks.shape != items.shape:
        raise ValueError(f"clicks_SxK shape {clicks.shape} does not match items_SxK shape {items.shape}")
    if ctx.shape != items.shape[:1]:
        raise ValueError(f"context_S shape {ctx.shape} does not match the {items.shape[0]} sessions of items_SxK")
    if items.shape[0] == 0:
        raise ValueError("sessions is empty: items_SxK has 0 rows")
    shown = items >= 0
    empty = np.flatnonzero(~shown.any(axis=1))
    if empty.size:
        raise ValueError(f"items_SxK has empty sessions (no shown item) at rows {empty[:5].tolist()}")
    holes = np.flatnonzero((~shown[:, :-1] & shown[:, 1:]).any(axis=1))
    if holes.size:
        raise ValueError(f"items_SxK has an empty slot before a shown one at rows {holes[:5].tolist()}")
    srt = np.sort(np.where(shown, items, -1 - np.arange(items.shape[1])), axis=1)
    dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    if dup.size:
        raise ValueError(f"items_SxK repeats an item within a session at rows {dup[:5].tolist()}")
    if not np.isin(clicks, (0, 1)).all():
        raise ValueError(f"clicks_SxK must be 0/1, found {np.unique(clicks[~np.isin(clicks, (0, 1))])[:5].tolist()}")
    if (clicks[~shown] != 0).any():
        raise ValueError("clicks_SxK has clicks on empty slots (items_SxK == -1)")
    if candidates is not None:
        where = np.asarray(candidates.where_CxN)
        if ctx.min() < 0 or ctx.max() >= where.shape[0]:
            raise ValueError(f"context_S values must lie in [0, {where.shape[0]}), got min {ctx.min()} max {ctx.max()}")
        if items.max() >= where.shape[1]:
            raise ValueError(f"items_SxK value {items.max()} out of range for {where.shape[1]} candidates")
        bad = shown & ~where[ctx[:, None], np.maximum(items, 0)]
        if bad.any():
            row = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(f"items_SxK row {row} shows an item that is not a valid candidate of context {ctx[row]}")


def gather_logged(table_CxNxK: Array, sessions: Sessions) -> Array:
    """Looks up a per-context ``[C, N, K]`` table at each logged (context, item, slot): ``[S, K]`` (0 at empty slots).

    Example:
      >>> gather_logged(jnp.ones((1, 2, 2)), Sessions(jnp.array([[1, -1]]), jnp.zeros((1, 2)), jnp.array([0])))
      Array([[1., 0.]], dtype=float32)
    """
    items = jnp.asarray(sessions.items_SxK)
    k = jnp.arange(items.shape[-1])
    out = table_CxNxK[jnp.asarray(sessions.context_S)[:, None], jnp.maximum(items, 0), k]
    return jnp.where(items >= 0, out, 0)


def to_long(sessions: Sessions) -> dict[str, np.ndarray]:
    """Converts to OBP's long format: one row per shown slot with ``slate_id``, ``position`` (0-based), ``item``,
    ``click`` and ``context``.

    Example:
      >>> to_long(Sessions(np.array([[3, -1]]), np.array([[1, 0]]), np.array([7])))["item"]
      array([3])
    """
    items, clicks, ctx = (np.asarray(a) for a in sessions)
    slate, pos = np.nonzero(items >= 0)
    return {"slate_id": slate, "position": pos, "item": items[slate, pos], "click": clicks[slate, pos],
            "context": ctx[slate]}


def from_long(slate_id: np.ndarray, position: np.ndarray, item: np.ndarray, click: np.ndarray,
              context: np.ndarray, *, num_slots: int | None = None) -> Sessions:
    """Builds padded sessions from OBP-style long rows (any order); slate ids are renumbered 0..S-1 by first sight.

    Args:
      slate_id: impression id per row ``[R]``.
      position: 0-based slot per row ``[R]``.
      item: item index per row ``[R]``.
      click: click per row ``[R]``.
      context: context id per row ``[R]`` (constant within a slate).
      num_slots: K; default max position + 1.

    Returns:
      ``Sessions`` with S distinct slates.

    Example:
      >>> from_long(np.array([5, 5]), np.array([1, 0]), np.array([2, 4]), np.array([0, 1]), np.array([0, 0])).items_SxK
      array([[4, 2]], dtype=int32)
    """
    slate_id, position, item, click, context = (np.asarray(a) for a in (slate_id, position, item, click, context))
    n = {a.shape for a in (slate_id, position, item, click, context)}
    if len(n) != 1:
        raise ValueError(f"long-format columns must have equal length, got shapes {sorted(n)}")
    if position.size and position.min() < 0:
        raise ValueError(f"position must be 0-based and >= 0, got {position.min()}")
    k = int(position.max()) + 1 if num_slots is None else num_slots
    if position.size and position.max() >= k:
        raise ValueError(f"position {position.max()} out of range for num_slots={k}")
    _, first, row = np.unique(slate_id, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    row = rank[row]
    items = np.full((order.size, k), -1, np.int32)
    clicks = np.zeros((order.size, k), np.float32)
    items[row, position] = item
    clicks[row, position] = click
    ctx = np.zeros(order.size, np.int32)
    ctx[row] = context
    return Sessions(items, clicks, ctx)
