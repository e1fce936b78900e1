"""Logical axis names and the default rules table mapping them to mesh axes.

Every parameter and key activation in lnemo names its dimensions with *logical* axes
(``"batch"``, ``"embed"``, ``"heads"``, ...). One table maps them to mesh axes; changing the
parallelism layout means changing this table, not the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from jax.sharding import PartitionSpec

from lnemo.types import Array

LogicalAxes = tuple[str | None, ...]
Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

#: Default logical -> mesh axis rules for a ``("data", "fsdp", "tensor")`` mesh.
DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("sequence", None),
    ("embed", "fsdp"),
    ("embed_out", "tensor"),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("norm", None),
    ("cache_sequence", None),
)


def logical_to_spec(logical_axes: Sequence[str | None], rules: Rules = DEFAULT_RULES) -> PartitionSpec:
    """Translate logical axis names to a ``PartitionSpec`` with ``rules``.

    A mesh axis is used at most once per spec: a later logical axis mapping to a mesh axis
    already taken is left unsharded. Unknown names and ``None`` are unsharded.
    """
    table = dict(rules)
    used: set[str] = set()
    out: list[str | tuple[str, ...] | None] = []
    for name in logical_axes:
        target = table.get(name) if name is not None else None
        if target is None:
            out.append(None)
            continue
        axes = (target,) if isinstance(target, str) else tuple(target)
        axes = tuple(a for a in axes if a not in used)
        used.update(axes)
        out.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*out)


def constrain(x: Array, logical_axes: Sequence[str | None], rules: Rules = DEFAULT_RULES) -> Array:
    """``with_sharding_constraint`` by logical names; the identity when no mesh is set.

    Mesh axes that do not exist in the current mesh, or that do not divide the dimension,
    are dropped, so heterogeneous shapes never fail.
    """
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return x
    spec = fit_spec(logical_to_spec(logical_axes, rules), x.shape, dict(mesh.shape))
    return jax.lax.with_sharding_constraint(x, spec)


def fit_spec(spec: PartitionSpec, shape: Sequence[int], mesh_shape: dict[str, int]) -> PartitionSpec:
    """Drop mesh axes that are absent from the mesh or do not divide their dimension."""
    out = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        if entry is None:
            out.append(None)
            continue
        axes = (entry,) if isinstance(entry, str) else tuple(entry)
        kept: list[str] = []
        size = 1
        for a in axes:
            n = mesh_shape.get(a)
            if n is None or n == 1:
                continue
            if dim % (size * n) == 0:
                kept.append(a)
                size *= n
        out.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*out)
