import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import optax
import pytest
from hypothesis import given, settings
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lnemo.sharding import (
    DEFAULT_RULES,
    batch_sharding,
    make_mesh,
    opt_state_shardings,
    param_shardings,
    with_shardings,
)
from lnemo.train import adamw

# A heterogeneous "model": the second layer has 2 KV heads and an FFN width of 12, neither divisible by 8.
SHAPES = {
    "embed": ((64, 16), ("vocab", "embed")),
    "layer0": {
        "q": ((16, 8, 4), ("embed", "heads", "head_dim")),
        "kv": ((16, 8, 4), ("embed", "kv_heads", "head_dim")),
        "w_in": ((16, 32), ("embed", "mlp")),
        "norm": ((16,), ("norm",)),
    },
    "layer1": {
        "q": ((16, 8, 4), ("embed", "heads", "head_dim")),
        "kv": ((16, 2, 4), ("embed", "kv_heads", "head_dim")),
        "w_in": ((16, 12), ("embed", "mlp")),
        "norm": ((16,), ("norm",)),
    },
}
_is_spec = lambda x: isinstance(x, tuple) and isinstance(x[0], tuple)  # noqa: E731
ABSTRACT = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s[0], jnp.float32), SHAPES, is_leaf=_is_spec)
AXES = jax.tree.map(lambda s: s[1], SHAPES, is_leaf=_is_spec)
MESHES = [(8, 1, 1), (2, 2, 2), (1, 1, 8), (1, 8, 1), (2, 1, 4)]


def _mesh(shape):
    return make_mesh(dict(zip(("data", "fsdp", "tensor"), shape, strict=True)))


def _specs(shardings):
    return jax.tree.map(lambda s: s.spec, shardings, is_leaf=lambda x: isinstance(x, NamedSharding))


def test_param_shardings_on_2x2x2_by_hand():
    specs = _specs(param_shardings(ABSTRACT, AXES, _mesh((2, 2, 2))))
    assert specs["embed"] == P("tensor", "fsdp")
    assert specs["layer0"]["q"] == P("fsdp", "tensor", None)
    assert specs["layer1"]["kv"] == P("fsdp", "tensor", None)  # 2 heads divide tensor=2
    assert specs["layer1"]["w_in"] == P("fsdp", "tensor")
    assert specs["layer0"]["norm"] == P(None)


def test_param_shardings_fall_back_when_not_divisible():
    specs = _specs(param_shardings(ABSTRACT, AXES, _mesh((1, 1, 8))))
    assert specs["layer0"]["kv"] == P(None, "tensor", None)
    assert specs["layer1"]["kv"] == P(None, None, None)  # 2 KV heads on tensor=8: replicated
    assert specs["layer0"]["w_in"] == P(None, "tensor")
    assert specs["layer1"]["w_in"] == P(None, None)  # width 12 on tensor=8: replicated


@pytest.mark.parametrize("mesh_shape", MESHES)
def test_param_shardings_place_every_param(mesh_shape):
    mesh = _mesh(mesh_shape)
    shardings = param_shardings(ABSTRACT, AXES, mesh)
    params = jax.tree.map(lambda a: jnp.arange(math.prod(a.shape), dtype=jnp.float32).reshape(a.shape), ABSTRACT)
    placed = jax.device_put(params, shardings)
    for p, x in zip(jax.tree.leaves(params), jax.tree.leaves(placed), strict=True):
        assert (jax.device_get(x) == jax.device_get(p)).all()
    # FSDP actually shards the embed dimension when the mesh has an fsdp axis.
    if mesh_shape[1] > 1:
        assert placed["layer0"]["w_in"].sharding.shard_shape((16, 32))[0] == 16 // mesh_shape[1]


def test_param_shardings_with_custom_rules():
    rules = tuple((name, None if name == "embed" else target) for name, target in DEFAULT_RULES)
    specs = _specs(param_shardings(ABSTRACT, AXES, _mesh((2, 2, 2)), rules))
    assert specs["layer0"]["w_in"] == P(None, "tensor")


def test_param_shardings_structure_mismatch_names_the_paths():
    axes = {**AXES, "extra": ("embed",)}
    del axes["embed"]
    with pytest.raises(ValueError, match=r"params without axes: \['embed'\]; axes without params: \['extra'\]"):
        param_shardings(ABSTRACT, axes, _mesh((8, 1, 1)))


