"""Pure pytree-to-pytree model edits. Nothing here mutates its inputs.

Layer parameters live under ``params["layers_{i}"]``; a layer's sub-tree holds ``"attn"`` and/or ``"ffn"``
entries (absent for no-op sub-blocks). Every edit returns a new ``(config, params)`` pair whose shapes are
checked against the new config.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lnemo.models.config import BlockConfig, FFNConfig, ModelConfig
from lnemo.models.transformer import abstract_params
from lnemo.types import PyTree


def layer_key(i: int) -> str:
    return f"layers_{i}"


def extract_layer(params: PyTree, layer: int) -> PyTree:
    """The parameter sub-tree of layer ``layer`` (a shallow copy)."""
    key = layer_key(layer)
    if key not in params:
        raise KeyError(f"params has no {key!r}; layers present: {sorted(k for k in params if k.startswith('layers_'))}")
    return jax.tree.map(lambda x: x, params[key])


def check_params(config: ModelConfig, params: PyTree) -> None:
    """Raise ``ValueError`` naming the first parameter whose presence, shape or dtype disagrees with ``config``."""
    want = abstract_params(config)
    want_flat = dict(jax.tree_util.tree_flatten_with_path(want)[0])
    got_flat = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    for path, spec in want_flat.items():
        name = jax.tree_util.keystr(path)
        if path not in got_flat:
            raise ValueError(f"parameter {name} is missing (expected shape {spec.shape})")
        got = got_flat[path]
        if tuple(got.shape) != tuple(spec.shape):
            raise ValueError(f"parameter {name} has shape {tuple(got.shape)}, config expects {tuple(spec.shape)}")
    for path in got_flat:
        if path not in want_flat:
            raise ValueError(f"parameter {jax.tree_util.keystr(path)} is not part of the config's model")


def replace_block(config: ModelConfig, params: PyTree, layer: int, block: BlockConfig,
                  layer_params: PyTree) -> tuple[ModelConfig, PyTree]:
    """Replace layer ``layer`` by ``block`` with parameters ``layer_params`` (config and params together)."""
    new_config = config.with_block(layer, block)
    new_params = dict(params)
    new_params[layer_key(layer)] = layer_params
    if not layer_params:
        del new_params[layer_key(layer)]
    check_params(new_config, new_params)
    return new_config, new_params


def insert_layer(config: ModelConfig, params: PyTree, layer: int, block: BlockConfig,
                 layer_params: PyTree) -> tuple[ModelConfig, PyTree]:
    """Insert a new layer before index ``layer`` (``layer == num_layers`` appends); later layers shift up."""
    if not 0 <= layer <= config.num_layers:
        raise IndexError(f"layer={layer} must lie in [0, {config.num_layers}]")
    blocks = list(config.blocks)
    blocks.insert(layer, block)
    layers = [params.get(layer_key(i), {}) for i in range(config.num_layers)]
    layers.insert(layer, layer_params)
    return config.replace(blocks=tuple(blocks)), _with_layers(params, layers)


def remove_layer(config: ModelConfig, params: PyTree, layer: int) -> tuple[ModelConfig, PyTree, PyTree]:
    """Remove layer ``layer``; returns the new config, params, and the removed layer's params."""
    if not 0 <= layer < config.num_layers:
        raise IndexError(f"layer={layer} is out of range for a model with {config.num_layers} layers")
    if config.num_layers == 1:
        raise ValueError("cannot remove the only layer of a model")
    blocks = list(config.blocks)
    blocks.pop(layer)
    layers = [params.get(layer_key(i), {}) for i in range(config.num_layers)]
    removed = layers.pop(layer)
    return config.replace(blocks=tuple(blocks)), _with_layers(params, layers), removed


def _with_layers(params: PyTree, layers: list[PyTree]) -> PyTree:
    out = {k: v for k, v in params.items() if not k.startswith("layers_")}
    for i, p in enumerate(layers):
        if p:
            out[layer_key(i)] = p
    return out


def fuse_parallel_ffn(config: ModelConfig, params: PyTree, layer: int) -> tuple[ModelConfig, PyTree]:
    """Turn the parallel SwiGLU branches of ``layer`` into one wide SwiGLU, exactly.

    Every branch normalises the same input, so each branch's norm gain ``g_j`` folds into the input rows of
    its own gate/up kernels (``diag(g_j) W``); the kernels are concatenated along the intermediate dimension
    and the fused block gets a unit norm gain. ``I_fused = sum_j I_j``.

    References: FFN Fusion (arXiv 2503.18908); lnemo's methods sheet §7.
    """
    ffn = config.blocks[layer].ffn
    if ffn.kind != "swiglu" or len(ffn.intermediate_sizes) < 2:
        raise ValueError(f"layer {layer} has FFN {ffn.describe()}, not parallel SwiGLUs")
    branches = [params[layer_key(layer)]["ffn"][f"branch_{j}"] for j in range(len(ffn.intermediate_sizes))]

    def folded(b: PyTree, name: str) -> jax.Array:
        gain = b["norm"]["scale"].astype(jnp.float32)[:, None]
        return (gain * b[name].astype(jnp.float32)).astype(b[name].dtype)

    fused = {
        "norm": {"scale": jnp.ones_like(branches[0]["norm"]["scale"])},
        "gate_proj": jnp.concatenate([folded(b, "gate_proj") for b in branches], axis=1),
        "up_proj": jnp.concatenate([folded(b, "up_proj") for b in branches], axis=1),
        "down_proj": jnp.concatenate([b["down_proj"] for b in branches], axis=0),
    }
    block = BlockConfig(config.blocks[layer].attention, FFNConfig.swiglu(ffn.intermediate_size))
    layer_params = dict(params[layer_key(layer)])
    layer_params["ffn"] = fused
    return replace_block(config, params, layer, block, layer_params)
