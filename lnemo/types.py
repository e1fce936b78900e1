"""Shared type aliases, the shape-letter legend and protocols.

Array names in lnemo carry their shape as a suffix, e.g. ``logits_BxTxV``. The letters:

| letter | meaning |
|---|---|
| B | batch (sequences or sessions in a batch) |
| T | sequence length (tokens) |
| S | sessions (logged ranking impressions) / source length |
| K | slots of a ranked list (positions shown) |
| N | candidate items of a context |
| C | contexts (queries, users) |
| V | vocabulary size |
| D | model (hidden) width |
| H | attention query heads |
| G | KV heads (groups), or samples per prompt in RL |
| Hd | head dimension (written ``Hd`` inside names: ``q_BxTxHxHd``) |
| I | FFN intermediate width |
| L | layers |
| F | features |
| R | bootstrap replicates |
"""

from __future__ import annotations

from typing import Any, Protocol

import jax

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any


class LossFn(Protocol):
    """A training loss: ``(params, batch, rng) -> (scalar loss, metrics dict)``."""

    def __call__(self, params: PyTree, batch: PyTree, rng: PRNGKey) -> tuple[Array, dict[str, Array]]: ...


class RewardFn(Protocol):
    """A verifiable reward: completion texts and their problems -> float rewards, one per completion."""

    def __call__(self, completions: list[str], problems: list[Any]) -> list[float]: ...


class ClickModel(Protocol):
    """A click model: expected clicks of a ranking and a sampler of clicks."""

    def expected_clicks(self, relevance_SxK: Array) -> Array: ...

    def sample(self, key: PRNGKey, relevance_SxK: Array) -> Array: ...