def test_param_shardings_wrong_rank_names_the_param():
    axes = {**AXES, "embed": ("vocab",)}
    with pytest.raises(ValueError, match=r"\['embed'\] has shape \(64, 16\) but logical axes \('vocab',\)"):
        param_shardings(ABSTRACT, axes, _mesh((8, 1, 1)))


@settings(max_examples=40, deadline=None)
@given(
    mesh_index=st.integers(0, len(MESHES) - 1),
    shape=st.lists(st.integers(1, 24), min_size=1, max_size=3),
    names=st.lists(st.sampled_from([n for n, _ in DEFAULT_RULES] + [None]), min_size=3, max_size=3),
)
def test_param_shardings_always_valid(mesh_index, shape, names):
    mesh = _mesh(MESHES[mesh_index])
    abstract = {"w": jax.ShapeDtypeStruct(tuple(shape), jnp.float32)}
    sharding = param_shardings(abstract, {"w": tuple(names[: len(shape)])}, mesh)["w"]
    used = [a for entry in sharding.spec if entry for a in ((entry,) if isinstance(entry, str) else entry)]
    assert len(used) == len(set(used))
    for dim, entry in zip(shape, sharding.spec, strict=True):
        axes = () if entry is None else (entry,) if isinstance(entry, str) else entry
        assert dim % math.prod(mesh.shape[a] for a in axes) == 0


def test_opt_state_shardings_follow_params_and_jit_init_uses_them():
    mesh = _mesh((2, 2, 2))
    shardings = param_shardings(ABSTRACT, AXES, mesh)
    tx = adamw(1e-3)
    opt_shardings = opt_state_shardings(tx, ABSTRACT, shardings)
    adam_state = opt_shardings[1][0]
    assert adam_state.mu["layer0"]["w_in"] == shardings["layer0"]["w_in"]
    assert adam_state.nu["embed"] == shardings["embed"]
    assert adam_state.count.spec == P()
    params = jax.device_put(jax.tree.map(lambda a: jnp.ones(a.shape, a.dtype), ABSTRACT), shardings)
    state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
    assert state[1][0].mu["layer1"]["kv"].sharding.spec == shardings["layer1"]["kv"].spec
    assert state[1][0].count.sharding.is_fully_replicated


def test_opt_state_shardings_with_masked_multi_transform():
    mesh = _mesh((1, 1, 8))
    shardings = param_shardings(ABSTRACT, AXES, mesh)
    labels = jax.tree.map(lambda a: "frozen" if len(a.shape) == 1 else "train", ABSTRACT)
    tx = optax.multi_transform({"train": optax.adam(1e-3), "frozen": optax.set_to_zero()}, labels)
    opt_shardings = opt_state_shardings(tx, ABSTRACT, shardings)
    mu = opt_shardings.inner_states["train"].inner_state[0].mu
    assert mu["layer0"]["q"] == shardings["layer0"]["q"]
    assert isinstance(mu["layer0"]["norm"], optax.MaskedNode)
    params = jax.device_put(jax.tree.map(lambda a: jnp.ones(a.shape, a.dtype), ABSTRACT), shardings)
    state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
    assert state.inner_states["train"].inner_state[0].mu["layer0"]["q"].sharding.spec == P(None, "tensor", None)


@pytest.mark.parametrize(
    ("mesh_shape", "spec"),
    [((8, 1, 1), P("data")), ((2, 2, 2), P(("data", "fsdp"))), ((1, 8, 1), P("fsdp")), ((1, 1, 8), P(None))],
)
def test_batch_sharding(mesh_shape, spec):
    sharding = batch_sharding(_mesh(mesh_shape))
    assert sharding.spec == spec
    x = jax.device_put(jnp.zeros((16, 3)), sharding)
    assert x.sharding.shard_shape((16, 3))[0] == 16 // (mesh_shape[0] * mesh_shape[1])


def test_with_shardings():
    mesh = _mesh((2, 2, 2))
    shardings = param_shardings(ABSTRACT, AXES, mesh)
    target = with_shardings(ABSTRACT, shardings)
    assert target["embed"] == jax.ShapeDtypeStruct((64, 16), jnp.float32, sharding=shardings["embed"])
