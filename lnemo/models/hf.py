"""Hugging Face checkpoint interop: ``config.json`` + safetensors, single-file or sharded.

``load(path) -> (config, params)`` and ``save(path, config, params)``. Only safetensors are read (never
pickle). torch ``Linear`` weights are ``[out, in]``; lnemo kernels are ``[in, out]`` (and attention
kernels keep the head axis separate), so every projection is reshaped and transposed on the way.
Every tensor's name, shape and dtype is checked against the config before anything is built.

References: lnemo's methods sheet §5 (weight names and shapes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import jax.numpy as jnp
from safetensors import safe_open
from safetensors.flax import save_file

from lnemo.models.config import ModelConfig
from lnemo.models.hf_config import from_hf_config, to_hf_config
from lnemo.models.surgery import fuse_parallel_ffn
from lnemo.types import Array, PyTree

_ROTARY_SUFFIXES = ("rotary_emb.inv_freq", "rotary_emb.cos_cached", "rotary_emb.sin_cached")
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"


def _weight_specs(config: ModelConfig) -> Iterator[tuple[str, tuple[str, ...], tuple[int, ...]]]:
    """(HF name, lnemo path, HF shape) of every tensor the config implies."""
    d, h, hd, v = config.hidden_size, config.num_heads, config.head_size, config.vocab_size
    yield "model.embed_tokens.weight", ("embedding",), (v, d)
    for i, b in enumerate(config.blocks):
        pre, lay = f"model.layers.{i}.", f"layers_{i}"
        att, ffn = b.attention, b.ffn
        if att.kind != "none":
            yield pre + "input_layernorm.weight", (lay, "attn", "norm", "scale"), (d,)
        if att.kind == "gqa":
            g = att.num_kv_heads
            yield pre + "self_attn.q_proj.weight", (lay, "attn", "q_proj"), (h * hd, d)
            yield pre + "self_attn.k_proj.weight", (lay, "attn", "k_proj"), (g * hd, d)
            yield pre + "self_attn.v_proj.weight", (lay, "attn", "v_proj"), (g * hd, d)
            yield pre + "self_attn.o_proj.weight", (lay, "attn", "o_proj"), (d, h * hd)
        elif att.kind == "linear":
            yield pre + "self_attn.linear_attn.weight", (lay, "attn", "linear_attn"), (d, d)
        if ffn.kind != "none":
            yield pre + "post_attention_layernorm.weight", (lay, "ffn", "norm", "scale"), (d,)
        if ffn.kind == "swiglu":
            if len(ffn.intermediate_sizes) != 1:
                raise ValueError(f"layer {i} has parallel FFN branches; fuse them first (surgery.fuse_parallel_ffn)")
            i_ = ffn.intermediate_sizes[0]
            yield pre + "mlp.gate_proj.weight", (lay, "ffn", "gate_proj"), (i_, d)
            yield pre + "mlp.up_proj.weight", (lay, "ffn", "up_proj"), (i_, d)
            yield pre + "mlp.down_proj.weight", (lay, "ffn", "down_proj"), (d, i_)
        elif ffn.kind == "linear":
            yield pre + "mlp.linear_mlp.weight", (lay, "ffn", "linear_mlp"), (d, d)
    yield "model.norm.weight", ("final_norm", "scale"), (d,)
    if not config.tie_embeddings:
        yield "lm_head.weight", ("lm_head",), (v, d)


def _to_lnemo(path: tuple[str, ...], w: Array, config: ModelConfig) -> Array:
    """HF tensor -> lnemo parameter layout."""
    name = path[-1]
    if name in ("embedding", "scale"):
        return w
    wt = w.T  # [in, out]
    hd = config.head_size
    if name in ("q_proj", "k_proj", "v_proj"):
        return wt.reshape(wt.shape[0], -1, hd)
    if name == "o_proj":
        return wt.reshape(-1, hd, wt.shape[1])
    return wt


def _to_hf(path: tuple[str, ...], w: Array) -> Array:
    """lnemo parameter -> HF tensor layout."""
    name = path[-1]
    if name in ("embedding", "scale"):
        return w
    if name in ("q_proj", "k_proj", "v_proj"):
        w = w.reshape(w.shape[0], -1)
    elif name == "o_proj":
        w = w.reshape(-1, w.shape[-1])
    return w.T


def _tensor_files(path: Path) -> list[Path]:
    index = path / INDEX_FILE
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        return [path / f for f in sorted(set(weight_map.values()))]
    single = path / SINGLE_FILE
    if single.exists():
        return [single]
    others = sorted(path.glob("*.safetensors"))
    if others:
        return others
    pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
    hint = f" (found {pickles}: pickle checkpoints are never loaded; convert them to safetensors)" if pickles else ""
    raise FileNotFoundError(f"no safetensors weights in {path}{hint}")


def load(path: str | os.PathLike, *, dtype: str | None = None) -> tuple[ModelConfig, PyTree]:
    """Load a Hugging Face Llama or nemotron-nas checkpoint directory.

    Args:
      path: directory with ``config.json`` and ``model.safetensors`` or sharded files plus
        ``model.safetensors.index.json``.
      dtype: parameter dtype to cast to (default: the checkpoint's ``torch_dtype``).

    Returns:
      ``(config, params)``.

    Raises:
      ValueError: naming the tensor whose presence, shape or dtype disagrees with ``config.json``.
    """
    path = Path(path)
    config = from_hf_config(json.loads((path / "config.json").read_text()))
    if dtype is not None:
        config = config.replace(param_dtype=dtype)
    specs = {name: (p, shape) for name, p, shape in _weight_specs(config)}
    raw: dict[str, Array] = {}
    for file in _tensor_files(path):
        with safe_open(file, framework="flax") as f:
            for name in f.keys():
                if name.endswith(_ROTARY_SUFFIXES):
                    continue
                if name == "lm_head.weight" and config.tie_embeddings:
                    continue
                if name not in specs:
                    raise ValueError(f"{file.name}: tensor {name!r} is not part of the model described by "
                                     "config.json")
                tensor = f.get_tensor(name)
                if tuple(tensor.shape) != specs[name][1]:
                    raise ValueError(f"{file.name}: tensor {name!r} has shape {tuple(tensor.shape)}, config.json "
                                     f"implies {specs[name][1]}")
                if not jnp.issubdtype(tensor.dtype, jnp.floating):
                    raise ValueError(f"{file.name}: tensor {name!r} has dtype {tensor.dtype}, expected floating point")
                raw[name] = tensor
    missing = [n for n in specs if n not in raw]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {len(missing)} tensors, first {missing[:3]}")
    params: dict = {}
    pdt = config.params_dtype
    for name, (p, _) in specs.items():
        node = params
        for key in p[:-1]:
            node = node.setdefault(key, {})
        node[p[-1]] = _to_lnemo(p, raw[name], config).astype(pdt)
    return config, params


def save(path: str | os.PathLike, config: ModelConfig, params: PyTree, *, max_shard_bytes: int = 4 << 30,
         force_nemotron_nas: bool = False) -> None:
    """Write ``config.json`` and safetensors (sharded with an index when larger than ``max_shard_bytes``).

    Homogeneous models are written as ``LlamaForCausalLM``, others as nemotron-nas. Parallel FFN branches are
    fused first (exactly, see ``surgery.fuse_parallel_ffn``). Existing files in ``path`` with the same names
    are replaced; nothing else there is touched.
    """
    for i, b in enumerate(config.blocks):
        if b.ffn.kind == "swiglu" and len(b.ffn.intermediate_sizes) > 1:
            config, params = fuse_parallel_ffn(config, params, i)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Array] = {}
    for name, p, shape in _weight_specs(config):
        node = params
        for key in p:
            node = node[key]
        w = _to_hf(p, jnp.asarray(node))
        if tuple(w.shape) != shape:
            raise ValueError(f"parameter {'/'.join(p)} gives {name} of shape {tuple(w.shape)}, expected {shape}")
        tensors[name] = jnp.asarray(w, config.params_dtype)
    shards: list[dict[str, Array]] = [{}]
    size = 0
    for name, w in tensors.items():
        nbytes = w.size * w.dtype.itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = w
        size += nbytes
    metadata = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], str(path / SINGLE_FILE), metadata=metadata)
    else:
        n = len(shards)
        weight_map = {}
        for k, shard in enumerate(shards, 1):
            fname = f"model-{k:05d}-of-{n:05d}.safetensors"
            save_file(shard, str(path / fname), metadata=metadata)
            weight_map.update({name: fname for name in shard})
        total = int(sum(w.size * w.dtype.itemsize for w in tensors.values()))
        (path / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                  indent=2))
    hf = to_hf_config(config, force_nemotron_nas=force_nemotron_nas)
    (path / "config.json").write_text(json.dumps(hf, indent=2))
