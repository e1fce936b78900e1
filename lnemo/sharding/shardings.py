"""``NamedSharding`` trees for parameters, optimiser state and batches from logical axis names."""

from __future__ import annotations

from typing import Any

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lnemo.sharding.rules import DEFAULT_RULES, Rules, fit_spec, logical_to_spec
from lnemo.types import PyTree


def _is_axes(x: Any) -> bool:
    return isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)


def param_shardings(
    abstract_params: PyTree, logical_axes: PyTree, mesh: Mesh, rules: Rules = DEFAULT_RULES
) -> PyTree:
    """Map every parameter to a ``NamedSharding`` from its logical axis names.

    Each leaf's names go through ``rules`` (``logical_to_spec``) and then ``fit_spec``, which
    drops mesh axes that are absent from ``mesh`` or do not divide the dimension. A layer whose
    KV-head count or FFN width does not divide the ``tensor`` axis is therefore replicated along
    that dimension instead of failing; every returned sharding is valid for its shape.

    Args:
      abstract_params: pytree of arrays or ``jax.ShapeDtypeStruct`` (anything with ``.shape``),
        e.g. ``jax.eval_shape(init, key)``.
      logical_axes: the same structure, each leaf a tuple of logical names (or ``None`` for an
        unsharded dimension), one per dimension of the matching parameter.
      mesh: the device mesh.
      rules: logical -> mesh axis table.

    Returns:
      A pytree of ``NamedSharding`` with the structure of ``abstract_params``.

    Example:
      >>> params = {"w": jax.ShapeDtypeStruct((64, 48), jnp.float32)}
      >>> param_shardings(params, {"w": ("embed", "mlp")}, make_mesh({"data": 2, "fsdp": 2, "tensor": 2}))
    """
    params_def = jax.tree.structure(abstract_params)
    axes_def = jax.tree.structure(logical_axes, is_leaf=_is_axes)
    if params_def != axes_def:
        params_paths = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(abstract_params)[0]}
        axes_paths = {
            jax.tree_util.keystr(p)
            for p, _ in jax.tree_util.tree_flatten_with_path(logical_axes, is_leaf=_is_axes)[0]
        }
        raise ValueError(
            "param_shardings: logical_axes does not match abstract_params; "
            f"params without axes: {', '.join(sorted(params_paths - axes_paths)) or 'none'}; "
            f"axes without params: {', '.join(sorted(axes_paths - params_paths)) or 'none'}"
        )
    mesh_shape = dict(mesh.shape)

    def one(path: Any, leaf: Any, names: Any) -> NamedSharding:
        if not _is_axes(names) or len(names) != len(leaf.shape):
            raise ValueError(
                f"param_shardings: parameter {jax.tree_util.keystr(path)} has shape {tuple(leaf.shape)} "
                f"but logical axes {names!r}; give one name (or None) per dimension"
            )
        spec = fit_spec(logical_to_spec(names, rules), leaf.shape, mesh_shape)
        return NamedSharding(mesh, spec)

    leaves = jax.tree_util.tree_flatten_with_path(abstract_params)[0]
    axes_leaves = jax.tree.leaves(logical_axes, is_leaf=_is_axes)
    return jax.tree.unflatten(params_def, [one(p, x, n) for (p, x), n in zip(leaves, axes_leaves, strict=True)])


def opt_state_shardings(
    optimizer: optax.GradientTransformation, abstract_params: PyTree, param_shardings: PyTree
) -> PyTree:
    """Shardings of ``optimizer.init(params)``: parameter-shaped leaves follow their parameter.

    Moment estimates and other per-parameter leaves take the matching parameter's sharding
    (found with ``optax.tree_map_params``); scalars such as step counts are replicated. Without
    this, ``jax.jit(optimizer.init)`` on an Auto mesh leaves the state on one device.

    Args:
      optimizer: the optax transformation.
      abstract_params: pytree of arrays or ``jax.ShapeDtypeStruct``.
      param_shardings: matching tree of ``NamedSharding`` (from ``param_shardings``).

    Returns:
      A pytree of ``NamedSharding`` with the structure of the optimiser state.
    """
    shardings = jax.tree.leaves(param_shardings, is_leaf=lambda x: isinstance(x, NamedSharding))
    if not shardings:
        raise ValueError("opt_state_shardings: param_shardings holds no NamedSharding")
    replicated = NamedSharding(shardings[0].mesh, PartitionSpec())
    abstract_state = jax.eval_shape(optimizer.init, abstract_params)
    # Masked optimisers (optax.masked, multi_transform) hold MaskedNode where a param is excluded.
    return optax.tree_map_params(
        optimizer,
        lambda leaf, sharding: leaf if isinstance(leaf, optax.MaskedNode) else sharding,
        abstract_state,
        param_shardings,
        transform_non_params=lambda _: replicated,
        is_leaf=lambda x: isinstance(x, optax.MaskedNode),
    )


def batch_sharding(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    """Sharding of a batch: the leading dimension split over the mesh axes of ``"batch"``.

    Use it as the sharding of every leaf of a batch dict (a pytree prefix). The global batch
    size must be divisible by the product of those mesh axes.

    Args:
      mesh: the device mesh.
      rules: logical -> mesh axis table; mesh axes that ``mesh`` lacks are dropped.

    Returns:
      ``NamedSharding(mesh, PartitionSpec(batch_axes))``.
    """
    spec = fit_spec(logical_to_spec(("batch",), rules), (0,), dict(mesh.shape))
    return NamedSharding(mesh, spec)


def with_shardings(abstract: PyTree, shardings: PyTree) -> PyTree:
    """Attach shardings to a tree of arrays or shape structs, giving ``jax.ShapeDtypeStruct`` leaves.

    The result is the target description that ``jax.jit`` (``out_shardings``) and checkpoint
    restore (``lnemo.checkpoint.Checkpointer.restore``) consume.

    Args:
      abstract: pytree of arrays or ``jax.ShapeDtypeStruct``.
      shardings: matching pytree of ``jax.sharding.Sharding``.

    Returns:
      Pytree of ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)``.
    """
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, shardings)
