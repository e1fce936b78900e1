"""Public helpers for tests: compile counting."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCount:
    """Number of XLA compilations seen so far inside a ``count_compiles()`` block."""

    def __init__(self) -> None:
        self.count = 0

    def _listener(self, event: str, duration_secs: float, **kwargs: object) -> None:
        if event == _COMPILE_EVENT:
            self.count += 1


@contextlib.contextmanager
def count_compiles() -> Iterator[CompileCount]:
    """Count backend compilations (cache misses of ``jax.jit``) inside the ``with`` block.

    Returns:
      A context manager yielding a ``CompileCount`` whose ``count`` grows with each compilation.

    Example:
      >>> with count_compiles() as compiles:
      ...     for _ in range(3):
      ...         state, _ = step(state, batch)
      >>> assert compiles.count == 1
    """
    counter = CompileCount()
    jax.monitoring.register_event_duration_secs_listener(counter._listener)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(counter._listener)
